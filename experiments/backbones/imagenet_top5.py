"""EfficientNet-Lite0's ImageNet top-5 on ten msrc_v2 images (two each of cows, aeroplanes, cars,
bicycles, sheep), through our converted weights and preprocessing.

  python experiments/backbones/imagenet_top5.py DATA_DIR SYNSETS LEMMAS > imagenet_top5.md

SYNSETS, LEMMAS: ImageNet's class list and names (timm's data/_info/imagenet_synsets.txt and
imagenet_synset_to_lemma.txt, read from its wheel; any copy of the 1000 classes in order will do).
"""
import sys

import jax.numpy as jnp
import numpy as np

from miml_jax import backbones
from miml_jax import datasets
from miml_jax import images
from miml_jax import weights
from miml_jax.features import extract


def main():
  data_dir, synsets, lemmas = sys.argv[1:4]
  synsets = [line.strip() for line in open(synsets)]
  lemma = dict(line.rstrip('\n').split('\t', 1) for line in open(lemmas))
  names = [lemma[s].split(',')[0] for s in synsets]
  params, info = weights.load('efficientnet_lite0')
  dataset = datasets.load('msrc_v2', data_dir)
  picked = []
  for label in ('cow', 'aeroplane', 'car', 'bicycle', 'sheep'):
    column = dataset.label_names.index(label)
    # Images whose labels are this object and at most two background ones (grass, sky, ...).
    found = [i for i, row in enumerate(dataset.labels) if row[column] and row.sum() <= 3]
    picked += [(label, i) for i in found[:2]]
  x = np.stack([images.load_image(dataset.image_paths[i]) for _, i in picked])
  pre = extract.preprocess(jnp.asarray(x), info.preprocessing, jnp.float32)
  _, out = backbones.get('efficientnet_lite0').build(True, jnp.float32, 1000).apply(
      {'params': params}, pre)
  probs = np.array(jnp.exp(out["logits"] - out["logits"].max(1, keepdims=True)))
  probs /= probs.sum(1, keepdims=True)
  print(f'weights: efficientnet_lite0 (sha256 {info.checksum[:12]}...), images resized to '
        f'224x224 as the extractor does\n')
  print('| image | msrc_v2 labels | top-5 (probability) |')
  print('|---|---|---|')
  for (label, i), p in zip(picked, probs):
    tags = ', '.join(n for n, v in zip(dataset.label_names, dataset.labels[i]) if v)
    top = ', '.join(f'{names[k]} ({p[k]:.2f})' for k in np.argsort(-p)[:5])
    print(f'| {dataset.image_names[i]} | {tags} | {top} |')


if __name__ == '__main__':
  main()
