#!/usr/bin/env bash
# The photo-library loop of the README, timed: train on 300 tagged Scene photos, tag 200 others
# into XMP sidecars (and a CSV), evaluate on 200 labelled photos it never saw, make the review
# page, correct the 40 least certain photos, retrain with the corrections, evaluate again.
# The corrections are what the page's export holds once each of those photos' tags is set right
# (tests/test_review.py drives the page itself in headless Chromium); here the true labels.
#   bash experiments/photo_library/run.sh [WORK_FOLDER]     (MIML_JAX_DATA: the datasets)
#   BACKBONE=efficientnet_lite0 bash experiments/photo_library/run.sh ...   (another backbone)
set -euo pipefail
W="${1:-/tmp/photo_library}"
DATA="${MIML_JAX_DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/datasets}"
rm -rf "$W" && mkdir -p "$W"
python - "$DATA/scene" "$W" <<'PY'
import csv, os, shutil, sys
src, work = sys.argv[1:]
rows = list(csv.reader(open(os.path.join(src, 'labels.csv'))))
def folder(name, part, images_only=False):
  os.makedirs(os.path.join(work, name, 'images'))
  with open(os.path.join(work, name, 'labels.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(rows[0])
    for row in part:
      shutil.copy(os.path.join(src, 'images', row[0]), os.path.join(work, name, 'images'))
      w.writerow(row)
folder('train', rows[1:2001:6][:300])          # 300 tagged photos
folder('photos', rows[3:2001:10][:200])        # a library to tag (labels kept aside)
folder('holdout', rows[5:2001:10][:200])       # 200 more with labels, for evaluate
PY
T() { local s=$SECONDS; "$@"; echo "  [$(( SECONDS - s )) s] tag $2" >&2; }
tag() { python -m miml_jax.tag "$@" ${BACKBONE:+--backbone=$BACKBONE}; }
T tag train --dataset="$W/train" --output="$W/lib.tagger" --cache_dir="$W/cache"
T tag predict --model="$W/lib.tagger" --output="$W/tags.csv" --write=xmp --keyword_prefix=miml \
    "$W/photos/images"
T tag evaluate --model="$W/lib.tagger" --dataset="$W/holdout" --output="$W/before.json" \
    --cache_dir="$W/cache" > /dev/null
T tag review --model="$W/lib.tagger" --predictions="$W/tags.csv" --output="$W/review.html"
python - "$W" <<'PY'
import csv, os, sys
import numpy as np
from miml_jax.tagging import review
work = sys.argv[1]
rows = list(csv.reader(open(os.path.join(work, 'tags.csv'))))
names, p = rows[0][1:], np.array([[float(v) for v in r[1:]] for r in rows[1:]])
truth = {r[0]: r[1:] for r in list(csv.reader(open(os.path.join(work, 'photos', 'labels.csv'))))[1:]}
with open(os.path.join(work, 'corrections.csv'), 'w', newline='') as f:
  w = csv.writer(f)
  w.writerow(['image', 'label', 'value'])
  for i in review.uncertainty_order(p, np.full(len(names), 0.5))[:40]:
    path = os.path.abspath(rows[1 + i][0])
    for name, value in zip(names, truth[os.path.basename(path)]):
      w.writerow([path, name, value])
PY
T tag train --dataset="$W/train" --corrections="$W/corrections.csv" --output="$W/lib2.tagger" \
    --cache_dir="$W/cache"
T tag evaluate --model="$W/lib2.tagger" --dataset="$W/holdout" --output="$W/after.json" \
    --cache_dir="$W/cache" > /dev/null
python - "$W" <<'PY'
import json, os, sys
w = sys.argv[1]
for name in ('before', 'after'):
  r = json.load(open(os.path.join(w, f'{name}.json')))
  m = r['metrics']
  print(f"{name}: a.p. {m['average_precision']:.4f}, Hamming {m['hamming_loss']:.4f}, "
        f"one error {m['one_error']:.4f}, macro F1 {r['macro_f1']:.4f}")
PY
