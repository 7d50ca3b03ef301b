"""The benchmark commands and the accelerator kit run end to end (tiny sizes, no timings)."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from miml_jax import datasets
from miml_jax.features import store
from tests import conftest


def run(*args, cwd=conftest.REPO):
  result = subprocess.run([sys.executable, '-m', *args, '--compilation_cache='],
                          capture_output=True, text=True, cwd=cwd)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


random_feature_file = conftest.random_feature_file


@pytest.mark.slow
def test_solve_benchmark_times_both_tolerances_and_reaches_the_optimum(tmp_path):
  features = random_feature_file(tmp_path / 'random.h5')
  out = tmp_path / 'solve.json'
  run('miml_jax.benchmarks.solve', f'--features={features}', '--splits=2',
      '--liblinear_tols=1e-8,1e-2', '--n_jobs=1', '--l1_subproblems=cd,fista', '--recipe',
      f'--output={out}')
  result = json.loads(out.read_text())
  assert result['problems'] == 6 and set(result['penalties']) == {'l1', 'l2'}
  for row in result['penalties'].values():
    assert set(row['liblinear_by_tol']) == {'1e-08', '0.01'}
    assert row['liblinear_by_tol']['1e-08']['gap_worst'] == 0
    assert row['gap_worst'] < 1e-4 and row['within_1e-4'] == 1
    assert row['speedup_at_1e-4'] > 0
    # Timed on a second run; the first (compiling every shape its batches reach) beside it.
    assert row['jax_first_run_seconds'] >= row['jax_compile_seconds'] >= 0
    assert row['speedup_first_run'] > 0
  # Both inner methods of L1 Newton reach the optimum; the first gives the headline.
  l1 = result['penalties']['l1']
  assert set(l1['l1_subproblems']) == {'cd', 'fista'}
  assert all(v['gap_worst'] < 1e-4 for v in l1['l1_subproblems'].values())
  assert l1['jax_seconds'] == l1['l1_subproblems']['cd']['jax_seconds']
  # The recipe alone and as Table 1 runs it (given the L1 and L2 fits), over newton_l1's time.
  recipe = result['recipe']
  assert recipe['final_fits_given'] == ['l1', 'l2']
  for seconds, ratio in (('seconds', 'recipe_over_newton_l1'),
                         ('seconds_given_final_fits', 'given_final_fits_over_newton_l1')):
    assert recipe[ratio] == pytest.approx(recipe[seconds] / l1['jax_seconds'])


@pytest.mark.slow
def test_extract_benchmark_runs_compute_only_and_end_to_end(tmp_path):
  root = conftest.tiny_dataset(tmp_path, n=3)
  out = tmp_path / 'extract.json'
  run('miml_jax.benchmarks.extract', '--batch_sizes=1', '--dtypes=float32', '--num_fc=0',
      '--repeats=1', '--notorch_baseline', f'--data={root}', '--end_to_end_images=2',
      f'--output={out}')
  result = json.loads(out.read_text())
  [row] = result['compute_only']
  assert row['images_per_s'] > 0 and row['compile_s'] > 0
  assert result['end_to_end']['images'] == 2 and result['end_to_end']['images_per_s'] > 0


@pytest.mark.slow
def test_gpu_kit_packs_float16_features_and_images_that_the_experiments_read(tmp_path):
  root = conftest.tiny_dataset(tmp_path, n=4)
  kit = tmp_path / 'kit'
  run('miml_jax.benchmarks.gpu_kit', f'--datasets={root}', f'--image_datasets={root}',
      f'--weights={tmp_path}/w.safetensors', f'--cache_dir={tmp_path}/cache',
      f'--output_dir={kit}')
  with h5py.File(kit / 'tiny.h5') as f:
    assert f['features'].dtype == np.float16
  packed = store.read_feature_file(kit / 'tiny.h5')
  [cached] = (tmp_path / 'cache').glob('*.h5')
  np.testing.assert_allclose(packed.features, store.read_feature_file(cached).features,
                             rtol=2**-11)
  assert sorted(os.listdir(kit / 'tiny' / 'images')) == sorted(os.listdir(root / 'images'))
  copy, original = datasets.load(str(kit / 'tiny')), datasets.load(str(root))
  assert copy.image_names == original.image_names and copy.label_names == original.label_names
  np.testing.assert_array_equal(copy.labels, original.labels)
  # Over the size limit: a clear error, not a traceback.
  result = subprocess.run(
      [sys.executable, '-m', 'miml_jax.benchmarks.gpu_kit', f'--datasets={root}',
       '--image_datasets=', f'--weights={tmp_path}/w.safetensors',
       f'--cache_dir={tmp_path}/cache', f'--output_dir={kit}', '--limit_mib=0.001'],
      capture_output=True, text=True, cwd=conftest.REPO)
  assert result.returncode != 0 and 'over the 0.001 MiB limit' in result.stderr
  assert 'Traceback' not in result.stderr


@pytest.mark.slow
def test_scale_benchmark_times_each_size_in_its_own_process(tmp_path):
  out = tmp_path / 'scale.json'
  run('miml_jax.benchmarks.scale', '--sizes=60,120', '--dim=12', '--support=3', '--labels=3',
      '--split_counts=2', '--penalties=l1,l2', '--slope_range=60,120', '--reference_up_to=60',
      f'--output={out}')
  result = json.loads(out.read_text())
  assert set(result['series']) == {'l1, 2 splits', 'l2, 2 splits'}
  for key, runs in result['series'].items():
    assert [r['n'] for r in runs] == [60, 120]
    assert all(r['converged_fraction'] == 1 and r['peak_rss_gb'] > 0 for r in runs)
    # liblinear checks the solution where asked (n <= 60), and only there.
    assert abs(runs[0]['objective_gap_max']) < 1e-3 and 'objective_gap_max' not in runs[1]
    assert result['slopes'][key] is not None
  assert (tmp_path / 'scale.png').stat().st_size > 0
