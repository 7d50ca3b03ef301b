"""Several devices, and several processes, give the single-device results (on CPUs)."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_several_processes_match_one(tmp_path):
  """3 processes joined by jax.distributed (as on several hosts) against 1, same script."""
  script = os.path.join(conftest.REPO, 'tests', 'multihost_run.py')
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['JAX_PLATFORMS'] = 'cpu'
  outs = {}
  for count in (1, 3):
    with socket.socket() as s:
      s.bind(('127.0.0.1', 0))
      port = s.getsockname()[1]
    outs[count] = tmp_path / f'{count}.npz'
    procs = [subprocess.Popen([sys.executable, script, str(port), str(i), str(count),
                               str(outs[count])], env=env, cwd=conftest.REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(count)]
    for p in procs:
      _, err = p.communicate(timeout=600)
      assert p.returncode == 0, err.decode()[-2000:]
  one, three = np.load(outs[1]), np.load(outs[3])
  assert int(one['devices']) == 1 and int(three['devices']) == 3
  assert int(three['processes']) == 3
  for penalty in ('l1', 'l2'):
    np.testing.assert_allclose(three[f'{penalty}_objective'], one[f'{penalty}_objective'],
                               rtol=1e-6)
    coef = one[f'{penalty}_coef']
    np.testing.assert_allclose(three[f'{penalty}_coef'], coef, atol=1e-6 * np.abs(coef).max())
