"""Multi-level VGG16 features of images, and the HDF5 files that cache them.

`python -m miml_jax.features --data=FOLDER --weights=PATH --output=FILE.h5` writes a feature file.
"""

from miml_jax.features.extract import batch_features
from miml_jax.features.extract import extract_features
from miml_jax.features.extract import FeatureLayout
from miml_jax.features.extract import iter_feature_batches
from miml_jax.features.extract import layout
from miml_jax.features.extract import quadrant_max
from miml_jax.features.store import cached_features
from miml_jax.features.store import FeatureFile
from miml_jax.features.store import read_feature_file
from miml_jax.features.store import save_feature_file
from miml_jax.features.store import write_feature_file
