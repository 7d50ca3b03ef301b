"""Tagging your own images: train, save, load in a new process, predict; model files are safe."""

import csv
import json
import os
import shutil
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest

from miml_jax.plumbing import memory
from miml_jax import model_selection
from miml_jax.tagging import tagger as tagger_lib
from miml_jax import Tagger
from miml_jax import weights
from miml_jax.plumbing.errors import UserError
from miml_jax.features import store
from tests import conftest
from tests import reference


def run(*args, cwd=conftest.REPO):
  return subprocess.run([sys.executable, '-m', 'miml_jax.tag', *map(str, args)],
                        capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope='module')
def scene_subset(tmp_path_factory, datasets_dir):
  """40 scene images (every 50th) in the plain layout, and 6 more to tag."""
  src = os.path.join(datasets_dir, 'scene')
  with open(os.path.join(src, 'labels.csv')) as f:
    rows = list(csv.reader(f))
  root = tmp_path_factory.mktemp('data') / 'scene40'
  os.makedirs(root / 'images')
  with open(root / 'labels.csv', 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(rows[0])
    for row in rows[1::50]:
      shutil.copy(os.path.join(src, 'images', row[0]), root / 'images' / row[0])
      w.writerow(row)
  new = root.parent / 'new'
  os.makedirs(new)
  for row in rows[25::350]:
    shutil.copy(os.path.join(src, 'images', row[0]), new / row[0])
  return root, new


@pytest.mark.slow
def test_train_save_load_predict_in_new_processes(scene_subset, lpips_weights, tmp_path):
  root, new = scene_subset
  model = tmp_path / 'scene.tagger'
  result = run('train', f'--data={root}', f'--weights={lpips_weights}', f'--output={model}',
               f'--cache_dir={tmp_path}/cache', '--image_size=64', '--augment=none',
               '--method=l1', '--thresholds=tuned', '--folds=3')
  assert result.returncode == 0, result.stderr
  assert 'non-zero weights per label' in result.stdout
  result = run('predict', f'--model={model}', f'--weights={lpips_weights}', '--format=json',
               new)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert [os.path.basename(o['image']) for o in out] == sorted(os.listdir(new))
  # The same scores in this process, from the features and the loaded model.
  tagger = Tagger.load(model)
  from miml_jax.features import extract_features
  X = extract_features([o['image'] for o in out], lpips_weights, image_size=64)
  expected = tagger.predict_proba(X)
  got = np.array([[o['probabilities'][n] for n in tagger.label_names] for o in out])
  np.testing.assert_allclose(got, expected, atol=1e-4)
  for o, row in zip(out, expected):
    assert o['tags'] == [n for n, p, t in zip(tagger.label_names, row, tagger.thresholds)
                         if p > t]
  table = run('predict', f'--model={model}', f'--weights={lpips_weights}', new)
  assert table.returncode == 0 and len(table.stdout.splitlines()) == len(out)
  csv_out = run('predict', f'--model={model}', f'--weights={lpips_weights}', '--format=csv',
                *[o['image'] for o in out[:2]])
  assert csv_out.stdout.splitlines()[0] == 'image,' + ','.join(tagger.label_names)


@pytest.mark.slow
def test_other_weights_are_refused(scene_subset, lpips_weights, tmp_path):
  rng = np.random.default_rng(0)
  X, Y = rng.random((30, 5888)), (rng.random((30, 2)) < 0.5).astype(int)
  tagger = Tagger.fit(X, Y, ('a', 'b'), 'f' * 64, image_size=64)
  tagger.save(tmp_path / 'm.tagger')
  other = tmp_path / 'other.safetensors'
  weights.save(other, reference.random_params(rng), source='test',
               preprocessing=weights.TORCHVISION)
  result = run('predict', f'--model={tmp_path}/m.tagger', f'--weights={other}',
               scene_subset[1])
  assert result.returncode == 1 and 'not the ones this tagger was trained with' in result.stderr
  assert 'Traceback' not in result.stderr


@pytest.mark.slow
def test_tampered_truncated_and_foreign_model_files(tmp_path):
  rng = np.random.default_rng(1)
  X, Y = rng.random((30, 20)), (rng.random((30, 3)) < 0.5).astype(int)
  Tagger.fit(X, Y, ('a', 'b', 'c'), 'f' * 64).save(tmp_path / 'm.tagger')
  data = (tmp_path / 'm.tagger').read_bytes()
  tampered = bytearray(data)
  tampered[-5] ^= 0x55
  (tmp_path / 'tampered').write_bytes(bytes(tampered))
  (tmp_path / 'truncated').write_bytes(data[:len(data) // 2])
  # A pickle that would run code if unpickled: it must only ever be refused.
  (tmp_path / 'pickle').write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR.")
  for name, message in (('tampered', 'checksum mismatch'), ('truncated', 'not a readable'),
                        ('pickle', 'not a readable'), ('missing', 'no such tagger file')):
    with pytest.raises(UserError, match=message):
      Tagger.load(tmp_path / name)
    result = run('predict', f'--model={tmp_path / name}', tmp_path, cwd=tmp_path)
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr
  assert not (tmp_path / 'pwned').exists()
  # A weights file is not a tagger.
  weights.save(tmp_path / 'w.safetensors', reference.random_params(rng), source='test',
               preprocessing=weights.TORCHVISION)
  with pytest.raises(UserError, match='not a miml_jax tagger file'):
    Tagger.load(tmp_path / 'w.safetensors')


@pytest.mark.slow
def test_c_grid_is_one_call_and_matches_separate_fits():
  rng = np.random.default_rng(2)
  X = np.maximum(rng.standard_normal((80, 30)) + 0.5, 0)
  Y = ((X[:, :3] - X[:, :3].mean(0)) + 0.3 * rng.standard_normal((80, 3)) > 0).astype(float)
  Cs = (0.1, 1.0, 10.0)
  grid = model_selection.fit_grid(X, Y, Cs, tol=1e-7, max_iter=20_000)
  assert grid.coef.shape == (30, 3, 3)
  from miml_jax.solvers import fit_logistic
  for g, C in enumerate(Cs):
    alone = fit_logistic(X, Y, C=C, tol=1e-7, max_iter=20_000)
    np.testing.assert_allclose(grid.objective[g], alone.objective, rtol=1e-5)
  # Sparser with stronger regularisation: the path.
  nonzero = (grid.coef != 0).sum(axis=0).sum(axis=1)
  assert nonzero[0] <= nonzero[1] <= nonzero[2]
  cv = model_selection.cross_validate(X, Y, Cs, folds=4)
  assert cv.log_loss.shape == (3, 3) and cv.best_C.shape == (3,)
  assert set(cv.best_C) <= set(Cs)
  np.testing.assert_array_equal(cv.best_C, np.asarray(Cs)[cv.log_loss.argmin(0)])
  glob = model_selection.cross_validate(X, Y, Cs, folds=4, select='global')
  assert len(set(glob.best_C)) == 1


def test_tuned_thresholds_maximise_f1():
  Y = np.array([[1], [1], [0], [0], [1]])
  p = np.array([[0.9], [0.4], [0.35], [0.1], [0.6]])
  # Cutting between 0.35 and 0.4 keeps the three positives and no negative: F1 = 1.
  cut = model_selection.tune_thresholds(Y, p)[0]
  assert cut == pytest.approx(0.375)
  np.testing.assert_array_equal(p > cut, Y.astype(bool))


@pytest.mark.slow
def test_bad_train_input_is_named(tmp_path):
  result = run('train', f'--data={tmp_path}/nope', f'--output={tmp_path}/m')
  assert result.returncode == 1 and 'not found' in result.stderr
  result = run('train', f'--data={tmp_path}', f'--output={tmp_path}/m', '--C=-1')
  assert result.returncode == 1 and '--C must be a finite positive number' in result.stderr
  result = run('predict', f'--model={tmp_path}/m', f'{tmp_path}/nothing.jpg')
  assert result.returncode == 1


def test_selected_features_counts_per_block(tmp_path):
  from miml_jax.experiments import selected_features
  from miml_jax.features import layout
  lay = layout(0)
  coef = np.zeros((2, lay.dim, 3))
  coef[0, 5, 0] = 1.0          # pool1, label 0
  coef[1, 256 + 3, 0] = -2.0   # pool2, label 0, other split
  coef[:, lay.dim - 1, 2] = 0.5  # pool5, label 2
  counts = selected_features.block_counts(coef, lay)
  assert counts['pool1'].tolist() == [[1, 0, 0], [0, 0, 0]]
  assert counts['pool2'].tolist() == [[0, 0, 0], [1, 0, 0]]
  assert counts['pool5'].tolist() == [[0, 0, 1], [0, 0, 1]]
  result = {'dataset': 'x', 'splits': 2, 'C': 1.0, 'scaling': 'standardize',
            'labels': ['a', 'b', 'c'], 'block_sizes': dict(lay.blocks),
            'counts': {lab: {b: float(c[:, j].mean()) for b, c in counts.items()}
                       for j, lab in enumerate('abc')}}
  selected_features.plot(result, str(tmp_path / 'p.png'))
  assert (tmp_path / 'p.png').read_bytes()[:4] == b'\x89PNG'


@pytest.mark.slow
def test_c_selection_command(tmp_path):
  root = conftest.tiny_dataset(tmp_path, n=18)
  result = subprocess.run(
      [sys.executable, '-m', 'miml_jax.experiments.c_selection', f'--dataset={root}',
       f'--weights={tmp_path}/w.safetensors', f'--cache_dir={tmp_path}/c', '--splits=2',
       '--folds=2', '--Cs=0.1,1,10', '--penalty=l2', f'--output_dir={tmp_path}/o'],
      capture_output=True, text=True, cwd=conftest.REPO)
  assert result.returncode == 0, result.stderr
  out = json.loads((tmp_path / 'o' / 'c_selection_tiny_l2.json').read_text())
  assert len(out['per_split']) == 2
  assert all(set(s['best_C']) <= {0.1, 1.0, 10.0} for s in out['per_split'])
  assert '| average_precision |' in (tmp_path / 'o' / 'c_selection_tiny_l2.md').read_text()


def test_a_label_without_signal_tags_nothing():
  """All-zero weights and intercept give p = 0.5 for every image: at the threshold, not above
  it, so the label tags no image (the rule of `miml_jax.tagging.tagger`)."""
  q, D = 2, 6
  coef = np.zeros((D, q))
  coef[:, 1] = 1.0
  tagger = Tagger(('none', 'some'), coef, np.zeros(q), np.ones(q), np.full(q, 0.5), 'f' * 64)
  X = np.abs(np.random.default_rng(0).standard_normal((5, D)))
  np.testing.assert_array_equal(tagger.predict_proba(X)[:, 0], 0.5)
  np.testing.assert_array_equal(tagger.predict(X), np.c_[np.zeros(5), np.ones(5)])


@pytest.mark.slow
def test_train_on_a_feature_file_and_refuse_one_beyond_memory(tmp_path):
  features = tmp_path / 'synthetic.h5'
  made = subprocess.run(
      [sys.executable, '-m', 'miml_jax.benchmarks.scale', '--sizes=300', '--dim=40',
       '--labels=3', '--support=3', '--amplitude=3', f'--write_features={features}'],
      capture_output=True, text=True, cwd=conftest.REPO)
  assert made.returncode == 0, made.stderr[-2000:]
  model = tmp_path / 'model.tagger'
  result = run('train', f'--features={features}', f'--output={model}', cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  tagger = tagger_lib.Tagger.load(model)
  assert tagger.label_names == ('label_00', 'label_01', 'label_02')
  # The planted labels are learnt (Bernoulli labels: about 0.9 is the best possible).
  data = store.read_feature_file(features)
  assert np.mean(tagger.predict(data.features) == data.labels) > 0.8   # majority: 0.6
  # A file that would not fit in memory is refused before it is read, saying what it needs.
  with mock.patch.object(memory, 'available_bytes', return_value=10_000):
    with pytest.raises(UserError, match=r'synthetic.h5: training on 300 images of 40 features '
                                        r'needs about .* GB of memory'):
      tagger_lib.train_from_file(features)
  assert run('train', f'--features={features}', '--dataset=scene', f'--output={model}',
             '--overwrite').returncode == 1


@pytest.mark.slow
def test_recipe_tagger_with_views_predicts_with_the_same_views(scene_subset, lpips_weights,
                                                               tmp_path):
  """train --method=recipe --augment=flip --scales=...: the tagger file records the views, and
  predict extracts its images' features with them."""
  root, new = scene_subset
  model = tmp_path / 'views.tagger'
  result = run('train', f'--data={root}', f'--weights={lpips_weights}', f'--output={model}',
               f'--cache_dir={tmp_path}/cache', '--scales=64,48', '--augment=flip',
               '--method=recipe')
  assert result.returncode == 0, result.stderr[-2000:]
  assert os.path.exists(tmp_path / 'cache' / 'scene40_vgg16_lpips_64-48_flip.h5')
  tagger = Tagger.load(model)
  assert tagger.image_size == (64, 48) and tagger.augment == 'flip'
  assert tagger.info['method'] == 'recipe' and tagger.info['recipe']['penalties'] == ['l1', 'l2']
  result = run('predict', f'--model={model}', f'--weights={lpips_weights}', '--format=json',
               new)
  assert result.returncode == 0, result.stderr[-2000:]
  out = json.loads(result.stdout)
  from miml_jax.features import extract_features
  X = extract_features([o['image'] for o in out], lpips_weights, image_size=(64, 48),
                       augment='flip')
  got = np.array([[o['probabilities'][n] for n in tagger.label_names] for o in out])
  np.testing.assert_allclose(got, tagger.predict_proba(X), atol=1e-4)
  both = run('train', f'--data={root}', f'--output={tmp_path}/x.tagger', '--scales=64,48',
             '--image_size=64')
  conftest.assert_user_error(both, '--scales or --image_size, not both')
  bad = run('train', f'--data={root}', f'--output={tmp_path}/x.tagger', '--method=recipe',
            '--thresholds=tuned', f'--weights={lpips_weights}', f'--cache_dir={tmp_path}/cache',
            '--scales=64,48', '--augment=flip')
  conftest.assert_user_error(bad, "thresholds are 'fixed'")


@pytest.mark.slow
def test_evaluate_scores_a_labelled_folder_as_scikit_learn_does(scene_subset, lpips_weights,
                                                                tmp_path):
  from sklearn import metrics as skm
  root, _ = scene_subset
  model = tmp_path / 'scene.tagger'
  cache = f'--cache_dir={tmp_path}/cache'
  assert run('train', f'--data={root}', f'--weights={lpips_weights}', f'--output={model}', cache,
             '--image_size=64', '--augment=none', '--method=l1').returncode == 0
  out = tmp_path / 'report.json'
  result = run('evaluate', f'--model={model}', f'--data={root}', f'--weights={lpips_weights}',
               cache, f'--output={out}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'the scores are optimistic' in result.stdout   # its own training images
  report = json.loads(out.read_text())
  assert (tmp_path / 'report.md').read_text() == result.stdout
  tagger = Tagger.load(model)
  feats = store.read_feature_file(
      str(tmp_path / 'cache' / 'scene40_vgg16_lpips_64.h5'))
  Y = feats.labels.astype(int)
  p = tagger.predict_proba(feats.features)
  tags = tagger.predict(feats.features)
  assert report['metrics']['average_precision'] == pytest.approx(
      skm.label_ranking_average_precision_score(Y, p), abs=1e-5)
  assert report['metrics']['hamming_loss'] == pytest.approx(skm.hamming_loss(Y, tags))
  precision, recall, f1, support = skm.precision_recall_fscore_support(Y, tags,
                                                                       zero_division=np.nan)
  for j, name in enumerate(tagger.label_names):
    row = report['per_label'][name]
    assert row['support'] == support[j]
    for ours, theirs in ((row['precision'], precision[j]), (row['recall'], recall[j]),
                         (row['f1'], f1[j])):
      assert (ours is None and np.isnan(theirs)) or ours == pytest.approx(theirs)
  assert report['micro']['f1'] == pytest.approx(skm.f1_score(Y, tags, average='micro'))
  # A folder without one of the model's labels cannot be scored.
  other = tmp_path / 'other'
  shutil.copytree(root, other)
  text = (other / 'labels.csv').read_text().splitlines()
  (other / 'labels.csv').write_text('\n'.join([text[0].replace(tagger.label_names[0], 'zzz')]
                                              + text[1:]) + '\n')
  bad = run('evaluate', f'--model={model}', f'--data={other}', f'--weights={lpips_weights}', cache)
  assert bad.returncode == 1
  assert f"no column for the model's labels {tagger.label_names[0]}" in bad.stderr
