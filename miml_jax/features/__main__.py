"""Writes a dataset's multi-level features (VGG16's by default, --backbone) to an HDF5 file
(resumable, reused when fresh).

  python -m miml_jax.features --dataset=scene --output=scene.h5
  python -m miml_jax.features --dataset=scene --augment=flip --scales=224,320 --output=f.h5
  python -m miml_jax.features --dataset=scene --backbone=efficientnet_lite0 --output=scene_l0.h5

--augment=flip averages each image's features with its mirror image's, --scales averages the
conv features of several input sizes (`miml_jax.features.extract`); the file records both.
"""

from absl import flags
from absl import logging

from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax import datasets
from miml_jax.plumbing import input_flags
from miml_jax.plumbing import runtime_flags
from miml_jax.features import extract
from miml_jax.features import store

_OUTPUT = common_flags.output('the HDF5 feature file.', required=True)
_BATCH_SIZE = common_flags.batch_size()
_DTYPE = flags.DEFINE_enum('dtype', 'float32', list(extract.DTYPES),
                           'Compute dtype of the extraction.')
_IMAGE_SIZE = common_flags.image_size()
_SCALES = common_flags.scales()
_AUGMENT = common_flags.augment()
_OVERWRITE = common_flags.overwrite()
flags.adopt_module_key_flags(input_flags)


def main(argv):
  cli.no_arguments(argv)
  image_size = cli.image_sizes(_SCALES, _IMAGE_SIZE)
  extract.check_sizes(_BATCH_SIZE.value, image_size, _DTYPE.value, _AUGMENT.value)
  runtime_flags.apply()
  logging.info('flags: %s', flags.FLAGS.flags_into_string())
  dataset = datasets.load(input_flags.one_dataset(), input_flags.DATA_DIR.value)
  path = store.write_feature_file(dataset, input_flags.weights(), _OUTPUT.value,
                                  batch_size=_BATCH_SIZE.value, dtype=_DTYPE.value,
                                  image_size=image_size, augment=_AUGMENT.value,
                                  overwrite=_OVERWRITE.value)
  result = store.read_feature_file(path)
  print(f'{path}: {result.features.shape[0]} images x {result.features.shape[1]} features, '
        f'{len(result.label_names)} labels')


if __name__ == '__main__':
  cli.run(main)
