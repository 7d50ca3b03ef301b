"""The Table 1 protocol: methods agree with each other, and the command writes readable files."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from miml_jax import evaluation
from miml_jax import metrics
from miml_jax import model_selection
from miml_jax import protocol
from miml_jax import recipe
from miml_jax import splits
from miml_jax.plumbing.errors import UserError
from miml_jax.protocol import Protocol
from tests import conftest


@pytest.mark.slow
def test_jax_and_liblinear_agree_on_every_metric():
  rng = np.random.default_rng(0)
  n, d, q = 150, 40, 4
  X = np.maximum(rng.standard_normal((n, d)) + 0.5, 0) * rng.uniform(1, 20, d)
  W = rng.standard_normal((d, q)) * (rng.random((d, q)) < 0.2)
  Y = ((X - X.mean(0)) / X.std(0) @ W + 0.5 * rng.standard_normal((n, q)) > 0).astype(float)
  masks = splits.random_splits(n, 4, seed=1)
  ours = ['newton_l1', 'fista_l1', 'newton_l2', 'fista_l2']
  out = evaluation.run(X, Y, masks, Protocol(
      methods=(*ours, 'liblinear_l1', 'liblinear_l2', 'liblinear_paper')), n_jobs=1)
  for a in ours:
    b = 'liblinear_' + a[-2:]
    for name in metrics.NAMES:
      assert abs(out[a].metrics[name].mean() - out[b].metrics[name].mean()) <= 0.005, (a, name)
  test = evaluation.test_indices(masks)
  assert out['newton_l1'].decisions.shape == (4, test.shape[1], q)
  # The decisions recompute the metrics.
  again = metrics.evaluate(Y[test], out['newton_l1'].decisions)
  np.testing.assert_allclose(again['ranking_loss'], out['newton_l1'].metrics['ranking_loss'])
  assert out['newton_l1'].metrics['average_precision'].mean() > 0.7
  # Same optimum: objectives recomputed in float64 from both solvers' weights.
  agree = evaluation.agreement(out, Y, masks)
  assert set(agree) == set(ours)
  for name in ours:
    assert agree[name]['objective_gap_worst'] <= 1e-4, name
    assert agree[name]['metric_difference_max'] <= 0.005
  summary = evaluation.summary(out['fista_l1'])
  assert summary['iterations']['max'] >= summary['iterations']['median'] > 0
  assert summary['converged_fraction'] == 1.0 and summary['tol'] == protocol.METHODS['fista_l1'].tol
  # At w = 0, b = 0 the objective is C m log 2 (m training rows) for every problem.
  shift, scale = evaluation.scaling.fit_scaling(X, masks, 'standardize')
  at_zero = evaluation.scaled_objective(X, Y, masks, shift, scale, np.zeros((4, d, q)),
                                        np.zeros((4, q)), penalty='l1', C=2.0)
  np.testing.assert_allclose(at_zero, 2.0 * masks.sum(1)[:, None] * np.log(2) * np.ones(q))


@pytest.mark.slow
def test_table1_of_our_solvers_does_not_import_scikit_learn():
  """scikit-learn takes about 2 s to import: a warm Table 1 run of our solvers does without."""
  code = ('import sys; from miml_jax.experiments import table1; '
          'print(sorted(m for m in sys.modules if m.split(".")[0] == "sklearn"))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       cwd=conftest.REPO, check=True)
  assert out.stdout.strip() == '[]'


def test_random_splits_are_reproducible_and_nested():
  a = splits.random_splits(30, 5, seed=3)
  assert a.shape == (5, 30) and np.all(a.sum(axis=1) == 20)
  np.testing.assert_array_equal(splits.random_splits(30, 3, seed=3), a[:3])
  assert not np.array_equal(a[0], a[1])


@pytest.mark.slow
def test_table1_command_end_to_end(tmp_path):
  root = conftest.tiny_dataset(tmp_path)
  other = shutil.copytree(root, tmp_path / 'tiny2')
  (other / 'images' / sorted(p.name for p in (other / 'images').iterdir())[0]).unlink()
  (other / 'labels.csv').write_text(
      ''.join((root / 'labels.csv').read_text().splitlines(keepends=True)[:1] +
              (root / 'labels.csv').read_text().splitlines(keepends=True)[2:]))
  common = [sys.executable, '-m', 'miml_jax.experiments.table1',
            f'--weights={tmp_path}/w.safetensors', f'--cache_dir={tmp_path}/cache', '--splits=3',
            '--solvers=newton_l1,liblinear_l1', f'--output_dir={tmp_path}/out', '--n_jobs=1']
  # A bad name anywhere in the list stops the run before any work.
  bad = subprocess.run(common + [f'--dataset={root},{tmp_path}/none'], capture_output=True,
                       text=True, cwd=conftest.REPO)
  assert bad.returncode != 0 and 'none' in bad.stderr and 'Traceback' not in bad.stderr
  assert not (tmp_path / 'out').exists()
  result = subprocess.run(common + [f'--dataset={root},{other}'], capture_output=True, text=True,
                          cwd=conftest.REPO)
  assert result.returncode == 0, result.stderr
  assert re.search(r'Table 1 of 2 dataset\(s\) in [0-9.]+ s \(fitting [0-9.]+ s\)', result.stdout)
  for name, n in (('tiny', 12), ('tiny2', 11)):
    table = json.loads((tmp_path / 'out' / f'table1_{name}.json').read_text())
    assert table['n_images'] == n and table['feature_dim'] == 5888 and table['splits'] == 3
    assert set(table['methods']) == {'newton_l1', 'liblinear_l1'}
    assert set(table['methods']['newton_l1']) >= set(metrics.NAMES) | {
        'fit_seconds', 'compile_seconds', 'iterations', 'converged_fraction',
        'objective_gap_worst'}
    written = (tmp_path / 'out' / f'table1_{name}.md').read_text()
    assert '| a.p. ↑ |' in written and '--splits=3' in written
    # The command that repeats the run leaves out the recipe's flags when it did not run.
    assert '--folds' not in written and '--recipe_steps' not in written
    assert table['tol'] is None and table['methods'].keys() == {'newton_l1', 'liblinear_l1'}
  with np.load(tmp_path / 'out' / 'table1_tiny.npz') as f:
    assert f['decisions_newton_l1'].shape == (3, 4, 2)
  # The other experiments take one dataset.
  one = subprocess.run([sys.executable, '-m', 'miml_jax.experiments.figure3',
                        f'--dataset={root},{other}'], capture_output=True, text=True,
                       cwd=conftest.REPO)
  assert one.returncode != 0 and 'takes one --dataset, got 2' in one.stderr


@pytest.mark.slow
def test_table1_from_a_feature_file_needs_no_images_or_weights(tmp_path):
  root = conftest.tiny_dataset(tmp_path)
  common = ['--splits=2', '--solvers=newton_l2,recipe', '--recipe_folds=2', '--n_jobs=1']
  first = subprocess.run(
      [sys.executable, '-m', 'miml_jax.experiments.table1', f'--dataset={root}',
       f'--weights={tmp_path}/w.safetensors', f'--cache_dir={tmp_path}/cache',
       '--augment=flip', f'--output_dir={tmp_path}/a', *common], capture_output=True,
      text=True, cwd=conftest.REPO)
  assert first.returncode == 0, first.stderr
  [cached] = (tmp_path / 'cache').glob('*.h5')
  assert cached.name == 'tiny_w_flip.h5'
  table = json.loads((tmp_path / 'a' / 'table1_tiny.json').read_text())
  assert table['views'] == {'image_size': 224, 'augment': 'flip'}
  assert table['recipe'] == {'steps': list(recipe.DEFAULT_STEPS), 'Cs': list(
      model_selection.DEFAULT_CS), 'folds': 2}
  moved = tmp_path / 'elsewhere.h5'
  cached.rename(moved)
  shutil.rmtree(root)
  (tmp_path / 'w.safetensors').unlink()
  second = subprocess.run(
      [sys.executable, '-m', 'miml_jax.experiments.table1', f'--features={moved}',
       f'--output_dir={tmp_path}/b', *common], capture_output=True, text=True, cwd=conftest.REPO)
  assert second.returncode == 0, second.stderr
  a = json.loads((tmp_path / 'a' / 'table1_tiny.json').read_text())
  b = json.loads((tmp_path / 'b' / 'table1_tiny.json').read_text())
  assert b['weights']['sha256'] == a['weights']['sha256'] and b['weights']['file'] is None
  for metric in metrics.NAMES:
    for method in ('newton_l2', 'recipe'):
      assert b['methods'][method][metric] == a['methods'][method][metric]
  assert f'--features={moved}' in (tmp_path / 'b' / 'table1_tiny.md').read_text()
  both = subprocess.run(
      [sys.executable, '-m', 'miml_jax.experiments.table1', f'--features={moved}',
       '--dataset=scene', *common], capture_output=True, text=True, cwd=conftest.REPO)
  assert both.returncode != 0 and 'dataset' in both.stderr and 'Traceback' not in both.stderr


@pytest.mark.slow
def test_figure3_command_end_to_end_and_resumes(tmp_path):
  root = conftest.tiny_dataset(tmp_path, n=15)
  command = [sys.executable, '-m', 'miml_jax.experiments.figure3', f'--dataset={root}',
             f'--weights={tmp_path}/w.safetensors', f'--cache_dir={tmp_path}/cache',
             '--splits=2', '--solvers=newton_l1,newton_l2', f'--output_dir={tmp_path}/out']
  result = subprocess.run(command + ['--train_sizes=4,10'], capture_output=True, text=True,
                          cwd=conftest.REPO)
  assert result.returncode == 0, result.stderr
  out = json.loads((tmp_path / 'out' / 'figure3_tiny.json').read_text())
  assert [p['train_images'] for p in out['points']['newton_l1']] == [4, 10]
  assert set(out['points']['newton_l2'][0]) >= set(metrics.NAMES)
  assert (tmp_path / 'out' / 'figure3_tiny.png').read_bytes()[:4] == b'\x89PNG'
  rows = (tmp_path / 'out' / 'figure3_tiny.csv').read_text().splitlines()
  assert rows[0] == 'method,train_images,metric,mean,std' and len(rows) == 1 + 2 * 2 * 5
  # A rerun with one more size fits only that one and keeps the others.
  result = subprocess.run(command + ['--train_sizes=4,7,10'], capture_output=True, text=True,
                          cwd=conftest.REPO)
  assert result.returncode == 0, result.stderr
  assert '4 training images' not in result.stdout and '7 training images' in result.stdout
  again = json.loads((tmp_path / 'out' / 'figure3_tiny.json').read_text())
  assert [p['train_images'] for p in again['points']['newton_l2']] == [4, 7, 10]
  assert again['points']['newton_l1'][0] == out['points']['newton_l1'][0]
  bad = subprocess.run(command + ['--train_sizes=1000'], capture_output=True, text=True,
                       cwd=conftest.REPO)
  assert bad.returncode == 1 and 'train_sizes' in bad.stderr and 'Traceback' not in bad.stderr


def _table(**means):
  methods = {'newton_l1': {m: {'mean': means.get(m, 0.5), 'std': 0.01} for m in metrics.NAMES}}
  return {'dataset': 'scene', 'n_images': 10, 'n_labels': 2, 'splits': 3, 'train_fraction': 0.5,
          'seed': 0, 'C': 1.0, 'scaling': 'standardize', 'methods': methods}


def test_compare_tables_reports_differences_and_refuses_other_experiments(tmp_path):
  from miml_jax.experiments import compare_tables
  rows = compare_tables.compare(_table(), _table(coverage=0.504, one_error=0.499))
  by_metric = {r['metric']: r['difference'] for r in rows}
  assert by_metric['coverage'] == pytest.approx(0.004)
  assert by_metric['one_error'] == pytest.approx(-0.001) and by_metric['ranking_loss'] == 0
  assert 'OVER the tolerance 0.003' in compare_tables.markdown(rows, ['a', 'b'], 0.003)
  assert ': within 0.005' in compare_tables.markdown(rows, ['a', 'b'], 0.005)
  with pytest.raises(UserError, match="splits 3 vs 30"):
    compare_tables.compare(_table(), {**_table(), 'splits': 30})
  (tmp_path / 'bad.json').write_text('{"dataset": ')
  with pytest.raises(UserError, match='bad.json: not a readable JSON'):
    compare_tables.read_table(str(tmp_path / 'bad.json'))
