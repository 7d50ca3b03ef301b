"""Times the 30-split L2 Newton fit of a feature file (run at two commits, back to back).

  python experiments/l2_queue_and_warm_starts/l2_time.py cache/scene_vgg16_lpips.h5 30 out.npy
"""
import sys
import time

import jax
import numpy as np

from miml_jax import scaling
from miml_jax import splits
from miml_jax.features import read_feature_file
from miml_jax.solvers import fit_logistic

data = read_feature_file(sys.argv[1])
X, Y = data.features, data.labels.astype(np.float64)
masks = splits.random_splits(len(X), 30, seed=0)[:int(sys.argv[2])]
shift, scale = scaling.fit_scaling(X, masks, 'standardize')
kw = dict(penalty='l2', C=1.0, train_mask=masks, shift=shift, scale=scale, tol=1e-7)
jax.block_until_ready(fit_logistic(X, Y, max_iter=2, **kw))      # compile
start = time.perf_counter()
fit = jax.block_until_ready(fit_logistic(X, Y, max_iter=20_000, **kw))
it = np.asarray(fit.n_iter)
print(f'{time.perf_counter() - start:.1f} s, iterations median {np.median(it)} largest '
      f'{it.max()}, converged {np.mean(fit.converged):.3f}')
np.save(sys.argv[3], np.asarray(fit.objective))                 # to compare the optima
