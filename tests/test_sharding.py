"""Several devices give the single-device results: 8 CPU devices forced by XLA_FLAGS."""

import os
import subprocess
import sys

import numpy as np

from tests import conftest


def run(tmp_path, name, devices, weights_path, paths, batch_size):
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                      f' --xla_force_host_platform_device_count={devices}').strip()
  env['JAX_PLATFORMS'] = 'cpu'
  out = tmp_path / f'{name}.npz'
  subprocess.run([sys.executable, os.path.join(conftest.REPO, 'tests', 'sharded_run.py'),
                  str(out), weights_path, str(batch_size), *paths], check=True, env=env, cwd=conftest.REPO,
                 capture_output=True)
  return np.load(out)


def test_eight_devices_match_one(tmp_path, small_weights):
  paths = conftest.write_images(tmp_path / 'images', 7, np.random.default_rng(0))
  # The same per-device batch (one image): float32 convolutions round alike.
  one = run(tmp_path, 'one', 1, small_weights, paths, batch_size=1)
  eight = run(tmp_path, 'eight', 8, small_weights, paths, batch_size=8)
  assert int(one['devices']) == 1 and int(eight['devices']) == 8
  for penalty in ('l1', 'l2'):
    np.testing.assert_allclose(eight[f'{penalty}_objective'], one[f'{penalty}_objective'],
                               rtol=1e-6)
    coef = one[f'{penalty}_coef']
    np.testing.assert_allclose(eight[f'{penalty}_coef'], coef, atol=1e-6 * np.abs(coef).max())
  np.testing.assert_allclose(eight['features'], one['features'], rtol=1e-6, atol=1e-6)
