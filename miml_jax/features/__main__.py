"""Writes a dataset's multi-level VGG16 features to an HDF5 file (resumable, reused when fresh).

  python -m miml_jax.features --data=$MIML_JAX_DATA/scene \
      --weights=weights/vgg16_lpips.safetensors --output=cache/scene.h5
"""

from absl import app
from absl import flags
from absl import logging

from miml_jax import datasets
from miml_jax import runtime_flags
from miml_jax.errors import exit_on_user_error
from miml_jax.features import extract
from miml_jax.features import store

_DATA = flags.DEFINE_string('data', None, 'Dataset folder (images/ + labels.csv), or a dataset '
                            'name under --data_dir / $MIML_JAX_DATA.', required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Folder holding datasets by name.')
_WEIGHTS = flags.DEFINE_string('weights', 'weights/vgg16_lpips.safetensors',
                               'Converted weights file (python -m miml_jax.weights.convert).')
_OUTPUT = flags.DEFINE_string('output', None, 'HDF5 file to write.', required=True)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'Images per device step.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', list(extract.DTYPES), 'Compute dtype.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 224, 'Images are resized to this square size; '
                                   'fc7 exists only at 224.')


def main(argv):
  runtime_flags.apply()
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.info('flags: %s', {f.name: f.value for f in (_DATA, _DATA_DIR, _WEIGHTS, _OUTPUT,
                                                        _BATCH_SIZE, _DTYPE, _IMAGE_SIZE)})
  with exit_on_user_error():
    dataset = datasets.load(_DATA.value, _DATA_DIR.value)
    path = store.write_feature_file(dataset, _WEIGHTS.value, _OUTPUT.value,
                                    batch_size=_BATCH_SIZE.value, dtype=_DTYPE.value,
                                    image_size=_IMAGE_SIZE.value)
    result = store.read_feature_file(path)
  print(f'{path}: {result.features.shape[0]} images x {result.features.shape[1]} features, '
        f'{len(result.label_names)} labels')


if __name__ == '__main__':
  app.run(main)
