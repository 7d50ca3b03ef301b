#!/usr/bin/env bash
# A photo library of 200 real photos with bad files among them, tagged to the end in one run:
# a truncated JPEG, an empty file, a text file named .jpg, macOS `._` files, a pipe and a link
# to nowhere named like photos, a broken sidecar (cut short), a photo whose own XMP packet is
# broken, a photo of the user's with IPTC-only keywords, a symbolic link to a photo elsewhere
# and a photo with two hard links, plus the temporary copy a killed embed left behind.
# Then every file of the user's is checked, with exiftool (MWG's rules too) and our reader.
#   bash experiments/library_with_bad_files/run.sh [WORK_FOLDER]   (MIML_JAX_DATA: datasets)
set -euo pipefail
W="${1:-/tmp/library_with_bad_files}"
DATA="${MIML_JAX_DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/datasets}"
rm -rf "$W" && mkdir -p "$W"
python - "$DATA/scene" "$W" <<'PY'
import csv, json, os, shutil, subprocess, sys
src, work = sys.argv[1:]
rows = list(csv.reader(open(os.path.join(src, 'labels.csv'))))
os.makedirs(os.path.join(work, 'train', 'images'))
with open(os.path.join(work, 'train', 'labels.csv'), 'w', newline='') as f:
  w = csv.writer(f)
  w.writerow(rows[0])
  for row in rows[1:2001:20][:100]:            # 100 tagged photos to train on
    shutil.copy(os.path.join(src, 'images', row[0]), os.path.join(work, 'train', 'images'))
    w.writerow(row)
lib = os.path.join(work, 'library')
photos = [r[0] for r in rows[3:2001:10][:200]]  # 200 others: the library, in two albums
for i, name in enumerate(photos):
  album = os.path.join(lib, 'album_a' if i % 2 else 'album_b')
  os.makedirs(album, exist_ok=True)
  shutil.copy(os.path.join(src, 'images', name), album)
a, b = os.path.join(lib, 'album_a'), os.path.join(lib, 'album_b')
first = sorted(os.listdir(a))
data = open(os.path.join(a, first[0]), 'rb').read()
open(os.path.join(a, 'truncated.jpg'), 'wb').write(data[:len(data) // 3])
open(os.path.join(a, 'empty.jpg'), 'wb').close()
open(os.path.join(a, 'notes.jpg'), 'w').write('not a photo\n')
for name in first[1:3]:
  open(os.path.join(a, '._' + name), 'wb').write(b'\x00\x05\x16\x07' + b'\x00' * 78)
os.mkfifo(os.path.join(b, 'pipe.jpg'))
os.symlink(os.path.join(work, 'gone.jpg'), os.path.join(b, 'dangling.jpg'))
# A sidecar of the user's, cut short: exiv2 would read it as empty.
open(os.path.join(a, first[3] + '.xmp'), 'w').write(
    '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    'rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag><rdf:li>'
    'holiday</rdf:li></rdf:Bag></dc:subject><dc:title>unclosed')
# A photo with the user's keywords in IPTC only, one with a title and keyword in XMP, one
# whose XMP packet is broken (same length, so the JPEG stays sound).
def exiftool(*args):
  subprocess.run(['exiftool', '-q', '-overwrite_original', *args], check=True)
exiftool('-IPTC:Keywords=family', '-IPTC:Keywords=dog', os.path.join(a, first[4]))
exiftool('-XMP-dc:Subject=holiday', '-XMP-dc:Title=Beach', os.path.join(a, first[5]))
exiftool('-XMP-dc:Subject=holiday', '-XMP-dc:Title=Dunes', os.path.join(a, first[6]))
p = os.path.join(a, first[6])
d = open(p, 'rb').read()
i = d.index(b'</x:xmpmeta>')
open(p, 'wb').write(d[:i] + b'<oops' + d[i + 5:])
# A link to a photo kept elsewhere, and a photo with a second hard link.
os.makedirs(os.path.join(work, 'elsewhere'))
shutil.move(os.path.join(b, sorted(os.listdir(b))[0]), os.path.join(work, 'elsewhere', 'kept.jpg'))
os.symlink(os.path.join(work, 'elsewhere', 'kept.jpg'), os.path.join(b, 'linked.jpg'))
os.link(os.path.join(a, first[7]), os.path.join(work, 'elsewhere', 'hardlink.jpg'))
# What a kill -9 in the middle of an embed left (older releases' name and this one's).
open(os.path.join(a, f'.{first[8]}.k3j5x9q2.tmp.jpg'), 'wb').write(data[:5000])
os.utime(os.path.join(a, f'.{first[8]}.k3j5x9q2.tmp.jpg'), (0, 0))
from miml_jax.plumbing import atomic
dead = atomic.temporary_name(first[8]).replace(f'-{os.getpid()}-', '-999999999-')
open(os.path.join(a, dead), 'wb').write(data)
json.dump({'broken sidecar': os.path.join(a, first[3] + '.xmp'),
           'IPTC-only keywords': os.path.join(a, first[4]),
           'broken XMP packet': os.path.join(a, first[6]),
           'two hard links': os.path.join(a, first[7])},
          open(os.path.join(work, 'special.json'), 'w'))
PY
# Fingerprints of every file of the user's before the runs: after, each must be the same bytes,
# or (a photo or sidecar that was tagged) hold every keyword and title it held.
python - "$W" before <<'PY'
import hashlib, json, os, subprocess, sys
work, name = sys.argv[1:]
out = {}
for d, _, files in os.walk(os.path.join(work, 'library')):
  for f in files:
    p = os.path.join(d, f)
    if not os.path.isfile(p) or f.endswith('.tmp') or '.tmp.' in f:
      continue
    meta = subprocess.run(['exiftool', '-j', '-use', 'MWG', '-Keywords', '-Title', p],
                          capture_output=True, text=True).stdout
    row = json.loads(meta)[0] if meta else {}
    out[p] = {'sha256': hashlib.sha256(open(p, 'rb').read()).hexdigest(),
              'keywords': row.get('Keywords', []), 'title': row.get('Title')}
json.dump(out, open(os.path.join(work, f'{name}.json'), 'w'), indent=1)
PY
T() { local s=$SECONDS; "$@"; local rc=$?; echo "  [$(( SECONDS - s )) s, exit status $rc] tag $2" >&2; }
tag() { python -m miml_jax.tag "$@"; }
T tag train --dataset="$W/train" --output="$W/lib.tagger" --cache_dir="$W/cache" \
    --method=l1 --augment=none
set +e
for MODE in xmp embed; do
  T tag predict --model="$W/lib.tagger" --output="$W/tags_$MODE.csv" --write=$MODE \
      --keyword_prefix=miml "$W/library" 2> "$W/predict_$MODE.stderr"
  grep -v '^features' "$W/predict_$MODE.stderr"
done
set -e
python - "$W" <<'PY'
import collections, hashlib, json, os, subprocess, sys
work = sys.argv[1]
before = json.load(open(os.path.join(work, 'before.json')))
for mode in ('xmp', 'embed'):
  rows = open(os.path.join(work, f'tags_{mode}.csv')).read().splitlines()[1:]
  warned = [l[len('warning: '):] for l in open(os.path.join(work, f'predict_{mode}.stderr'))
            .read().splitlines() if l.startswith('warning: ')]
  print(f'--write={mode}: {len(rows)} rows; {len(warned)} warnings:')
  for line in warned:
    print('   ', os.path.relpath(line.split(': ', 1)[0], work), '|', line.split(': ', 1)[1][:90])
changed, lost = [], []
for path, was in before.items():
  if hashlib.sha256(open(path, 'rb').read()).hexdigest() != was['sha256']:
    changed.append(os.path.relpath(path, work))
  meta = subprocess.run(['exiftool', '-j', '-use', 'MWG', '-Keywords', '-Title', path],
                        capture_output=True, text=True).stdout
  now = json.loads(meta)[0] if meta else {}
  listed = lambda v: v if isinstance(v, list) else [] if v is None else [v]
  if not set(map(str, listed(was['keywords']))) <= set(map(str, listed(now.get('Keywords')))) \
      or now.get('Title') != was['title']:
    lost.append(os.path.relpath(path, work))
temporaries = [f for d, _, fs in os.walk(os.path.join(work, 'library')) for f in fs
               if '.tmp' in f]
kept = os.path.join(work, 'elsewhere', 'kept.jpg')
tagged = json.loads(subprocess.run(['exiftool', '-j', '-XMP-dc:Subject', kept],
                                   capture_output=True, text=True).stdout)[0].get('Subject')
print(f'files of the user\'s changed (tagged): {len(changed)}; unchanged: '
      f'{len(before) - len(changed)}')
print(f'files of the user\'s that lost a keyword or title: {len(lost)} {lost}')
print(f'the photo behind the symbolic link, tagged: {tagged}; '
      f'still a link: {os.path.islink(os.path.join(work, "library", "album_b", "linked.jpg"))}')
for role, path in json.load(open(os.path.join(work, 'special.json'))).items():
  same = hashlib.sha256(open(path, 'rb').read()).hexdigest() == before[path]['sha256']
  print(f'{role} ({os.path.relpath(path, work)}): {"byte for byte as it was" if same else "tagged"}')
print(f'temporaries left: {temporaries}')
PY
