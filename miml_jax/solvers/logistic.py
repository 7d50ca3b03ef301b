"""`fit_logistic`: every label's (and every split's) regularised logistic regression in one call.

By default both penalties are solved by Newton-type methods: L1 by proximal Newton on a working
set (`l1_prox_newton.ProxNewtonL1`, liblinear's own method batched), L2 by Newton's method in sample
space (`l2_newton.NewtonL2`; from `problem.MATRIX_FREE_ROWS` training rows truncated Newton,
`l2_newton_cg.NewtonCGL2`); `fista.FISTA` solves either. All solve liblinear's objective
(`miml_jax.solvers.objective`) for a `problem.Problem`, and stop on the same optimality measure.
This function checks its arguments, builds the problem, spreads it over the devices and returns
the solver's (Params, SolverState) as one `LogisticFit`.
"""

import jax.numpy as jnp
import numpy as np

from miml_jax import sharding
from miml_jax.plumbing.errors import UserError
from miml_jax.solvers import fista
from miml_jax.solvers import l2_newton
from miml_jax.solvers import l2_newton_cg
from miml_jax.solvers import l1_prox_newton
from miml_jax.solvers.objective import LogisticFit
from miml_jax.solvers.problem import make_problem
from miml_jax.solvers.problem import matrix_free
from miml_jax.solvers.problem import scaled_weights

METHODS = ('auto', 'fista', 'newton')


def fit_logistic(X, Y, *, penalty='l1', C=1.0, fit_intercept=True, intercept_scaling=1.0,
                 tol=1e-4, max_iter=10_000, train_mask=None, shift=None, scale=None,
                 method='auto', newton_every=None, newton_block=None,
                 l1_subproblem=None, init=None) -> LogisticFit:
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
      outgrows it. From `MATRIX_FREE_ROWS` (2,048) training rows both touch the Hessian only
      through products with the data (L2: truncated Newton with conjugate gradients; L1:
      `l1_subproblem='matrix_free'`), memory and time linear in the rows. FISTA holds only
      vectors and needs far more iterations.
    newton_every, newton_block: FISTA takes, every `newton_every` iterations (0: never), a
      safeguarded Newton step on the `newton_block` most important coordinates of each problem
      (None: every 10 iterations for L1, never for L2; 256 coordinates). L1 Newton starts from a
      working set of `newton_block` coordinates (None: 128).
    l1_subproblem: how L1 Newton minimises its model on the working set: 'cd' (coordinate
      descent, sequential), 'fista' (batched products) or 'matrix_free' (no model Hessian);
      None: 'matrix_free' from `MATRIX_FREE_ROWS` training rows, below that 'cd' on CPUs and
      'fista' on accelerators.
    init: optional (coef, intercept), raw-unit weights shaped as this call's result ((S, d, L)
      and (S, L) with train_mask, (d, L) and (L,) without): every problem starts there instead
      of at 0 (a warm start: along a path of C, or a model updated with new images). The
      stopping measure stays relative to its value at 0, so the same tol means the same
      accuracy from any start. Not for L1 cross-validation folds from a fit that saw their
      held-out rows: at a loose tol a fold stops near that fit and its held-out scores look
      better than they are; L2 folds, whose Newton steps land near their own optimum, showed
      no such bias (experiments/l2_queue_and_warm_starts; `recipe.WARM_FOLDS`).

  Returns:
    A `LogisticFit` (see its docstring).
  """
  if penalty not in ('l1', 'l2'):
    raise UserError(f"penalty must be 'l1' or 'l2', got {penalty!r}")
  if method not in METHODS:
    raise UserError(f'method must be one of {", ".join(METHODS)}, got {method!r}')
  if l1_subproblem is not None and l1_subproblem not in l1_prox_newton.SUBPROBLEMS:
    raise UserError(f'l1_subproblem must be one of {", ".join(l1_prox_newton.SUBPROBLEMS)}, got '
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
  for name, value in (('C', C), ('intercept_scaling', intercept_scaling), ('tol', tol)):
    value = np.asarray(value, np.float64)
    if not np.all(np.isfinite(value)) or np.any(value <= 0):
      raise UserError(f'{name} must be finite and positive')
  if int(max_iter) < 1:
    raise UserError('max_iter must be at least 1')
  single = train_mask is None
  mask = np.ones((1, X.shape[0]), bool) if single else np.asarray(train_mask, bool)
  if mask.ndim != 2 or mask.shape[1] != X.shape[0]:
    raise UserError(f'train_mask must be (S, n={X.shape[0]}); got {mask.shape}')
  if not mask.any(axis=1).all():
    raise UserError('every train mask must select at least one row')
  S = mask.shape[0]
  if not bool(jnp.all(jnp.asarray(scale if scale is not None else 1.0) > 0)):
    raise UserError('scale must be positive')
  problem = make_problem(X, Y, mask, 0.0 if shift is None else shift,
                         1.0 if scale is None else scale, C, intercept_scaling, fit_intercept)
  if init is not None:
    init = _checked_init(init, (S, X.shape[1], Y.shape[1]), single)
    init = scaled_weights(problem, *init)
  if method == 'fista':
    solver = fista.FISTA(penalty=penalty, tol=float(tol), max_iter=int(max_iter),
                         newton_every=None if newton_every is None else int(newton_every),
                         newton_block=fista.FISTA.newton_block if newton_block is None
                         else int(newton_block))
  elif penalty == 'l2' and matrix_free(problem):
    solver = l2_newton_cg.NewtonCGL2(tol=float(tol), max_iter=int(max_iter))
  elif penalty == 'l2':
    solver = l2_newton.NewtonL2(tol=float(tol), max_iter=int(max_iter))
  else:
    solver = l1_prox_newton.ProxNewtonL1(
        tol=float(tol), max_iter=int(max_iter), subproblem=l1_subproblem,
        block=l1_prox_newton.BLOCK if newton_block is None else int(newton_block))
  # Splits are independent problems: spread over all devices, of all processes (padded with
  # copies of the first split, dropped below); the data and labels are replicated.
  mesh = sharding.global_mesh()
  splits = sharding.padded(S, mesh)
  if init is not None:
    init = sharding.shard_leading(sharding.pad_leading(init, splits), mesh)
  params, state = solver.run(sharding.place(problem, mesh, splits), mesh, init=init)
  fit = LogisticFit(params.coef, params.intercept, state.objective, state.iter_num,
                    state.converged, state.error)
  fit = LogisticFit(*(sharding.gather(a)[:S] for a in fit))
  if single:
    fit = LogisticFit(*(a[0] for a in fit))
  return fit


def _checked_init(init, shape, single):
  """init (coef, intercept) as float arrays of shapes (S, d, L) and (S, L), or a UserError."""
  try:
    coef, intercept = init
  except (TypeError, ValueError):
    raise UserError('init must be a pair (coef, intercept)') from None
  coef, intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
  if single:
    coef, intercept = coef[None], intercept[None]
  S, d, L = shape
  if coef.shape != (S, d, L) or intercept.shape != (S, L):
    want = f'({d}, {L}) and ({L},)' if single else f'({S}, {d}, {L}) and ({S}, {L})'
    raise UserError(f'init must be coef, intercept of shapes {want}; got '
                    f'{coef.shape[single:]} and {intercept.shape[single:]}')
  if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
    raise UserError('init holds NaN or infinite values')
  return coef, intercept
