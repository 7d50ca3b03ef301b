"""Random train/test splits, as the paper's protocol: 2/3 of the images to train, 30 times."""

import numpy as np

from miml_jax.plumbing.errors import UserError


def random_splits(n: int, n_splits: int = 30, train_fraction: float = 2 / 3,
                  seed: int = 0, n_train: int | None = None) -> np.ndarray:
  """(n_splits, n) bool train masks; each has round(train_fraction * n) (or n_train) rows.

  Split k depends only on (seed, k), so a run with more splits extends one with fewer.
  """
  size = int(round(train_fraction * n)) if n_train is None else int(n_train)
  if not 0 < size < n:
    raise UserError(f'a split needs between 1 and {n - 1} training images, got {size}')
  masks = np.zeros((n_splits, n), bool)
  for k in range(n_splits):
    order = np.random.default_rng([seed, k]).permutation(n)
    masks[k, order[:size]] = True
  return masks
