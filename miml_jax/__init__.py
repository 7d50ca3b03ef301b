"""miml_jax: multi-label image tagging from small datasets with transferred VGG16 features.

    from miml_jax import VGG16Features, MultiLabelLogisticRegression
    tagger = make_pipeline(VGG16Features(), MultiLabelLogisticRegression()).fit(paths, Y)
"""

import importlib

# Imported on first use, so that `import miml_jax.images` (say) does not pull in JAX and
# scikit-learn.
_LAZY = {
    'Tagger': 'miml_jax.tagging.tagger',
    'MultiLabelLogisticRegression': 'miml_jax.estimator',
    'MultiLabelLogisticRegressionCV': 'miml_jax.estimator',
    'VGG16Features': 'miml_jax.features.transformer',
}


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f'module miml_jax has no attribute {name!r}')
