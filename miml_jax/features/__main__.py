"""Writes a dataset's multi-level VGG16 features to an HDF5 file (resumable, reused when fresh).

  python -m miml_jax.features --dataset=scene --output=scene.h5
  python -m miml_jax.features --dataset=scene --augment=flip --scales=224,320 --output=f.h5

--augment=flip averages each image's features with its mirror image's, --scales averages the
conv features of several input sizes (`miml_jax.features.extract`); the file records both.
"""

from absl import flags
from absl import logging

from miml_jax import cli
from miml_jax import datasets
from miml_jax import input_flags
from miml_jax import runtime_flags
from miml_jax.features import extract
from miml_jax.features import store

_OUTPUT = flags.DEFINE_string('output', None, 'HDF5 file to write.', required=True)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'Images per device step.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', list(extract.DTYPES), 'Compute dtype.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 224, 'Images are resized to this square size; '
                                   'fc7 exists only at 224.')
_SCALES = flags.DEFINE_list('scales', None, 'Several input sizes whose features are averaged '
                            '(instead of --image_size), e.g. 224,320.')
_AUGMENT = flags.DEFINE_enum('augment', 'none', list(extract.AUGMENTS),
                             'flip: average each image\'s features with its mirror image\'s.')
_OVERWRITE = cli.define_overwrite()
flags.declare_key_flag('overwrite')
flags.adopt_module_key_flags(input_flags)


def main(argv):
  cli.no_arguments(argv)
  image_size = cli.image_sizes(_SCALES, _IMAGE_SIZE)
  extract.check_sizes(_BATCH_SIZE.value, image_size, _DTYPE.value, _AUGMENT.value)
  runtime_flags.apply()
  logging.info('flags: %s', flags.FLAGS.flags_into_string())
  dataset = datasets.load(input_flags.one_dataset(), input_flags.DATA_DIR.value)
  path = store.write_feature_file(dataset, input_flags.WEIGHTS.value, _OUTPUT.value,
                                  batch_size=_BATCH_SIZE.value, dtype=_DTYPE.value,
                                  image_size=image_size, augment=_AUGMENT.value,
                                  overwrite=_OVERWRITE.value)
  result = store.read_feature_file(path)
  print(f'{path}: {result.features.shape[0]} images x {result.features.shape[1]} features, '
        f'{len(result.label_names)} labels')


if __name__ == '__main__':
  cli.run(main)
