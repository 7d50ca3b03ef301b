"""How well a tagger tags a labelled folder: the paper's five metrics, each label's precision,
recall and F1 (scikit-learn's, undefined ones None), and which labels it confuses, as
JSON-ready values and as Markdown.

A confusion, in multi-label tagging, is an image where label a is missed and label b is tagged
wrongly at the same time: the model said b where it should have said a.
"""

import numpy as np
from sklearn import metrics as sk_metrics

from miml_jax import metrics

# Confusions listed in the Markdown (all are in the JSON).
SHOWN_CONFUSIONS = 10


def _defined(v) -> float | None:
  """A score, None where it is undefined (a zero denominator: scikit-learn's NaN)."""
  return None if np.isnan(v) else float(v)


def tagging_report(Y, probabilities, tagged, label_names) -> dict:
  """Y (n, q) true 0/1 labels; probabilities (n, q); tagged (n, q) the tagger's tags."""
  Y = np.asarray(Y, bool)
  tagged = np.asarray(tagged, bool)
  p = np.clip(np.asarray(probabilities, np.float64), 1e-300, 1 - 1e-16)
  scores = metrics.evaluate(Y, np.log(p) - np.log1p(-p))
  # The ranking metrics rank the probabilities; Hamming loss counts the tags as given, whatever
  # each label's threshold (a tuned one is not probability 0.5).
  scores['hamming_loss'] = np.mean(Y != tagged)
  counts = sk_metrics.multilabel_confusion_matrix(Y, tagged)   # (q, 2, 2): [[tn, fp], [fn, tp]]
  precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
      Y, tagged, average=None, zero_division=np.nan)
  per_label = {}
  for j, name in enumerate(label_names):
    (tn, fp), (fn, tp) = counts[j]
    per_label[name] = {'precision': _defined(precision[j]), 'recall': _defined(recall[j]),
                       'f1': _defined(f1[j]), 'support': int(support[j]), 'tp': int(tp),
                       'fp': int(fp), 'fn': int(fn), 'tn': int(tn)}
  micro = sk_metrics.precision_recall_fscore_support(Y, tagged, average='micro',
                                                     zero_division=np.nan)[:3]
  f1s = [v['f1'] for v in per_label.values() if v['f1'] is not None]
  missed, wrong = Y & ~tagged, ~Y & tagged
  pairs = missed.T.astype(np.int64) @ wrong.astype(np.int64)     # (q, q): a missed, b wrong
  order = np.argsort(-pairs, axis=None, kind='stable')
  confusions = [{'missed': label_names[a], 'tagged_instead': label_names[b],
                 'images': int(pairs[a, b])}
                for a, b in zip(*np.unravel_index(order, pairs.shape)) if pairs[a, b] > 0]
  return {
      'n_images': int(len(Y)),
      'metrics': {k: float(v) for k, v in scores.items()},
      'micro': dict(zip(('precision', 'recall', 'f1'), map(_defined, micro))),
      'macro_f1': float(np.mean(f1s)) if f1s else None,
      'exact_match': float(np.mean(np.all(Y == tagged, axis=1))),
      'per_label': per_label,
      'confusions': confusions,
  }


def _cell(v) -> str:
  return '–' if v is None else f'{v:.3f}'


def markdown(report: dict, title: str) -> str:
  lines = [f'# {title}', '', f'{report["n_images"]} images.', '',
           '| metric | value |', '|---|---|']
  arrows = {True: '↑', False: '↓'}
  for k, v in report['metrics'].items():
    lines.append(f'| {k.replace("_", " ")} {arrows[metrics.HIGHER_IS_BETTER[k]]} | {v:.4f} |')
  micro = report['micro']
  lines += [f'| micro precision / recall / F1 ↑ | {_cell(micro["precision"])} / '
            f'{_cell(micro["recall"])} / {_cell(micro["f1"])} |',
            f'| macro F1 ↑ | {_cell(report["macro_f1"])} |',
            f'| every label right ↑ | {report["exact_match"]:.4f} |', '',
            '| label | images | precision | recall | F1 | tagged wrongly | missed |',
            '|---|---|---|---|---|---|---|']
  for name, v in report['per_label'].items():
    lines.append(f'| {name} | {v["support"]} | {_cell(v["precision"])} | {_cell(v["recall"])} '
                 f'| {_cell(v["f1"])} | {v["fp"]} | {v["fn"]} |')
  if report['confusions']:
    lines += ['', 'Most frequent confusions (label missed, another tagged in its place):', '',
              '| missed | tagged instead | images |', '|---|---|---|']
    lines += [f'| {c["missed"]} | {c["tagged_instead"]} | {c["images"]} |'
              for c in report['confusions'][:SHOWN_CONFUSIONS]]
  return '\n'.join(lines) + '\n'
