"""Nothing a user has is ever lost: outputs are checked before any work, never land on an input or
on a stranger's file, write problems and Ctrl-C end in one line, and every number is checked.

Each command case asserts the exit status, one `error:` line, no traceback, and that the inputs
are byte-identical afterwards.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from miml_jax.plumbing import atomic
from miml_jax import datasets
from miml_jax.plumbing import outputs
from miml_jax.plumbing.errors import UserError
from miml_jax.features import extract
from miml_jax.features import store
from tests import conftest

cli = conftest.cli
assert_user_error = conftest.assert_user_error


def digests(*paths):
  """{path: sha256 of its bytes} of files (folders: of every file below them)."""
  files = []
  for path in map(str, paths):
    if os.path.isdir(path):
      files += sorted(os.path.join(d, f) for d, _, names in os.walk(path) for f in names)
    else:
      files.append(path)
  return {f: hashlib.sha256(open(f, 'rb').read()).hexdigest() for f in files}


@pytest.fixture
def tiny(tmp_path):
  """A 12-image dataset `tiny` and random weights `w.safetensors` beside it."""
  root = conftest.tiny_dataset(tmp_path)
  return str(root), str(tmp_path / 'w.safetensors')


def features_cli(root, weights, output, *extra):
  return cli('miml_jax.features', f'--data={root}', f'--weights={weights}', f'--output={output}',
             '--image_size=32', '--compilation_cache=', *extra)


@pytest.mark.slow
@pytest.mark.parametrize('target', ['labels.csv', 'image', 'weights', 'dotdot', 'symlink',
                                    'hardlink'])
def test_feature_output_never_lands_on_an_input(tiny, tmp_path, target):
  root, weights = tiny
  image = os.path.join(root, 'images', sorted(os.listdir(os.path.join(root, 'images')))[0])
  output = {'labels.csv': os.path.join(root, 'labels.csv'), 'image': image, 'weights': weights,
            'dotdot': os.path.join(root, 'images', '..', 'labels.csv')}.get(target)
  if target == 'symlink':
    output = str(tmp_path / 'link.h5')
    os.symlink(os.path.join(root, 'labels.csv'), output)
  elif target == 'hardlink':
    output = str(tmp_path / 'hard.h5')
    os.link(weights, output)
  before = digests(root, weights)
  result = features_cli(root, weights, output)
  assert_user_error(result, 'is an input of this command')
  assert digests(root, weights) == before


@pytest.mark.slow
def test_a_strangers_file_is_kept_unless_overwrite(tiny, tmp_path):
  root, weights = tiny
  notes = tmp_path / 'notes.txt'
  notes.write_text('my notes\n')
  assert_user_error(features_cli(root, weights, notes), 'notes.txt: exists and is not',
                    '--overwrite')
  assert notes.read_text() == 'my notes\n'
  # A feature file there is ours: rewritten (here: reused) without asking; --overwrite replaces
  # the stranger's file.
  result = features_cli(root, weights, notes, '--overwrite')
  assert result.returncode == 0, result.stderr
  assert store.read_feature_file(notes).features.shape == (12, 5888)
  again = features_cli(root, weights, notes)
  assert again.returncode == 0, again.stderr
  assert not [n for n in os.listdir(tmp_path) if n.endswith('.lock')]


@pytest.mark.slow
def test_tag_train_never_overwrites_its_inputs(tiny, tmp_path):
  root, weights = tiny
  cache = tmp_path / 'cache'
  cached = store.cache_path(datasets.load(root), weights, cache, image_size=32, augment='flip')
  os.makedirs(cache)
  shutil.copy(weights, cached)   # whatever is there, train reads it as its feature cache
  before = digests(root, weights, cached)
  for output in (weights, os.path.join(root, 'labels.csv'), cached):
    result = cli('miml_jax.tag', 'train', f'--data={root}', f'--weights={weights}',
                 f'--output={output}', f'--cache_dir={cache}', '--image_size=32')
    assert_user_error(result, 'is an input of this command')
  assert digests(root, weights, cached) == before


@pytest.mark.slow
def test_convert_and_compare_never_overwrite_their_inputs(tmp_path):
  source = tmp_path / 'vgg16.h5'
  source.write_bytes(b'not really keras')
  result = cli('miml_jax.weights.convert', '--source=keras_h5', f'--input={source}',
               f'--output={source}')
  assert_user_error(result, 'vgg16.h5: is an input of this command')
  assert source.read_bytes() == b'not really keras'
  table = tmp_path / 'table1_x.json'
  table.write_text('{"methods": {}}')
  result = cli('miml_jax.experiments.compare_tables', f'--baseline={table}', f'--other={table}',
               f'--output={tmp_path}/table1_x.md')
  assert_user_error(result, 'table1_x.json: is an input of this command')
  assert table.read_text() == '{"methods": {}}'


@pytest.mark.slow
def test_experiment_results_never_land_on_their_inputs(tmp_path):
  # A feature file that happens to carry the name of table1's own .npz result.
  os.makedirs(tmp_path / 'out')
  features = conftest.random_feature_file(tmp_path / 'out' / 'table1_random.npz', n=30)
  before = digests(features)
  result = cli('miml_jax.experiments.table1', f'--features={features}',
               f'--output_dir={tmp_path}/out', '--splits=1', '--solvers=newton_l1')
  assert_user_error(result, 'table1_random.npz: is an input of this command')
  assert digests(features) == before and sorted(os.listdir(tmp_path / 'out')) == [
      'table1_random.npz']


@pytest.mark.slow
def test_two_datasets_of_one_name_stop_before_any_work(tmp_path):
  a = conftest.random_feature_file(tmp_path / 'a.h5', n=30)
  b = conftest.random_feature_file(tmp_path / 'b.h5', n=30, seed=1)
  result = cli('miml_jax.experiments.table1', f'--features={a},{b}',
               f'--output_dir={tmp_path}/out', '--splits=1', '--solvers=newton_l1')
  assert_user_error(result, "both named 'random'")
  assert not os.path.exists(tmp_path / 'out')


@pytest.mark.slow
def test_results_of_ours_are_rewritten_but_a_strangers_are_not(tmp_path):
  features = conftest.random_feature_file(tmp_path / 'f.h5', n=30)
  args = [f'--features={features}', f'--output_dir={tmp_path}/out', '--splits=1',
          '--solvers=newton_l1', '--compilation_cache=']
  first = cli('miml_jax.experiments.table1', *args)
  assert first.returncode == 0, first.stderr
  result = json.loads((tmp_path / 'out' / 'table1_random.json').read_text())
  assert result['format'] == 'miml_jax.table1/1'
  again = cli('miml_jax.experiments.table1', *args)
  assert again.returncode == 0, again.stderr
  (tmp_path / 'out' / 'table1_random.json').write_text('{"mine": true}\n')
  assert_user_error(cli('miml_jax.experiments.table1', *args), 'table1_random.json: exists')
  assert (tmp_path / 'out' / 'table1_random.json').read_text() == '{"mine": true}\n'


@pytest.mark.slow
@pytest.mark.parametrize('case', ['parent_is_a_file', 'output_is_a_folder',
                                  'output_dir_is_a_file'])
def test_write_problems_are_found_before_the_work(tiny, tmp_path, case):
  root, weights = tiny
  (tmp_path / 'file').write_text('x')
  os.makedirs(tmp_path / 'folder')
  if case == 'output_dir_is_a_file':
    result = cli('miml_jax.experiments.table1', f'--dataset={root}', f'--weights={weights}',
                 f'--cache_dir={tmp_path}/cache', f'--output_dir={tmp_path}/file', '--splits=1')
    assert_user_error(result, 'file')
  else:
    output = {'parent_is_a_file': tmp_path / 'file' / 'x.h5',
              'output_is_a_folder': tmp_path / 'folder'}[case]
    assert_user_error(features_cli(root, weights, output),
                      {'parent_is_a_file': 'is a file, not a folder',
                       'output_is_a_folder': 'is a folder'}[case])
  # Nothing was extracted: no cache, no parts.
  assert not os.path.exists(tmp_path / 'cache')
  assert not [n for n in os.listdir(tmp_path) if n.endswith(('.parts', '.lock'))]


def _in_mount(mount, options: str, *command: str):
  """Runs `command` with an empty tmpfs mounted (with `options`) on the folder `mount`, in a
  private user and mount namespace (the mount is gone with it); skips where this machine cannot
  make one. Returns the CompletedProcess."""
  if shutil.which('unshare') is None:
    pytest.skip('no unshare(1) here')
  os.makedirs(mount, exist_ok=True)
  mounted = f'mount -t tmpfs -o {options} tmpfs {mount}'
  if subprocess.run(['unshare', '-rm', 'sh', '-c', mounted], capture_output=True).returncode:
    pytest.skip('cannot mount a private tmpfs here (no user namespaces)')
  return subprocess.run(['unshare', '-rm', 'sh', '-c', f'{mounted} && exec "$@"', 'sh',
                         *command], capture_output=True, text=True, cwd=conftest.REPO,
                        timeout=300)


@pytest.mark.slow
def test_read_only_folder_is_found_before_the_work(tiny, tmp_path):
  root, weights = tiny
  mount = tmp_path / 'mnt'
  for output in (mount / 'out.h5', mount / 'sub' / 'out.h5'):
    result = _in_mount(mount, 'ro', sys.executable, '-m', 'miml_jax.features', f'--data={root}',
                             f'--weights={weights}', f'--output={output}', '--image_size=32')
    assert_user_error(result, str(output), 'Read-only file system')


@pytest.mark.slow
def test_a_full_disk_keeps_the_finished_parts(tmp_path):
  rng = np.random.default_rng(0)
  root = tmp_path / 'd'
  conftest.write_images(root / 'images', 24, rng)
  with open(root / 'labels.csv', 'w') as f:
    f.write('image,a\n' + ''.join(f'img{i}.{"png" if i % 2 else "jpg"},{i % 2}\n'
                                  for i in range(24)))
  from miml_jax import weights as weights_lib
  from tests import reference
  weights = tmp_path / 'w.safetensors'
  weights_lib.save(weights, reference.random_params(rng), source='test',
                   preprocessing=weights_lib.TORCHVISION)
  # Each part holds 2 x 5888 float32 (47 kB): 150 kB takes two or three of them.
  result = _in_mount(tmp_path / 'mnt', 'size=150k', sys.executable, '-m', 'miml_jax.features',
                     f'--data={root}', f'--weights={weights}', f'--output={tmp_path}/mnt/f.h5',
                     '--image_size=32', '--batch_size=2', '--compilation_cache=')
  assert_user_error(result, 'No space left on device', 'of 24 images done, kept in',
                    'a rerun resumes from them')


@pytest.mark.slow
def test_ctrl_c_ends_in_one_line_and_resumes(tmp_path):
  rng = np.random.default_rng(1)
  root = tmp_path / 'd'
  paths = conftest.write_images(root / 'images', 30, rng)
  with open(root / 'labels.csv', 'w') as f:
    f.write('image,a\n' + ''.join(f'{os.path.basename(p)},{i % 2}\n' for i, p in enumerate(paths)))
  from miml_jax import weights as weights_lib
  from tests import reference
  weights = tmp_path / 'w.safetensors'
  weights_lib.save(weights, reference.random_params(rng), source='test',
                   preprocessing=weights_lib.TORCHVISION)
  out = tmp_path / 'f.h5'
  # Ctrl-C as in a terminal, even where pytest itself runs with SIGINT ignored (a background job
  # of a shell without job control), which a plain child would inherit.
  as_in_a_terminal = ('import runpy, signal, sys; signal.signal(signal.SIGINT, '
                      'signal.default_int_handler); sys.argv[0] = "miml_jax.features"; '
                      'runpy.run_module("miml_jax.features", run_name="__main__")')
  proc = subprocess.Popen(
      [sys.executable, '-c', as_in_a_terminal, f'--data={root}', f'--weights={weights}',
       f'--output={out}', '--image_size=32', '--batch_size=2', '--compilation_cache='],
      cwd=conftest.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  parts = tmp_path / 'f.h5.parts'
  deadline = time.monotonic() + 120
  while (not parts.is_dir() or len(os.listdir(parts)) < 3) and proc.poll() is None:
    assert time.monotonic() < deadline
    time.sleep(0.01)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err
  assert 'Traceback' not in err
  last = err.replace('\r', '\n').strip().splitlines()[-1]
  assert last.startswith('interrupted; rerun to resume: ') and 'of 30 images done' in last
  assert not out.exists() and parts.is_dir()
  assert not [n for n in os.listdir(tmp_path) if n.endswith('.lock')]
  done = features_cli(root, weights, out, '--batch_size=2')
  assert done.returncode == 0, done.stderr
  assert store.read_feature_file(out).features.shape == (30, 5888)


@pytest.mark.slow
@pytest.mark.parametrize('module,args,message', [
    ('miml_jax.experiments.table1', ['--splits=0'], '--splits must be at least 1'),
    ('miml_jax.experiments.table1', ['--train_fraction=1.5'], '--train_fraction must lie'),
    ('miml_jax.experiments.table1', ['--train_fraction=0.01'], 'each side of a split'),
    ('miml_jax.experiments.table1', ['--C=nan'], '--C must be a finite positive'),
    ('miml_jax.experiments.table1', ['--C=-1'], '--C must be a finite positive'),
    ('miml_jax.experiments.table1', ['--tol=inf'], '--tol must be a finite positive'),
    ('miml_jax.experiments.table1', ['--solvers=newton_l3'], 'unknown newton_l3'),
    ('miml_jax.experiments.table1', ['--n_jobs=0'], '--n_jobs'),
    ('miml_jax.experiments.figure3', ['--train_sizes=1,5'], '--train_sizes must lie in 2..'),
    ('miml_jax.experiments.c_selection', ['--Cs=1,0'], '--Cs must hold finite positive'),
    ('miml_jax.experiments.c_selection', ['--folds=1'], '--folds must be at least 2'),
    ('miml_jax.experiments.c_selection', ['--folds=100'], '--folds must be in 2..'),
    ('miml_jax.tag', ['train', '--C=inf'], '--C must be a finite positive'),
    ('miml_jax.tag', ['train', '--Cs=0.1,nan'], '--Cs must hold finite positive'),
    ('miml_jax.tag', ['train', '--C=cv', '--folds=1'], '--folds must be at least 2'),
    ('miml_jax.tag', ['train', '--image_size=16'], 'image size must be in 32..'),
    ('miml_jax.features', ['--batch_size=0'], 'batch size must be in 1..'),
])
def test_every_number_is_checked_before_any_work(tiny, tmp_path, module, args, message):
  root, weights = tiny
  common = {'miml_jax.features': [f'--data={root}', f'--output={tmp_path}/o/f.h5'],
            'miml_jax.tag': [f'--data={root}', f'--output={tmp_path}/o/m.tagger']}.get(
                module, [f'--dataset={root}', f'--output_dir={tmp_path}/o'])
  if module == 'miml_jax.tag':
    args, common = args[:1], common + args[1:]
  if module != 'miml_jax.features':
    common.append(f'--cache_dir={tmp_path}/cache')
  result = cli(module, *args, *common, f'--weights={weights}')
  assert_user_error(result, message)
  assert not os.path.exists(tmp_path / 'cache') and not os.path.exists(tmp_path / 'o')


def test_json_never_holds_nan(tmp_path):
  atomic.write_json(tmp_path / 'r.json', {'gap': float('nan'), 'x': [1.0, float('inf')]})
  text = (tmp_path / 'r.json').read_text()
  assert json.loads(text) == {'gap': None, 'x': [1.0, None]}
  assert 'NaN' not in text and 'Infinity' not in text


def test_labels_are_not_features(tmp_path, small_weights, monkeypatch):
  root = conftest.tiny_dataset(tmp_path, n=4)
  out = str(tmp_path / 'f.h5')
  store.write_feature_file(datasets.load(root), small_weights, out, image_size=32,
                           progress=False)
  before = store.read_feature_file(out)
  csv = (root / 'labels.csv').read_text().splitlines()
  csv[0] += ',c'
  csv[1:] = [f'{row},{i % 2}' for i, row in enumerate(csv[1:])]
  (root / 'labels.csv').write_text('\n'.join(csv) + '\n')

  def no_extraction(*args, **kwargs):
    raise AssertionError('features extracted again for a change of labels only')
  monkeypatch.setattr(extract, 'iter_feature_batches', no_extraction)
  store.write_feature_file(datasets.load(root), small_weights, out, image_size=32,
                           progress=False)
  after = store.read_feature_file(out)
  np.testing.assert_array_equal(after.features, before.features)
  assert after.label_names == ('a', 'b', 'c')
  np.testing.assert_array_equal(after.labels[:, 2], [0, 1, 0, 1])


def test_outputs_module_on_its_own(tmp_path):
  """The checks in-process: identity through a link, and what counts as made by miml_jax."""
  data = tmp_path / 'data.bin'
  data.write_bytes(b'x')
  inputs = outputs.Inputs([data])
  os.symlink(data, tmp_path / 'link')
  assert inputs.match(tmp_path / 'link') == str(data)
  assert inputs.match(tmp_path / 'other') is None
  features = conftest.random_feature_file(tmp_path / 'f.h5', n=5)
  assert outputs.made_as(features, 'miml_jax.features')
  assert not outputs.made_as(features, 'miml_jax.tagger')
  atomic.write_json(tmp_path / 'table1_x.json', {'format': 'miml_jax.table1/1'})
  (tmp_path / 'table1_x.md').write_text('# Table 1')
  (tmp_path / 'other.md').write_text('# mine')
  assert outputs.made_as(str(tmp_path / 'table1_x.md'), 'miml_jax.table1')
  assert not outputs.made_as(str(tmp_path / 'other.md'), 'miml_jax.table1')
  with pytest.raises(UserError, match='other.md: exists'):
    outputs.check_file(str(tmp_path / 'other.md'), kind='miml_jax.table1')
