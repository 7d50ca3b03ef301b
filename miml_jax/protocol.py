"""The paper's protocol as data: the methods it compares (`METHODS`) and the settings of one run
(`Protocol`), built once (from flags, or by hand) and passed whole to `miml_jax.evaluation`.

Methods, by solver and penalty (all at the same C, on the same scaled features unless said
otherwise), each at its own default tolerance of the one optimality measure of
`miml_jax.solvers.objective`:
  newton_l1, newton_l2        our batched JAX Newton solvers (`fit_logistic(method='newton')`:
                              L1 proximal Newton on a working set, L2 Newton in sample space);
  fista_l1, fista_l2          our batched FISTA (`fit_logistic(method='fista')`);
  liblinear_l1, liblinear_l2  scikit-learn's liblinear on the same problems, the references
                              our solvers' objectives are checked against;
  liblinear_paper             what the paper ran: LIBLINEAR's command-line defaults for L1-LR
                              (eps 0.01, no bias) on raw features;
  recipe                      `miml_jax.recipe`: C, calibration and the L1/L2 mix chosen by
                              cross-validation inside each split's training part; its final fits
                              are newton_l1's and newton_l2's problems, taken over when those run.
"""

import dataclasses

import numpy as np
from absl import logging

from miml_jax import model_selection
from miml_jax import splits
from miml_jax.plumbing.errors import UserError

# Newton's 1e-7 leaves every 30-split Table 1 problem within about 1e-6 of the optimum for 2%
# more time than 1e-6, which left scene's L1 problems up to 1.2e-4 above it
# (`experiments/archive/solver_speed.md`); FISTA stops on the same measure; liblinear at 1e-8 is
# the reference optimum. liblinear_paper's 0.01 is part of the paper's method.
_OURS_TOL = 1e-7
_REFERENCE_TOL = 1e-8


@dataclasses.dataclass(frozen=True)
class Method:
  """One method of the protocol.

  solver: 'newton' or 'fista' (ours, batched in JAX: their weights are kept), 'liblinear', or
  'recipe'; penalty: 'l1' or 'l2' (None: the recipe mixes both); tol: its default tolerance;
  fixed_tol: the tolerance is part of the method (no --tol changes it); scaled: fitted on the
  protocol's scaled features (False: raw ones); reference: the method whose objective on the
  same problems checks this one's; reuses: methods whose fits this one takes over when they ran;
  max_iter: its own iteration cap (None: the protocol's).
  """
  name: str
  solver: str
  penalty: str | None
  tol: float
  fixed_tol: bool = False
  scaled: bool = True
  fit_intercept: bool = True
  reference: str | None = None
  reuses: tuple[str, ...] = ()
  max_iter: int | None = None

  @property
  def ours(self) -> bool:
    return self.solver in ('newton', 'fista')


METHODS: dict[str, Method] = {m.name: m for m in (
    Method('newton_l1', 'newton', 'l1', _OURS_TOL, reference='liblinear_l1'),
    Method('newton_l2', 'newton', 'l2', _OURS_TOL, reference='liblinear_l2'),
    Method('fista_l1', 'fista', 'l1', _OURS_TOL, reference='liblinear_l1'),
    Method('fista_l2', 'fista', 'l2', _OURS_TOL, reference='liblinear_l2'),
    # The references run to their tolerance, not to our iteration cap.
    Method('liblinear_l1', 'liblinear', 'l1', _REFERENCE_TOL, max_iter=100_000),
    Method('liblinear_l2', 'liblinear', 'l2', _REFERENCE_TOL, max_iter=100_000),
    # LIBLINEAR's command-line defaults, iteration cap too.
    Method('liblinear_paper', 'liblinear', 'l1', 0.01, fixed_tol=True, scaled=False,
           fit_intercept=False, max_iter=1000),
    Method('recipe', 'recipe', None, _OURS_TOL, reuses=('newton_l1', 'newton_l2')),
)}
# Names before the FISTA methods joined.
RENAMED = {'jax_l1': 'newton_l1', 'jax_l2': 'newton_l2'}


def method(name: str) -> Method:
  """The method called `name` (an old name renamed, with a warning), or `UserError`."""
  if name in RENAMED:
    logging.warning('method %s is now called %s', name, RENAMED[name])
    name = RENAMED[name]
  if name not in METHODS:
    raise UserError(f'unknown method {name!r}; choose from {", ".join(METHODS)}')
  return METHODS[name]


def default_tols() -> dict[str, float]:
  """{solver: its methods' default tolerance} (liblinear_paper's under its own name)."""
  return {('liblinear_paper' if m.fixed_tol else m.solver): m.tol
          for m in METHODS.values() if m.solver != 'recipe'}


@dataclasses.dataclass(frozen=True)
class Protocol:
  """The settings of one run of the protocol: which methods, on which splits, at which C,
  scaling, tolerance and iteration cap, and the recipe's steps, grid and folds.

  methods: names of `METHODS` (old names are renamed); tol: None for each method its own.
  Checked when made (`UserError` for a bad value); the split sizes need the data
  (`masks`).
  """
  methods: tuple[str, ...] = ('newton_l1', 'newton_l2')
  splits: int = 30
  train_fraction: float = 2 / 3
  seed: int = 0
  C: float = 1.0
  scaling: str = 'standardize'
  tol: float | None = None
  max_iter: int = 20_000
  recipe_steps: tuple[str, ...] | None = None
  Cs: tuple[float, ...] = model_selection.DEFAULT_CS
  folds: int = 3

  def __post_init__(self):
    from miml_jax import recipe   # pylint: disable=g-import-not-at-top
    names = tuple(dict.fromkeys(method(n).name for n in self.methods))
    if not names:
      raise UserError('no methods to run')
    object.__setattr__(self, 'methods', names)
    steps = recipe.DEFAULT_STEPS if self.recipe_steps is None else tuple(self.recipe_steps)
    unknown = sorted(set(steps) - set(recipe.STEPS))
    if unknown:
      raise UserError(f'unknown recipe steps {unknown}; choose from {", ".join(recipe.STEPS)}')
    object.__setattr__(self, 'recipe_steps', steps)
    object.__setattr__(self, 'Cs', tuple(float(c) for c in self.Cs))
    for name, ok in (('splits', self.splits >= 1), ('C', self.C > 0),
                     ('train_fraction', 0 < self.train_fraction < 1),
                     ('max_iter', self.max_iter >= 1), ('folds', self.folds >= 2),
                     ('tol', self.tol is None or self.tol > 0),
                     ('Cs', bool(self.Cs) and min(self.Cs) > 0)):
      if not ok:
        raise UserError(f'protocol: {name}={getattr(self, name)!r} is out of range')

  def tol_of(self, name: str) -> float:
    """The tolerance `name` runs at under this protocol."""
    m = METHODS[name]
    return m.tol if self.tol is None or m.fixed_tol else self.tol

  @property
  def recipe_kwargs(self) -> dict:
    """`recipe.fit_recipes`'s settings."""
    return {'steps': self.recipe_steps, 'Cs': self.Cs, 'folds': self.folds}

  def masks(self, n_images: int) -> np.ndarray:
    """(splits, n_images) the training masks of this protocol's random splits."""
    return splits.random_splits(n_images, self.splits, self.train_fraction, self.seed)

  def to_json(self) -> dict:
    """The settings, JSON-ready; the recipe's only if it runs."""
    out = {'methods': list(self.methods), 'splits': self.splits,
           'train_fraction': self.train_fraction, 'seed': self.seed, 'C': self.C,
           'scaling': self.scaling, 'tol': self.tol, 'max_iter': self.max_iter}
    if 'recipe' in self.methods:
      out['recipe'] = {'steps': list(self.recipe_steps), 'Cs': list(self.Cs),
                       'folds': self.folds}
    return out
