"""Computes solver fits and features and saves them; run with 1 or 8 (forced) CPU devices."""

import sys

import jax
import numpy as np

jax.config.update('jax_enable_x64', True)

from miml_jax import features  # pylint: disable=g-import-not-at-top,wrong-import-position
from miml_jax import scaling  # pylint: disable=g-import-not-at-top,wrong-import-position
from miml_jax import splits  # pylint: disable=g-import-not-at-top,wrong-import-position
from miml_jax.solvers import fit_logistic  # pylint: disable=g-import-not-at-top,wrong-import-position

out, weights_path, batch_size, *image_paths = sys.argv[1:]
rng = np.random.default_rng(0)
X = np.maximum(rng.standard_normal((90, 40)) + 0.5, 0) * rng.uniform(1, 20, 40)
Y = ((X - X.mean(0)) / X.std(0) @ rng.standard_normal((40, 3)) > 0).astype(float)
masks = splits.random_splits(90, 5, seed=1)          # 5 splits: padded to 8 devices
shift, scale = scaling.fit_scaling(X, masks, 'standardize')
result = {'devices': np.array(len(jax.devices()))}
for penalty in ('l1', 'l2'):
  fit = fit_logistic(X, Y, penalty=penalty, tol=1e-8, max_iter=5000, train_mask=masks,
                     shift=shift, scale=scale)
  result[f'{penalty}_coef'] = np.asarray(fit.coef)
  result[f'{penalty}_objective'] = np.asarray(fit.objective)
result['features'] = features.extract_features(image_paths, weights_path, batch_size=int(batch_size),
                                               image_size=32)
np.savez(out, **result)
