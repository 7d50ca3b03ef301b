"""A review page: one self-contained HTML file of images with their tags, least certain first,
where a click switches a tag and the corrections are exported as the CSV `tag train
--corrections` reads (`miml_jax.tagging.corrections`).

Thumbnails are embedded (JPEG, data URIs), so the page can be moved or mailed on its own; it runs
no code from elsewhere. An image counts as reviewed once one of its tags is switched or it is
ticked "right as shown"; the export lists every label of the reviewed images only, so an image
nobody looked at never becomes training data with the model's own guesses as its labels.
"""

import base64
import html
import io
import json

import numpy as np

from miml_jax.plumbing.errors import UserError

THUMBNAIL = 192
FORMAT = 'miml_jax.review/1'
_GENERATOR = f'<meta name="generator" content="{FORMAT}">'


def made_here(path: str) -> bool:
  """Whether the file at `path` is a review page written by this module."""
  try:
    with open(path, 'rb') as f:
      return _GENERATOR.encode() in f.read(1024)
  except OSError:
    return False


def uncertainty_order(probabilities, thresholds) -> np.ndarray:
  """Image indices, least certain first: by the smallest distance, in log-odds, of any of its
  labels' probability from that label's threshold."""
  p = np.clip(np.asarray(probabilities, np.float64), 1e-12, 1 - 1e-12)
  t = np.clip(np.asarray(thresholds, np.float64), 1e-12, 1 - 1e-12)
  margin = np.abs((np.log(p) - np.log1p(-p)) - (np.log(t) - np.log1p(-t))).min(axis=1)
  return np.argsort(margin, kind='stable')


def thumbnail(path: str) -> str:
  """A data URI of a small JPEG of the image (turned as its EXIF orientation says)."""
  from PIL import Image   # pylint: disable=g-import-not-at-top
  from PIL import ImageOps   # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as image:
      image = ImageOps.exif_transpose(image).convert('RGB')
      image.thumbnail((THUMBNAIL, THUMBNAIL))
      buf = io.BytesIO()
      image.save(buf, 'JPEG', quality=80)
  except (OSError, ValueError) as e:
    raise UserError(f'{path}: cannot read the image for its thumbnail: {e}') from None
  return 'data:image/jpeg;base64,' + base64.b64encode(buf.getvalue()).decode('ascii')


_STYLE = '''
body { font: 14px system-ui, sans-serif; margin: 0 1.5em 2em; color: #222; }
header { position: sticky; top: 0; background: #fff; padding: .6em 0;
         border-bottom: 1px solid #ddd; }
h1 { font-size: 1.3em; margin: .2em 0; }
#cards { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 12px; }
.card { width: 220px; border: 1px solid #ccc; border-radius: 6px; padding: 8px; margin: 0; }
.card.reviewed { border-color: #2a7; box-shadow: 0 0 0 1px #2a7; }
.card img { display: block; max-width: 100%; max-height: 192px; margin: 0 auto 6px; }
.card figcaption { font-size: 12px; word-break: break-all; color: #555; }
.tag { font: 12px system-ui, sans-serif; margin: 2px; padding: 2px 6px; border-radius: 10px;
       border: 1px solid #999; background: #f4f4f4; color: #666; cursor: pointer; }
.tag.on { background: #2a6fd6; border-color: #2a6fd6; color: #fff; }
.tag.changed { outline: 2px solid #e39b00; }
#csv { width: 100%; height: 8em; margin-top: 1em; font: 12px monospace; }
'''

_SCRIPT = '''
const data = JSON.parse(document.getElementById('data').textContent);
const tags = data.images.map(im => im.p.map((p, j) => p > data.thresholds[j]));
const reviewed = data.images.map(() => false);
const cards = document.getElementById('cards');
function mark(i) {
  reviewed[i] = true;
  cards.children[i].classList.add('reviewed');
  document.getElementById('count').textContent = reviewed.filter(x => x).length;
}
data.images.forEach((im, i) => {
  const card = document.createElement('figure');
  card.className = 'card';
  const img = document.createElement('img');
  img.src = im.thumb; img.alt = im.path;
  const caption = document.createElement('figcaption');
  caption.textContent = im.path;
  const box = document.createElement('div');
  data.labels.forEach((label, j) => {
    const b = document.createElement('button');
    b.className = 'tag' + (tags[i][j] ? ' on' : '');
    b.dataset.label = label;
    b.textContent = label + ' ' + im.p[j].toFixed(2);
    b.addEventListener('click', () => {
      tags[i][j] = !tags[i][j];
      b.classList.toggle('on', tags[i][j]);
      b.classList.toggle('changed', tags[i][j] !== (im.p[j] > data.thresholds[j]));
      mark(i);
    });
    box.appendChild(b);
  });
  const ok = document.createElement('label');
  const tick = document.createElement('input');
  tick.type = 'checkbox'; tick.className = 'ok';
  tick.addEventListener('change', () => { if (tick.checked) mark(i); });
  ok.append(tick, ' right as shown');
  card.append(img, caption, box, ok);
  cards.appendChild(card);
});
function field(s) { return /[",\\r\\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
document.getElementById('export').addEventListener('click', () => {
  const lines = ['image,label,value'];
  data.images.forEach((im, i) => {
    if (!reviewed[i]) return;
    data.labels.forEach((label, j) =>
      lines.push([field(im.path), field(label), tags[i][j] ? 1 : 0].join(',')));
  });
  const text = lines.join('\\n') + '\\n';
  document.getElementById('csv').value = text;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], {type: 'text/csv'}));
  a.download = 'corrections.csv';
  document.body.appendChild(a); a.click(); a.remove();
});
'''


def page(images, label_names, thresholds, title: str) -> str:
  """The HTML of a review page. images: [(path, thumbnail data URI, probabilities (q,))], in the
  order shown."""
  data = {'labels': list(label_names), 'thresholds': [float(t) for t in thresholds],
          'images': [{'path': path, 'thumb': thumb, 'p': [round(float(v), 4) for v in p]}
                     for path, thumb, p in images]}
  # JSON inside <script>: '</script' would end the element early, and '<!--' followed by
  # '<script' makes the parser ignore the '</script>' that ends it; with no '<', '>' or '&'
  # left (escaped as JSON allows), no name a file or label has can do either.
  payload = (json.dumps(data, ensure_ascii=True).replace('<', '\\u003c')
             .replace('>', '\\u003e').replace('&', '\\u0026'))
  return f'''<!doctype html>
<html lang="en"><head><meta charset="utf-8">{_GENERATOR}<title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body>
<header><h1>{html.escape(title)}</h1>
<p>Least certain first. Click a tag to switch it on or off, or tick "right as shown";
then export the corrections and retrain with
<code>python -m miml_jax.tag train --dataset=... --corrections=corrections.csv</code>.</p>
<button id="export">Export corrections (<span id="count">0</span> images reviewed)</button>
</header>
<main id="cards"></main>
<textarea id="csv" readonly placeholder="the exported CSV appears here too"></textarea>
<script id="data" type="application/json">{payload}</script>
<script>{_SCRIPT}</script>
</body></html>
'''
