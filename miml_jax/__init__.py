"""miml_jax: multi-label image tagging from small datasets with transferred VGG16 features."""

from miml_jax.tagger import Tagger
