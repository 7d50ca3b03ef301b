"""miml_jax: multi-label image tagging from small datasets with transferred VGG16 features."""


def __getattr__(name):
  # `miml_jax.Tagger` without importing JAX for every submodule (images, datasets) up front.
  if name == 'Tagger':
    from miml_jax.tagger import Tagger   # pylint: disable=g-import-not-at-top
    return Tagger
  raise AttributeError(f'module miml_jax has no attribute {name!r}')
