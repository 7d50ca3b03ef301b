"""`fit_logistic`: every label's (and every split's) regularised logistic regression in one call.

By default both penalties are solved by Newton-type methods: L1 by proximal Newton on a working
set (`miml_jax.solvers.prox_newton`, liblinear's own method batched), L2 by Newton's method in
sample space (`miml_jax.solvers.newton`); FISTA (`miml_jax.solvers.fista`) remains for either.
All solve liblinear's objective (`miml_jax.solvers.objective`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from miml_jax import sharding
from miml_jax.errors import UserError
from miml_jax.solvers import fista
from miml_jax.solvers import newton
from miml_jax.solvers import prox_newton
from miml_jax.solvers.objective import LogisticFit

METHODS = ('auto', 'fista', 'newton')


def fit_logistic(X, Y, *, penalty='l1', C=1.0, fit_intercept=True, intercept_scaling=1.0,
                 tol=1e-4, max_iter=10_000, train_mask=None, shift=None, scale=None,
                 method='auto', newton_every=None, newton_block=None,
                 l1_subproblem=None) -> LogisticFit:
  """Fits one regularised logistic regression per label (and per train mask), all at once.

  Args:
    X: (n, d) features.
    Y: (n, L) labels in {0, 1}.
    penalty: 'l1' or 'l2'.
    C: inverse regularisation strength, a scalar or one per label (L,).
    fit_intercept, intercept_scaling: as liblinear (the intercept is penalised as a weight on a
      constant feature of value intercept_scaling).
    tol: stop a problem when its stopping measure is below tol times its value at zero (L1
      Newton: the 1-norm of the minimum-norm subgradient, as liblinear; L2 Newton: the gradient
      norm; FISTA: the prox-gradient mapping).
    max_iter: most iterations for any problem.
    train_mask: optional (S, n) bool, one row per data split; rows outside a split's mask do not
      enter its fit. Without it, all rows are used and outputs have no leading S axis.
    shift, scale: optional (d,) or (S, d): split s is fitted on features (X - shift_s) / scale_s
      (e.g. standardised with that split's training statistics, see `miml_jax.scaling`) without
      forming them. The penalty applies to those scaled weights; `coef` and `intercept` are
      returned in raw-feature units, so decisions are always X @ coef + intercept.
    method: 'newton' (the default, also 'auto') or 'fista'. Newton: for L2 in sample space, an
      (m, m) factorisation per problem (m training rows); for L1 proximal Newton on a working set
      of `newton_block` coordinates (a (K, K) factorisation per problem), grown while a support
      outgrows it. FISTA holds only vectors and needs far more iterations.
    newton_every, newton_block: FISTA takes, every `newton_every` iterations (0: never), a
      safeguarded Newton step on the `newton_block` most important coordinates of each problem
      (None: every 10 iterations for L1, never for L2; 256 coordinates). L1 Newton starts from a
      working set of `newton_block` coordinates (None: 256).
    l1_subproblem: how L1 Newton minimises its model on the working set: 'cd' (coordinate
      descent, sequential) or 'fista' (batched products); None: 'cd' on CPUs, 'fista' on
      accelerators.

  Returns:
    A `LogisticFit` (see its docstring).
  """
  if penalty not in ('l1', 'l2'):
    raise UserError(f"penalty must be 'l1' or 'l2', got {penalty!r}")
  if method not in METHODS:
    raise UserError(f'method must be one of {", ".join(METHODS)}, got {method!r}')
  if l1_subproblem is None:
    l1_subproblem = 'cd' if jax.devices()[0].platform == 'cpu' else 'fista'
  if l1_subproblem not in prox_newton.SUBPROBLEMS:
    raise UserError(f'l1_subproblem must be one of {", ".join(prox_newton.SUBPROBLEMS)}, got '
                    f'{l1_subproblem!r}')
  X = jnp.asarray(X)
  if not jnp.issubdtype(X.dtype, jnp.floating):
    X = X.astype(jnp.float32)
  Y = np.asarray(Y)
  if X.ndim != 2 or Y.ndim != 2 or Y.shape[0] != X.shape[0]:
    raise UserError(f'X must be (n, d) and Y (n, L); got X {X.shape}, Y {Y.shape}')
  if not np.isin(Y, (0, 1)).all():
    raise UserError('Y must hold only 0 and 1')
  if not bool(jnp.all(jnp.isfinite(X))):
    raise UserError('X holds NaN or infinite values')
  if np.any(np.asarray(C) <= 0) or intercept_scaling <= 0:
    raise UserError('C and intercept_scaling must be positive')
  single = train_mask is None
  mask = np.ones((1, X.shape[0]), bool) if single else np.asarray(train_mask, bool)
  if mask.ndim != 2 or mask.shape[1] != X.shape[0]:
    raise UserError(f'train_mask must be (S, n={X.shape[0]}); got {mask.shape}')
  if not mask.any(axis=1).all():
    raise UserError('every train mask must select at least one row')
  S, d = mask.shape[0], X.shape[1]
  shift = jnp.broadcast_to(jnp.zeros(d, X.dtype) if shift is None else
                           jnp.asarray(shift, X.dtype), (S, d))
  scale = jnp.broadcast_to(jnp.ones(d, X.dtype) if scale is None else
                           jnp.asarray(scale, X.dtype), (S, d))
  if not bool(jnp.all(scale > 0)):
    raise UserError('scale must be positive')
  C = jnp.broadcast_to(jnp.asarray(C, X.dtype), (Y.shape[1],))
  s0 = jnp.asarray(intercept_scaling, X.dtype)
  tol = jnp.asarray(tol, X.dtype)
  static = dict(fit_intercept=fit_intercept, max_iter=int(max_iter))
  block = 256 if newton_block is None else int(newton_block)
  # Splits are independent problems: shard them over all devices, of all processes (padded with
  # copies of the first split, dropped below); the data and labels are replicated.
  mesh = sharding.global_mesh()
  padded = sharding.padded(S, mesh)
  split_axis = lambda a: sharding.shard_leading(sharding.pad_leading(a, padded), mesh)
  X, Yd = sharding.replicate((X, jnp.asarray(Y, X.dtype)), mesh)
  shift, scale = split_axis(shift), split_axis(scale)
  C, s0, tol = sharding.replicate((C, s0, tol), mesh)
  # Each solver runs per device on its share of the splits: the flags say which arguments have
  # the split axis first (the others are replicated).
  if method != 'fista':
    rows, valid = (split_axis(a) for a in newton.training_rows(mask))
    if penalty == 'l2':
      fit = sharding.map_splits(
          newton.solve, mesh, (False, False, True, True, True, True, False, False, False),
          X, Yd, rows, valid, shift, scale, C, s0, tol, **static)
    else:
      z0 = split_axis(np.zeros((S, d + int(fit_intercept), Y.shape[1]), X.dtype))
      fit = prox_newton.solve_growing(
          functools.partial(sharding.map_splits, prox_newton.solve, mesh,
                            (False, False, True, True, True, True, True, False, False, False,
                             True, False)),
          X, Yd, split_axis(mask.astype(X.dtype)), rows, valid, shift, scale, C, s0, tol, z0,
          max_iter=int(max_iter), block=block,
          fit_intercept=fit_intercept, subproblem=l1_subproblem)
  else:
    fit = sharding.map_splits(
        fista.solve, mesh, (False, False, True, True, True, False, False, False),
        X, Yd, split_axis(mask.astype(X.dtype)), shift, scale, C, s0, tol, penalty=penalty,
        newton_every=(10 if penalty == 'l1' else 0) if newton_every is None
        else int(newton_every),
        newton_block=block, **static)
  fit = LogisticFit(*(sharding.gather(a) for a in fit))
  if padded != S:
    fit = LogisticFit(*(a[:S] for a in fit))
  if single:
    fit = LogisticFit(*(a[0] for a in fit))
  return fit
