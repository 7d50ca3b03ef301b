"""The side-by-side table of experiments/backbones/README.md, from the Table 1 results and the
speed benchmark's JSON, and the verdict: does EfficientNet-Lite0 match VGG16 within one standard
deviation (VGG16's, over the 30 splits) on every metric of both methods and datasets?

  python experiments/backbones/tables.py     (from the repository root)
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = (('average_precision', 'a.p.', 1), ('coverage', 'co.', -1), ('hamming_loss', 'h.l.', -1),
           ('one_error', 'o.e.', -1), ('ranking_loss', 'r.l.', -1))
BACKBONES = ('vgg16', 'efficientnet_lite0')
DATASETS = ('msrc_v2', 'scene')
METHODS = ('newton_l1', 'recipe')


def load(backbone, dataset):
  path = os.path.join(HERE, backbone, f'table1_{dataset}.json')
  return json.load(open(path)) if os.path.exists(path) else None


def main():
  speed_path = os.path.join(HERE, 'extraction_speed.json')
  speed = {r['backbone']: r for r in json.load(open(speed_path))['rows']} if os.path.exists(
      speed_path) else {}
  head = ' | '.join(f'{d} {m} ({", ".join(n for _, n, _ in METRICS)})'
                    for d in DATASETS for m in METHODS)
  print(f'| backbone | {head} | images/s (flip) | features |')
  print('|---|' + '---|' * (len(DATASETS) * len(METHODS)) + '---|---|')
  for b in BACKBONES:
    cells, dim = [], None
    for d in DATASETS:
      r = load(b, d)
      for m in METHODS:
        if r is None:
          cells.append('(not run)')
          continue
        dim = r['feature_dim']
        cells.append(' / '.join(f'{r["methods"][m][k]["mean"]:.3f} ± {r["methods"][m][k]["std"]:.3f}'
                                for k, _, _ in METRICS))
    s = speed.get(b)
    rate = f'{s["images_per_s"]:.2f} ({s["ratio"]:.1f}x)' if s else '–'
    print(f'| {b} | ' + ' | '.join(cells) + f' | {rate} | {dim or (s or {}).get("dim", "–")} |')
  for b, s in speed.items():
    if b not in BACKBONES:
      print(f'| {b} ({s["weights"]} weights) | ' + ' | '.join(['–'] * 4) +
            f' | {s["images_per_s"]:.2f} ({s["ratio"]:.1f}x) | {s["dim"]} |')
  print()
  worst = None
  for d in DATASETS:
    ref, lite = load('vgg16', d), load('efficientnet_lite0', d)
    if ref is None or lite is None:
      print(f'{d}: not both run')
      continue
    for m in METHODS:
      for k, name, sign in METRICS:
        a, b = ref['methods'][m][k], lite['methods'][m][k]
        # How far Lite0 falls behind, in VGG16 standard deviations (negative: ahead).
        behind = sign * (a['mean'] - b['mean']) / a['std']
        if worst is None or behind > worst[0]:
          worst = (behind, d, m, name)
  if worst:
    verdict = 'within' if worst[0] <= 1 else 'NOT within'
    print(f'Lite0 is {verdict} one VGG16 standard deviation everywhere: its worst metric is '
          f'{worst[1]} {worst[2]} {worst[3]}, {worst[0]:+.2f} std behind')


if __name__ == '__main__':
  main()
