"""One process of a multi-host solver run on CPUs: PORT PROCESS_ID NUM_PROCESSES OUT.

The processes join through `jax.distributed` (gloo between CPUs) and the solvers spread the
splits over all of their devices, one per process (with two CPU devices in each of several
processes, XLA's CPU runtime hung here). Process 0 saves the fits.
"""

import os
import sys

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update('jax_enable_x64', True)

from miml_jax.plumbing import runtime  # pylint: disable=g-import-not-at-top,wrong-import-position
from miml_jax import scaling  # pylint: disable=g-import-not-at-top,wrong-import-position
from miml_jax import splits  # pylint: disable=g-import-not-at-top,wrong-import-position
from miml_jax.solvers import fit_logistic  # pylint: disable=g-import-not-at-top,wrong-import-position

port, process_id, num_processes, out = sys.argv[1:]
runtime.initialize_distributed(f'127.0.0.1:{port}', int(num_processes), int(process_id))
rng = np.random.default_rng(0)
X = np.maximum(rng.standard_normal((90, 40)) + 0.5, 0) * rng.uniform(1, 20, 40)
Y = ((X - X.mean(0)) / X.std(0) @ rng.standard_normal((40, 3)) > 0).astype(float)
masks = splits.random_splits(90, 5, seed=1)          # 5 splits: padded to the devices
shift, scale = scaling.fit_scaling(X, masks, 'standardize')
result = {'devices': np.array(len(jax.devices())), 'processes': np.array(jax.process_count())}
for penalty in ('l1', 'l2'):
  fit = fit_logistic(X, Y, penalty=penalty, tol=1e-8, max_iter=5000, train_mask=masks,
                     shift=shift, scale=scale)
  result[f'{penalty}_coef'] = np.asarray(fit.coef)
  result[f'{penalty}_objective'] = np.asarray(fit.objective)
if jax.process_index() == 0:
  np.savez(out, **result)
