r"""FISTA for the problem of `miml_jax.solvers.objective`, many labels and data splits at once.

Accelerated proximal gradient (FISTA) with function-value restart, in a fixed metric M
that majorises the Hessian of the smooth part. Non-negative CNN features make XᵀX nearly rank one
along their mean (a Lipschitz constant of ~1e8 on raw features), so a scalar step barely moves
anything else. With x̃ = (x, s), train mean μ̃, per-feature train std σ and the top eigenvalue λ̂
of the standardised, centred training data,

    Σ_i x̃_i x̃_iᵀ = m μ̃μ̃ᵀ + Σ_i (x̃_i - μ̃)(x̃_i - μ̃)ᵀ  ⪯  m μ̃μ̃ᵀ + λ̂ diag(σ²),

so M = (C/4)(diag(λ̂σ²) + m μ̃μ̃ᵀ) majorises the Hessian (the logistic curvature is at most 1/4):
the raw problem then converges as plain FISTA would on standardised features, but its solution is
the raw problem's own. M⁻¹ follows from Sherman-Morrison, and the prox of a separable penalty in a
diagonal-plus-rank-one metric is a separable prox at a shifted point, the shift being the root of
a scalar monotone equation (Becker & Fadili, 2012), found here by bisection.

FISTA alone still needs thousands of iterations on real features: the optimum is reached only
once the support is found and the curvature on it is resolved. So every few iterations (L1 by
default), a safeguarded Newton step is taken on each problem's most important coordinates (its
non-zero weights, then the zero weights that most violate optimality), in the orthant of their
signs where the objective is smooth, and kept only where it lowers the objective; FISTA's
momentum carries on across the jump. On msrc_v2 features this cut the iterations to the optimum
from well over 3,000 to a few hundred.

Each problem stops on its own when the optimality measure of `miml_jax.solvers.objective` (the
minimum-norm subgradient for L1, the gradient for L2, relative to their values at zero: the same
measure as the Newton solvers') falls below `tol`, checked every `_CHECK_EVERY` iterations;
stopped problems are frozen while the others go on, all inside one `lax.while_loop`.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from miml_jax import sharding
from miml_jax.solvers import design as splits_design
from miml_jax.solvers import power_iteration
from miml_jax.solvers import steps
from miml_jax.solvers import working_set
from miml_jax.solvers.objective import HIGHEST as _HIGHEST
from miml_jax.solvers.objective import log1p_exp
from miml_jax.solvers.objective import loss_terms as _loss_terms
from miml_jax.solvers.objective import min_norm_subgradient
from miml_jax.solvers.objective import optimality
from miml_jax.solvers.objective import penalty_value as _penalty
from miml_jax.solvers.problem import loop_limits
from miml_jax.solvers.problem import Params
from miml_jax.solvers.problem import Problem
from miml_jax.solvers.problem import SolverState
from miml_jax.solvers.problem import zero_weights

# Bisection/Newton steps of the metric prox's scalar root: bisection alone halves the bracket
# each step, so 100 reach float64's resolution from any bracket; Newton usually ends it in 2-3.
_ROOT_STEPS = 100
# Power iterations for the metric's top eigenvalue: within a few % (and then scaled up by 5%).
_POWER_STEPS = 50
# The stopping measure costs one more product with the data: taken every 10 iterations, it adds
# a tenth to the cost and stops a problem at most 9 iterations late.
_CHECK_EVERY = 10
# The power iteration approaches the top eigenvalue from below: 5% more keeps M a majoriser.
_EIGEN_MARGIN = 1.05
# Features whose std is below this fraction of the largest count as constant (their scale is 1).
_CONSTANT = 1e-6
# A step uphill by less than this many eps of |F| is rounding, not a reason to restart.
_UPHILL_EPS = 64


@dataclasses.dataclass(frozen=True)
class FISTA:
  """FISTA in a diagonal-plus-rank-one metric, with safeguarded Newton steps on `newton_block`
  coordinates every `newton_every` iterations (module docstring); None: every 10 for L1, never
  for L2. run(problem) -> (Params, SolverState)."""
  penalty: str = 'l1'
  tol: float = 1e-4
  max_iter: int = 10_000
  newton_every: int | None = None
  newton_block: int = 256
  check_every: int = _CHECK_EVERY

  def run(self, problem: Problem, mesh=None, init=None) -> tuple[Params, SolverState]:
    """init: (S, D, L) the scaled weights to start from (`problem.scaled_weights`; None: 0)."""
    z0 = zero_weights(problem, mesh) if init is None else init
    state = sharding.map_splits(start, mesh, problem, z0, penalty=self.penalty)
    (params, result), _ = sharding.map_splits(
        solve, mesh, problem, state, shared=loop_limits(problem, self.tol, self.max_iter),
        **self._static())
    return params, result

  def init_state(self, problem: Problem, init=None) -> '_State':
    """The loop state at init (S, D, L) (scaled weights; None: 0), as `run` starts: the metric,
    and the stopping measure there."""
    return start(problem, zero_weights(problem) if init is None else init, penalty=self.penalty)

  def update(self, problem: Problem, state: '_State') -> tuple[Params, '_State']:
    """One iteration from `state` (with its Newton step where `run` takes one), for every
    problem of the batch, the stopping measure taken after it: its weights in raw units, and the
    state after it."""
    (params, _), state = solve(problem, state, *loop_limits(problem, self.tol, 1),
                               **self._static())
    return params, state

  def _static(self) -> dict:
    every = self.newton_every
    if every is None:
      every = 10 if self.penalty == 'l1' else 0
    return dict(penalty=self.penalty, newton_every=every, newton_block=self.newton_block,
                check_every=self.check_every)


def _top_eigenvalue(X, mask, mean, std, key):
  """λmax of Σ_i mask_i z_i z_iᵀ, z_i = (x_i - mean) / std, per split, by power iteration.

  X: (n, d); mask: (S, n); mean, std: (S, d). The standardised data is never materialised.
  """
  def apply(v):
    w = v / std
    xv = (jnp.einsum('nd,sd->sn', X, w, precision=_HIGHEST)
          - (mean * w).sum(axis=1, keepdims=True)) * mask
    xtx = (jnp.einsum('nd,sn->sd', X, xv, precision=_HIGHEST)
           - mean * xv.sum(axis=1, keepdims=True)) / std
    return xtx

  return power_iteration.top_eigenvalue(apply, jax.random.normal(key, mean.shape, X.dtype),
                                       _POWER_STEPS)


def _metric(X, mask, shift, scale, intercept_scaling, fit_intercept):
  """Diagonal d_k and rank-one vector u with Σ_i x̃_i x̃_iᵀ ⪯ diag(d) + u uᵀ, per split.

  X: (n, d) raw features; the split's features are (X - shift_s) / scale_s, plus the constant
  intercept column if fitted. mask: (S, n). Returns d, u: (S, D).
  """
  m = mask.sum(axis=1, keepdims=True)
  raw_mean = (mask @ X) / m
  # Variance about a common centre, which spares float32 most of the cancellation. Any positive
  # std keeps the bound below exact, as long as λ̂ is computed with the same std.
  centre = X.mean(axis=0)
  raw_var = mask @ jnp.square(X - centre) / m - jnp.square(raw_mean - centre)
  raw_std = jnp.sqrt(jnp.clip(raw_var, 0.0))
  safe = jnp.where(raw_std > _CONSTANT * raw_std.max(axis=1, keepdims=True), raw_std, 1.0)
  # 5% above the power-iteration estimate, which approaches λmax from below.
  lam = _EIGEN_MARGIN * _top_eigenvalue(X, mask, raw_mean, safe, jax.random.key(0))
  mean = (raw_mean - shift) / scale
  diag = lam[:, None] * jnp.square(safe / scale)
  if fit_intercept:
    mean = jnp.concatenate([mean, jnp.full_like(mean[:, :1], intercept_scaling)], axis=1)
    # The intercept column's centred part is zero, so any diagonal entry majorises; m s², its
    # curvature, at most halves its steps and keeps the prox's root equation well scaled.
    diag = jnp.concatenate([diag, m * intercept_scaling**2], axis=1)
  # A floor keeps the metric positive definite (constant columns); raising the diagonal keeps M
  # a majoriser.
  floor = 1e-6 * jnp.maximum(diag.max(axis=1, keepdims=True), 1e-30)
  return jnp.maximum(diag, floor), jnp.sqrt(m) * mean


def _separable_prox(v, thresh, penalty):
  """argmin_z penalty(z) + (1 / (2 thresh)) (z - v)², elementwise, and its derivative in v."""
  if penalty == 'l1':
    active = jnp.abs(v) > thresh
    return jnp.where(active, v - jnp.sign(v) * thresh, 0.0), active.astype(v.dtype)
  return v / (1.0 + thresh), 1.0 / (1.0 + thresh)


def _metric_prox(v, d, u, kappa, penalty, a0):
  """argmin_z R(z) + (κ/2) ||z - v||²_{diag(d) + uuᵀ}, for every problem.

  v: (S, D, L); d, u: (S, D); kappa: (L,); a0: (S, L) a starting guess for the root below.
  With a = uᵀ(z - v), optimality gives z = prox_{R/(κd)}(v - u a / d), where the scalar a is the
  root of ψ(a) = uᵀ(z(a) - v) - a, piecewise linear with slope <= -1. Newton's method finds it
  exactly once on the right piece; a bracket keeps it safe. Returns (z, a).
  """
  dd, uu = d[..., None], u[..., None]
  thresh = 1.0 / (kappa * dd)
  eps = jnp.finfo(v.dtype).eps

  def psi(a):
    z, dz = _separable_prox(v - uu * a[:, None, :] / dd, thresh, penalty)
    terms = uu * (z - v)
    # The residual is only known to within the rounding of the sum that forms it.
    slope = -(uu * uu / dd * dz).sum(axis=1) - 1.0
    # ψ is only known to within the rounding of its sum and of a itself (times the slope).
    noise = 64 * eps * (jnp.abs(terms).sum(axis=1) + jnp.abs(a) * (1.0 - slope))
    return terms.sum(axis=1) - a, slope, z, noise

  def cond(c):
    _, _, _, res, noise, k = c
    return (k < _ROOT_STEPS) & jnp.any(jnp.abs(res) > noise)

  def body(c):
    a, lo, hi, _, _, k = c
    p, slope, _, noise = psi(a)
    lo = jnp.where(p > 0, a, lo)   # ψ decreasing: the root is above a where ψ(a) > 0
    hi = jnp.where(p > 0, hi, a)
    newton = a - p / slope
    inside = (newton > lo) & (newton < hi)
    mid = jnp.where(jnp.isfinite(lo) & jnp.isfinite(hi), 0.5 * (lo + hi),
                    jnp.where(p > 0, a + 2 * jnp.abs(p) + 1, a - 2 * jnp.abs(p) - 1))
    return jnp.where(inside | (p == 0), newton, mid), lo, hi, p, noise, k + 1

  inf = jnp.full_like(a0, jnp.inf)
  a, _, _, _, _, _ = jax.lax.while_loop(
      cond, body, (a0, -inf, inf, inf, jnp.zeros_like(a0), jnp.zeros((), jnp.int32)))
  return psi(a)[2], a


def _metric_solve(g, d, u):
  """(diag(d) + uuᵀ)⁻¹ g by Sherman-Morrison. g: (S, D, L); d, u: (S, D)."""
  dinv_g = g / d[..., None]
  dinv_u = u / d
  coef = (u[..., None] * dinv_g).sum(axis=1) / (1.0 + (u * dinv_u).sum(axis=1))[:, None]
  return dinv_g - dinv_u[..., None] * coef[:, None, :]


class _State(NamedTuple):
  z: jax.Array         # (S, D, L) current iterate
  xz: jax.Array        # (S, n, L) margins of z
  z_prev: jax.Array
  xz_prev: jax.Array
  f: jax.Array         # (S, L) objective at z
  t: jax.Array         # (S, L) momentum parameter
  n_iter: jax.Array    # (S, L)
  done: jax.Array      # (S, L)
  kkt: jax.Array       # (S, L)
  kkt0: jax.Array      # (S, L)
  a: jax.Array         # (S, L) the metric prox's last root, to start the next one from
  it: jax.Array        # () iterations since the start
  d: jax.Array         # (S, D) the metric's diagonal and rank-one vector (`_metric`)
  u: jax.Array


class _Operators(NamedTuple):
  """What `start` and `solve` build from a problem: its design (`miml_jax.solvers.design`),
  labels as signs (1, n, L), mask (S, n, 1), C and κ = C/4 (L,), and every split's rows."""
  design: splits_design.Design
  ysign: jax.Array
  m3: jax.Array
  C: jax.Array
  kappa: jax.Array
  all_rows: jax.Array


def _operators(problem: Problem) -> _Operators:
  n, L = problem.X.shape[0], problem.num_labels
  C = jnp.broadcast_to(problem.C, (L,))
  design = splits_design.make(problem.X, problem.shift, problem.scale,
                              problem.intercept_scaling, problem.fit_intercept)
  return _Operators(design, (2.0 * problem.Y - 1.0)[None], problem.mask[..., None], C, C / 4.0,
                    jnp.broadcast_to(jnp.arange(n), (problem.num_splits, n)))


def _total(ops: _Operators, z, xz, penalty):
  return _penalty(z, penalty) + ops.C * _loss_terms(xz, ops.ysign, ops.m3)


def _gradient(ops: _Operators, xz):
  # d/dmargin of C log(1 + exp(-y m)) is -C y sigmoid(-y m).
  return splits_design.margins_transpose(
      ops.design, -ops.C * ops.ysign * jax.nn.sigmoid(-ops.ysign * xz) * ops.m3)


def _prox_step(ops: _Operators, d, u, z, xz, a, penalty):
  """One prox-gradient step from z in the metric (d, u): (z⁺, prox root)."""
  v = z - _metric_solve(_gradient(ops, xz), d, u) / ops.kappa
  return _metric_prox(v, d, u, ops.kappa, penalty, a)


def _check(ops: _Operators, s: _State, tol, penalty) -> _State:
  """The stopping measure at the current iterate (one more product with the data)."""
  kkt = optimality(s.z, _gradient(ops, s.xz), penalty) / s.kkt0
  active = ~s.done
  return s._replace(done=s.done | (active & (kkt <= tol)), kkt=jnp.where(active, kkt, s.kkt))


@functools.partial(jax.jit, static_argnames=('penalty',))
def start(problem: Problem, z0, *, penalty) -> _State:
  """The state of `solve` at z0 (S, D, L), a starting point in the scaled problem's weights:
  the metric, and the stopping measure at z0 (a problem may be solved where it starts)."""
  ops = _operators(problem)
  S, L, D = problem.num_splits, problem.num_labels, problem.dim
  n, dtype = problem.X.shape[0], problem.X.dtype
  d, u = _metric(ops.design.X, problem.mask, ops.design.shift, problem.scale,
                 problem.intercept_scaling, problem.fit_intercept)
  kkt0 = jnp.maximum(optimality(jnp.zeros((S, D, L), dtype),
                                _gradient(ops, jnp.zeros((S, n, L), dtype)), penalty),
                     jnp.finfo(dtype).tiny)
  z0 = z0.astype(dtype)
  xz0 = splits_design.margins(ops.design, z0)
  _, a0 = _prox_step(ops, d, u, z0, xz0, jnp.zeros((S, L), dtype), penalty)
  state = _State(z0, xz0, z0, xz0, _total(ops, z0, xz0, penalty), jnp.ones((S, L), dtype),
                 jnp.zeros((S, L), jnp.int32), jnp.zeros((S, L), bool),
                 jnp.ones((S, L), dtype), kkt0, a0, jnp.zeros((), jnp.int32), d, u)
  # Any tolerance: a problem is done at its start only where the measure there is 0.
  return _check(ops, state, jnp.zeros((), dtype), penalty)


@functools.partial(jax.jit, static_argnames=('penalty', 'newton_every', 'newton_block',
                                             'check_every'))
def solve(problem: Problem, state: _State, tol, max_iter, *, penalty, newton_every,
          newton_block, check_every=_CHECK_EVERY):
  """FISTA on every problem of `problem` from `state` (`start`) to relative tolerance `tol` (of
  the measure at 0, wherever it starts), for at most max_iter more iterations (traced: a second
  call compiles nothing new). Returns ((Params in raw units, SolverState), the state it stopped
  in)."""
  ops = _operators(problem)
  design, ysign, m3, C = ops.design, ops.ysign, ops.m3, ops.C
  D, dtype = problem.dim, problem.X.dtype
  margins = functools.partial(splits_design.margins, design)
  margins_transpose = functools.partial(splits_design.margins_transpose, design)
  all_rows = ops.all_rows
  total = lambda z, xz: _total(ops, z, xz, penalty)
  check = lambda s: _check(ops, s, tol, penalty)
  state = check(state)   # the tolerance may be another than the last call's
  first = state.it

  block = min(D, newton_block)

  def newton(s):
    """A Newton step on the `block` coordinates that matter most, kept if it lowers F.

    The coordinates and the step are L1 Newton's (`working_set`): non-zero weights first, then
    the zero weights that most violate optimality. For L1 the step stays in the orthant of the
    current signs (a zero weight may leave zero in its descent direction; OWL-QN's orthant),
    where the penalty is linear and F smooth. A few step lengths are tried at once and the best
    is kept, so F never increases.
    """
    zt = jnp.moveaxis(s.z, 1, 2)                                        # (S, L, D)
    prob = jax.nn.sigmoid(-ysign * s.xz)                                # (S, n, L)
    g = jnp.moveaxis(margins_transpose(-C * ysign * prob * m3), 1, 2)   # smooth gradient
    sub = min_norm_subgradient(zt, g) if penalty == 'l1' else g + zt
    idx, _ = working_set.select(zt, sub, block)                         # (S, L, K)
    z_a = jnp.take_along_axis(zt, idx, axis=-1)
    g_a = jnp.take_along_axis(g, idx, axis=-1)
    xa = splits_design.columns(design, all_rows, idx)                   # (S, L, K, n)
    weight = jnp.moveaxis(C * prob * (1.0 - prob) * m3, 1, 2)          # (S, L, n)
    hess, _, ridge = working_set.model_hessian(xa, weight)
    lengths = 0.5 ** jnp.arange(steps.LENGTHS, dtype=dtype)   # the Newton solvers', less 0
    if penalty == 'l1':
      sigma = working_set.gradient_signs(z_a, g_a)
      delta = working_set.orthant_newton(hess, ridge, g_a, z_a, sigma)
      z_try = working_set.orthant_points(z_a, delta, sigma, lengths)     # (S, L, J, K)
      reg = lambda v: jnp.abs(v).sum(axis=-1)
    else:
      eye = jnp.eye(block, dtype=dtype)
      delta = -jax.scipy.linalg.cho_solve(
          (jnp.linalg.cholesky(hess + (1.0 + ridge)[..., None, None] * eye), True),
          (g_a + z_a)[..., None])[..., 0]
      delta = jnp.where(jnp.isfinite(delta), delta, 0.0)
      z_try = z_a[..., None, :] + lengths[:, None] * delta[..., None, :]
      reg = lambda v: 0.5 * jnp.square(v).sum(axis=-1)
    xz_try = (jnp.moveaxis(s.xz, 1, 2)[..., None, :]
              + jnp.einsum('slkn,sljk->sljn', xa, z_try - z_a[..., None, :],
                           precision=_HIGHEST))                         # (S, L, J, n)
    loss = (log1p_exp(-jnp.moveaxis(ysign, 1, 2)[..., None, :] * xz_try)
            * jnp.moveaxis(m3, 1, 2)[..., None, :]).sum(axis=-1)
    f_try = (_penalty(s.z, penalty)[..., None] - reg(z_a)[..., None] + reg(z_try)
             + C[None, :, None] * loss)                                 # (S, L, J)
    f_try = jnp.where(jnp.isfinite(f_try), f_try, jnp.inf)
    best = jnp.argmin(f_try, axis=-1)
    f_best = jnp.take_along_axis(f_try, best[..., None], axis=-1)[..., 0]
    better = (f_best < s.f) & ~s.done
    pick = lambda a: jnp.take_along_axis(a, best[..., None, None], axis=-2)[..., 0, :]
    z_new = jnp.moveaxis(working_set.put(zt, idx, pick(z_try)), 2, 1)
    xz_new = jnp.moveaxis(pick(xz_try), 2, 1)
    keep = lambda new, old: jnp.where(better[:, None, :], new, old)
    # Shift the previous iterate with the jump, so FISTA's momentum carries on unchanged.
    return s._replace(z=keep(z_new, s.z), xz=keep(xz_new, s.xz),
                      z_prev=keep(s.z_prev + z_new - s.z, s.z_prev),
                      xz_prev=keep(s.xz_prev + xz_new - s.xz, s.xz_prev),
                      f=jnp.where(better, f_best, s.f))

  def cond(s):
    return (s.it - first < max_iter) & ~jnp.all(s.done)

  def body(s):
    # Momentum point y = z + ((t - 1) / t_next)(z - z_prev); margins are linear, so Xy is free.
    t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * s.t * s.t))
    beta = ((s.t - 1.0) / t_next)[:, None, :]
    y = s.z + beta * (s.z - s.z_prev)
    xy = s.xz + beta * (s.xz - s.xz_prev)
    z_new, a = _prox_step(ops, s.d, s.u, y, xy, s.a, penalty)
    xz_new = margins(z_new)
    f_new = total(z_new, xz_new)
    # Uphill beyond rounding: at the optimum, steps that only shuffle the last bits are fine.
    worse = f_new > s.f + _UPHILL_EPS * jnp.finfo(dtype).eps * jnp.abs(s.f)
    keep = s.done | worse   # restart: reject an uphill step and drop the momentum
    sel = lambda a, b: jnp.where(keep[:, None, :], a, b)
    frozen = lambda a, b: jnp.where(s.done[:, None, :], a, b)
    active = ~s.done
    return s._replace(
        z=sel(s.z, z_new), xz=sel(s.xz, xz_new),
        z_prev=frozen(s.z_prev, s.z), xz_prev=frozen(s.xz_prev, s.xz),
        f=jnp.where(keep, s.f, f_new),
        t=jnp.where(s.done, s.t, jnp.where(worse, 1.0, t_next)),
        n_iter=s.n_iter + active.astype(jnp.int32), a=a, it=s.it + 1)

  def body_with_newton(s):
    s = body(s)
    if newton_every:
      s = jax.lax.cond(s.it % newton_every == 0, newton, lambda s: s, s)
    return jax.lax.cond(s.it % check_every == 0, check, lambda s: s, s)

  s = jax.lax.while_loop(cond, body_with_newton, state)
  s = check(s)   # where the loop ended between checks
  coef, intercept = splits_design.raw_weights(design, s.z, problem.shift)
  return (Params(coef, intercept), SolverState(s.n_iter, s.kkt, s.f, s.done)), s
