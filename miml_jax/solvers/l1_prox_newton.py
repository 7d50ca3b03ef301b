r"""Proximal Newton on a working set for the L1 problem of `miml_jax.solvers.objective`.

liblinear solves L1 logistic regression by newGLMNET (Yuan, Ho & Lin, 2012): Newton steps whose
quadratic model, plus the L1 norm, is minimised by coordinate descent over the weights that can
move. Here the same idea runs for every problem (split x label) at once, in fixed shapes:

1. the full gradient g of the smooth part, one product with X̃ᵀ for all problems;
2. a working set of K = `block` coordinates per problem: the non-zero weights first, then the
   zero weights that most violate optimality (|g_j| > 1);
3. the model's Hessian on the set, H = X̃_Wᵀ D X̃_W (K x K per problem, D the logistic
   curvatures of the training rows), and the model's minimiser with the L1 norm, approached by
   a few sweeps of coordinate descent (`subproblem='cd'`, liblinear's way: cheap, but K
   dependent steps per sweep) or by accelerated proximal gradient steps on all K coordinates at
   once (`'fista'`: one batched (K x K) product per step, for accelerators, where dependent steps
   cost launches and not arithmetic; on the Table 1 problems it needs no more Newton
   iterations); then, at the signs found, the model's exact minimiser on the set's non-zero
   coordinates (one Cholesky solve). Once the signs settle this is Newton's step
   on a smooth problem and converges quadratically, which either inner method alone would not.
   From `problem.MATRIX_FREE_ROWS` training rows (`'matrix_free'`) no Hessian is formed and the
   set is every coordinate: both steps touch the model through products with the shared data
   (proximal-gradient steps, then conjugate gradients on the non-zero coordinates), so memory
   stays the data plus a few vectors, and cost linear in the rows;
4. F along both directions for 12 step lengths each (1, 1/2, ...), evaluated at once (on the
   working set the margins are cheap), keeping the best: F never increases beyond rounding
   (`miml_jax.solvers.steps`: near the optimum a step float32 cannot tell from rounding is kept
   only if it lowers the stopping measure).

Only the working set can be non-zero. A problem stops, flagged `full`, when the set is what holds
it back: coordinates outside it violate optimality, and its support has nearly filled the set
(7/8) for `_CROWDED` iterations in a row, or it can make no more progress with a support that
nearly fills the set, or with half the set or more and more of the violation outside the set
than in it (few slots are left for the coordinates that would enter).
`solve_growing` then solves it again from where it stopped with a block 1.5x as large (at C=1
the solutions keep 0.3–8% of the 5,889 weights). A problem stops when the 1-norm of the
minimum-norm subgradient is below `tol` times its value at zero (liblinear's criterion for this
problem), or when no step lowers F beyond rounding (then `converged` stays False).

Problems finish at different iterations (on Scene a median of 17, the last at 29), and a batch
computes every problem's step until its last one stops. So the batch shrinks: once the problems
still going fit in a quarter of it, their splits x labels go on alone from where they are, and
only those that outgrew the set go on to a larger one (`solve_growing`; each batch shape compiles
once, and JAX's compilation cache keeps it for the next run).
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from miml_jax import sharding
from miml_jax.solvers import batches
from miml_jax.solvers import design as splits_design
from miml_jax.solvers import l2_newton_cg
from miml_jax.solvers import power_iteration
from miml_jax.solvers import steps
from miml_jax.solvers import working_set
from miml_jax.solvers.objective import HIGHEST
from miml_jax.solvers.objective import log1p_exp
from miml_jax.solvers.objective import loss_terms
from miml_jax.solvers.objective import min_norm_subgradient
from miml_jax.solvers.objective import optimality
from miml_jax.solvers.problem import matrix_free
from miml_jax.solvers.problem import loop_limits
from miml_jax.solvers.problem import Params
from miml_jax.solvers.problem import Problem
from miml_jax.solvers.problem import SolverState
from miml_jax.solvers.problem import zero_weights

# Iterations in a row with a nearly full set before the set counts as holding a problem back:
# one or two can be a transient while the support settles.
_CROWDED = 3
# A set is nearly full at 7/8 of its slots: too few are then left for the coordinates that
# want in.
_NEARLY_FULL = 7 / 8
# Coordinate-descent passes over the working set per Newton step (newGLMNET's inner loop). A pass
# costs a fraction of the Hessian it runs on, and signs found closer to the model's own give
# Newton steps that need fewer iterations: on Scene (30 splits, tol 1e-7) 4, 8, 16 and 32 passes
# took 21.7, 16.9, 15.5 and 15.8 s, at 16 the median iterations 16 -> 14.
_CD_SWEEPS = 16
# Proximal-gradient steps on the working-set model (the accelerators' inner method): at 100 the
# signs have settled on the Table 1 problems, and Newton iterations are no more than with 'cd'.
_FISTA_STEPS = 100
# The same without a model Hessian, where each step is two passes over the data: fewer, since
# the conjugate-gradient Newton step after them does the rest (on 4,000 synthetic images, 10,
# 30 and 100 steps took 29, 9 and 8 Newton iterations: 35, 14 and 21 s).
_MATRIX_FREE_STEPS = 30
# Power iterations for the model's top eigenvalue (then scaled up by 10%).
_POWER_STEPS = 15

SUBPROBLEMS = ('cd', 'fista', 'matrix_free')
_DEFAULT_INNER_STEPS = {'cd': _CD_SWEEPS, 'fista': _FISTA_STEPS, 'matrix_free': _MATRIX_FREE_STEPS}
# Most conjugate-gradient steps of the matrix-free orthant Newton step.
_CG_STEPS = 50
# The first working set, per problem (grown while a support outgrows it, `grown`): at C=1 the
# Table 1 solutions keep 0.3-8% of the 5,889 weights (msrc_v2 about 60, Scene 220-490), and an
# iteration costs the set's square. Small first, since the problems that outgrow it go on from
# where they stopped: msrc_v2 (30 splits) took 12.5 s from 256 and 5.0 s from 128.
BLOCK = 128
# A set that holds a problem back grows by this factor, rounded up to a multiple of
# `_BLOCK_STEP` (128, 256, 384, 640, 1024, ...): doubling sent Scene's problems that need 300 to
# 400 coordinates to 512, and those of one label (supports near 470) on to 1,024, where a
# Hessian costs 4x and a factorisation 8x that of 512 (19.2 s -> 12.5 s on Scene, 30 splits).
_GROWTH = 1.5
_BLOCK_STEP = 128


@dataclasses.dataclass(frozen=True)
class ProxNewtonL1:
  """Proximal Newton on a working set for L1 (module docstring); `subproblem` None:
  'matrix_free' from `MATRIX_FREE_ROWS` training rows per split, below that 'cd' on CPUs and
  'fista' on accelerators.
  run(problem) -> (Params, SolverState)."""
  tol: float = 1e-4
  max_iter: int = 10_000
  block: int = BLOCK
  subproblem: str | None = None
  # The inner method's passes or steps per Newton step, by subproblem, and the set's growth.
  cd_sweeps: int = _CD_SWEEPS
  fista_steps: int = _FISTA_STEPS
  matrix_free_steps: int = _MATRIX_FREE_STEPS
  growth: float = _GROWTH

  def _inner(self, problem: Problem) -> dict:
    """The static settings of `solve` for `problem`: its subproblem and that one's steps."""
    subproblem = self.subproblem or default_subproblem(problem)
    steps_of = {'cd': self.cd_sweeps, 'fista': self.fista_steps,
                'matrix_free': self.matrix_free_steps}
    return dict(subproblem=subproblem, inner_steps=steps_of[subproblem])

  def run(self, problem: Problem, mesh=None, init=None) -> tuple[Params, SolverState]:
    """init: (S, D, L) the scaled weights to start from (`problem.scaled_weights`; None: 0);
    the working set starts with their non-zero coordinates."""
    z = zero_weights(problem, mesh) if init is None else init
    tol = jnp.asarray(self.tol, problem.X.dtype)
    return solve_growing(problem, tol, z, mesh=mesh, max_iter=self.max_iter, block=self.block,
                         growth=self.growth, **self._inner(problem))

  def init_state(self, problem: Problem, init=None) -> '_State':
    """The loop state at init (S, D, L) (scaled weights; None: 0), as `run` starts."""
    return start(problem, zero_weights(problem) if init is None else init)

  def update(self, problem: Problem, state: '_State') -> tuple[Params, '_State']:
    """One iteration from `state` at this solver's block, for every problem of the batch (`run`'s,
    without the shrinking batch and the growing block): its weights in raw units, and the state
    after it."""
    (params, _), state = solve(problem, state, *loop_limits(problem, self.tol, 1), False,
                               block=self.block, **self._inner(problem))
    return params, state


def grown(block: int, growth: float = _GROWTH) -> int:
  """The working set's size after `block`, for the problems it held back."""
  return -(-int(block * growth) // _BLOCK_STEP) * _BLOCK_STEP


def default_subproblem(problem: Problem) -> str:
  """The inner method for `problem` (`ProxNewtonL1`)."""
  if matrix_free(problem):
    return 'matrix_free'
  return 'cd' if jax.devices()[0].platform == 'cpu' else 'fista'


class _State(NamedTuple):
  """`steps.NewtonState` (kkt: the minimum-norm subgradient's 1-norm, relative to its value at
  0) and the working set's bookkeeping; (S, L) per problem unless said."""
  # NamedTuples do not extend: `steps.NewtonState`'s fields, in its order.
  z: jax.Array
  xz: jax.Array
  f: jax.Array
  z_prev: jax.Array
  f_prev: jax.Array
  kkt_prev: jax.Array
  tentative: jax.Array
  n_iter: jax.Array
  converged: jax.Array
  done: jax.Array
  kkt: jax.Array
  grad: jax.Array
  crowded: jax.Array   # consecutive iterations the support filled the working set
  full: jax.Array      # stopped because the support outgrew the working set


def _coordinate_descent(H, diag, g, z, sweeps):
  """argmin_δ gᵀδ + ½δᵀHδ + ||z + δ||₁ by `sweeps` cyclic passes; H (..., K, K), the rest (..., K).

  diag is H's diagonal, floored so every coordinate's minimisation is defined.
  """
  K = g.shape[-1]

  def coordinate(i, carry):
    delta, h_delta = carry
    j = i % K
    a = diag[..., j]
    cur = z[..., j] + delta[..., j]
    target = cur - (g[..., j] + h_delta[..., j]) / a
    new = jnp.sign(target) * jnp.maximum(jnp.abs(target) - 1.0 / a, 0.0)
    change = new - cur
    # H is symmetric: row j is column j, and rows are contiguous.
    h_row = jax.lax.dynamic_index_in_dim(H, j, axis=-2, keepdims=False)
    return delta.at[..., j].add(change), h_delta + h_row * change[..., None]

  zeros = jnp.zeros_like(g)
  delta, _ = jax.lax.fori_loop(0, sweeps * K, coordinate, (zeros, zeros))
  return delta


def _quadratic_model(hessian_times, g, z, delta):
  """gᵀδ + ½δᵀHδ + ||z + δ||₁ - ||z||₁, the model's change."""
  h_delta = hessian_times(delta)
  return ((g + 0.5 * h_delta) * delta).sum(-1) + jnp.abs(z + delta).sum(-1) - jnp.abs(z).sum(-1)


def _accelerated_prox_gradient(hessian_times, ridge, g, z, steps):
  """The minimiser of `_coordinate_descent`'s model, approached by `steps` FISTA steps on u = z + δ
  (all coordinates at once), with H + ridge·I (H through its products, hessian_times); returns
  δ, or 0 where the model did not decrease.
  """
  matvec = lambda v: hessian_times(v) + ridge[..., None] * v
  # 1.1x covers the power iteration's approach from below.
  top = power_iteration.top_eigenvalue(matvec, jnp.ones_like(g), _POWER_STEPS)
  step = 1.0 / jnp.maximum(1.1 * top, jnp.finfo(g.dtype).tiny)[..., None]
  b = g - matvec(z)                                 # the model's linear term in u

  def fista_step(_, carry):
    u, y, t = carry
    w = y - step * (b + matvec(y))
    u_next = jnp.sign(w) * jnp.maximum(jnp.abs(w) - step, 0.0)
    t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
    return u_next, u_next + ((t - 1.0) / t_next) * (u_next - u), t_next

  u, _, _ = jax.lax.fori_loop(0, steps, fista_step, (z, z, jnp.ones((), g.dtype)))
  delta = u - z
  # A bad eigenvalue estimate could make the steps diverge: such a direction is not taken.
  ok = _quadratic_model(hessian_times, g, z, delta) <= 0.0
  return jnp.where(ok[..., None] & jnp.isfinite(delta), delta, 0.0)


def _orthant_newton_cg(hessian_times, ridge, g, z, delta, forcing):
  """`working_set.orthant_newton` at the signs of z + delta, with H through its products: the
  free coordinates' system solved by conjugate gradients to a relative residual `forcing`
  (S, L). Returns (step, signs)."""
  sigma = jnp.sign(z + delta)
  free = sigma != 0
  fixed = jnp.where(free, 0.0, -z)
  rhs = jnp.where(free, -(g + sigma + hessian_times(fixed)), 0.0)
  matvec = lambda v: jnp.where(free, hessian_times(jnp.where(free, v, 0.0)), 0.0) + (
      ridge[..., None] * v)
  # conjugate_gradients works on (S, D, L); these are (S, L, D).
  solved = l2_newton_cg.conjugate_gradients(
      lambda v: jnp.moveaxis(matvec(jnp.moveaxis(v, 1, 2)), 2, 1), jnp.moveaxis(rhs, 2, 1),
      forcing * jnp.linalg.norm(rhs, axis=-1), jnp.ones(forcing.shape, bool), _CG_STEPS)
  solved = jnp.moveaxis(solved, 1, 2)
  return jnp.where(free, jnp.where(jnp.isfinite(solved), solved, 0.0), fixed), sigma


def _matrix_free_candidates(design, z, xz, g, ysign, mask, C, t, kkt, inner_steps):
  """`_candidates` on every coordinate, with the model Hessian X̃ᵀ D X̃ through products with the
  shared data: memory of the data plus a few (S, n, L) arrays, and cost linear in the rows.
  Returns (the points z + t·δ (S, L, 2J, D), their loss terms (S, L, 2J))."""
  curvature = C * jax.nn.sigmoid(ysign * xz) * jax.nn.sigmoid(-ysign * xz) * mask   # (S, n, L)
  natural = lambda v: jnp.moveaxis(v, 2, 1)                   # (S, L, D) <-> (S, D, L)
  hessian_times = lambda v: natural(splits_design.margins_transpose(
      design, curvature * splits_design.margins(design, natural(v))))
  zt, gt = natural(z), natural(g)
  ridge = steps.RIDGE * jnp.maximum(natural(curvature).sum(-1), jnp.finfo(z.dtype).tiny)
  inner = _accelerated_prox_gradient(hessian_times, ridge, gt, zt, inner_steps)
  newton, sigma = _orthant_newton_cg(hessian_times, ridge, gt, zt, inner,
                                     jnp.minimum(0.5, jnp.sqrt(kkt)))
  # Coordinates the full Newton step would take across zero stop at zero: along this direction
  # every step length keeps the orthant, so the margins stay linear in the length.
  newton = jnp.where(jnp.sign(zt + newton) == sigma, newton, -zt)
  z_try, losses = [], []
  for direction in (inner, newton):
    x_direction = splits_design.margins(design, natural(direction))
    losses.append(jax.lax.map(
        lambda tj: loss_terms(xz + tj * x_direction, ysign, mask), t))     # (J, S, L)
    z_try.append(zt[..., None, :] + t[:, None] * direction[..., None, :])
  return jnp.concatenate(z_try, axis=-2), jnp.moveaxis(jnp.concatenate(losses), 0, -1)


def _candidates(H, h_diag, ridge, g, z, t, subproblem, inner_steps):
  """The points z + t·δ to try (..., 2J, K): δ the inner method's minimiser of the model, then
  the exact Newton step at its signs (kept in its orthant), each at the step lengths t (J,)."""
  if subproblem == 'cd':
    inner = _coordinate_descent(H, h_diag + ridge[..., None], g, z, inner_steps)
  else:
    inner = _accelerated_prox_gradient(functools.partial(working_set.hessian_times, H), ridge, g, z,
                                       inner_steps)
  # Newton's step at the signs the inner method found.
  sigma = jnp.sign(z + inner)
  newton = working_set.orthant_newton(H, ridge, g, z, sigma)
  inner_try = z[..., None, :] + t[:, None] * inner[..., None, :]
  return jnp.concatenate([inner_try, working_set.orthant_points(z, newton, sigma, t)], axis=-2)


def _outgrown(nnz, K, D, outside, inside, move, done, crowded, full):
  """Whether the working set holds a problem back; returns the updated (crowded, full) (S, L).

  Only while coordinates outside the set violate optimality (a problem stopped by rounding has
  none there): then a support that nearly fills the set leaves too few slots for them, and one
  that stops moving with half the set or more, and more of the violation outside the set than
  in it, is stopped by the set.
  """
  wanting = (K < D) & (outside > 0)
  nearly_full = nnz >= _NEARLY_FULL * K
  crowded = jnp.where(move & nearly_full & wanting, crowded + 1, 0)
  stuck = ~done & ~move & wanting & (nearly_full | ((nnz >= K // 2) & (outside > inside)))
  return crowded, full | (crowded >= _CROWDED) | stuck


@jax.jit
def start(problem: Problem, z0) -> _State:
  """The `_State` of `solve` at z0 (S, D, L), a starting point in the scaled problem's weights."""
  design = splits_design.make(problem.X, problem.shift, problem.scale, problem.intercept_scaling,
                              problem.fit_intercept)
  S, L = problem.num_splits, problem.num_labels
  C = jnp.broadcast_to(problem.C, (L,))
  ysign, m3 = (2.0 * problem.Y - 1.0)[None], problem.mask[..., None]
  xz = splits_design.margins(design, z0)
  f = jnp.abs(z0).sum(axis=1) + C * loss_terms(xz, ysign, m3)
  g = _loss_gradient(design, ysign, m3, C, xz)
  return _State(**steps.start(z0, xz, f, g)._asdict(), crowded=jnp.zeros((S, L), jnp.int32),
                full=jnp.zeros((S, L), bool))


def _loss_gradient(design, ysign, m3, C, xz):
  """The loss's gradient (S, D, L) at margins xz (S, n, L), on the rows of mask m3 (S, n, 1)."""
  return splits_design.margins_transpose(design, -C * ysign * jax.nn.sigmoid(-ysign * xz) * m3)


@functools.partial(jax.jit, static_argnames=('block', 'subproblem', 'inner_steps'))
def solve(problem: Problem, state: _State, tol, max_iter, compact, *, block, subproblem,
          inner_steps=None):
  """Every problem of `problem` on from state (`start`); max_iter: most iterations (traced: a
  second call compiles nothing new). compact: also stop once the problems still going fit in
  a quarter of the batch (`batches.fits_smaller`), to go on with those alone. inner_steps: the
  subproblem's passes or steps per Newton step (None: its default). Returns ((Params in raw
  units, SolverState), the `_State` it stopped in)."""
  if inner_steps is None:
    inner_steps = _DEFAULT_INNER_STEPS[subproblem]
  X, Y, mask, rows, valid = problem.X, problem.Y, problem.mask, problem.rows, problem.valid
  shift, scale, C = problem.shift, problem.scale, problem.C
  intercept_scaling, fit_intercept = problem.intercept_scaling, problem.fit_intercept
  S, L = mask.shape[0], Y.shape[1]
  dtype = X.dtype
  C = jnp.broadcast_to(C, (L,))
  design = splits_design.make(X, shift, scale, intercept_scaling, fit_intercept)
  D = design.dim
  # Without a model Hessian to form, nothing is gained by a working set.
  K = D if subproblem == 'matrix_free' else min(D, block)
  ysign = (2.0 * Y - 1.0)[None]                                          # (1, n, L)
  m3 = mask[..., None]                                                    # (S, n, 1)
  on_rows = lambda a: jnp.take_along_axis(a, rows[..., None], axis=1)     # (S, n, L) -> (S, m, L)
  y_rows = jnp.moveaxis(on_rows(jnp.broadcast_to(ysign, (S,) + ysign.shape[1:])), 1, 2)
  w_rows = valid.astype(dtype)[:, None, :]                                # (S, 1, m)
  eps = jnp.finfo(dtype).eps
  t = steps.lengths(dtype)

  gradient = functools.partial(_loss_gradient, design, ysign, m3, C)
  measure = lambda s: optimality(s.z, s.grad, 'l1') / kkt0

  def total(z, xz):
    return jnp.abs(z).sum(axis=1) + C * loss_terms(xz, ysign, m3)

  def body(s):
    g = s.grad                                                            # (S, D, L)
    sub = min_norm_subgradient(s.z, g)
    total_violation = jnp.abs(sub).sum(axis=1)                            # (S, L)
    kkt = total_violation / kkt0
    converged, revert, done = steps.progress(s, kkt, tol)

    zt, gt = jnp.moveaxis(s.z, 1, 2), jnp.moveaxis(g, 1, 2)               # (S, L, D)
    idx, outside = working_set.select(zt, jnp.moveaxis(sub, 1, 2), K)    # (S, L, K), (S, L)
    inside = total_violation - outside
    z_w = jnp.take_along_axis(zt, idx, axis=-1)
    g_w = jnp.take_along_axis(gt, idx, axis=-1)
    if subproblem == 'matrix_free':
      z_try, loss = _matrix_free_candidates(design, s.z, s.xz, g, ysign, m3, C, t, kkt,
                                            inner_steps)
      z_try = jnp.take_along_axis(z_try, idx[..., None, :], axis=-1)    # (S, L, 2J, K)
    else:
      xz_rows = jnp.moveaxis(on_rows(s.xz), 1, 2)                          # (S, L, m)
      p = jax.nn.sigmoid(-y_rows * xz_rows)
      curvature = C[None, :, None] * p * (1.0 - p) * w_rows
      x_w = splits_design.columns(design, rows, idx)                      # (S, L, K, m)
      H, h_diag, ridge = working_set.model_hessian(x_w, curvature)
      z_try = _candidates(H, h_diag, ridge, g_w, z_w, t, subproblem,
                          inner_steps)                                    # (S, L, 2J, K)
      xz_try = (xz_rows[..., None, :]
                + jnp.einsum('slkm,sljk->sljm', x_w, z_try - z_w[..., None, :],
                             precision=HIGHEST))                          # (S, L, 2J, m)
      loss = (log1p_exp(-y_rows[..., None, :] * xz_try)
              * w_rows[..., None, :]).sum(-1)                               # (S, L, 2J)
    f_try = (jnp.abs(s.z).sum(axis=1)[..., None] - jnp.abs(z_w).sum(-1)[..., None]
             + jnp.abs(z_try).sum(-1) + C[None, :, None] * loss)          # (S, L, 2J)
    f_try = jnp.where(jnp.isfinite(f_try), f_try, jnp.inf)
    best, strict, tentative = steps.choose(f_try, done, eps)
    move = strict | tentative
    z_best = jnp.take_along_axis(z_try, best[..., None, None], axis=-2)[..., 0, :]
    z_new = working_set.put(zt, idx, z_best)
    z = jnp.where(move[:, None, :], jnp.moveaxis(z_new, 2, 1),
                  jnp.where(revert[:, None, :], s.z_prev, s.z))
    crowded, full = _outgrown((z != 0).sum(axis=1), K, D, outside, inside, move, done,
                              s.crowded, s.full)
    # Margins recomputed from z, not accumulated, so that rounding does not drift.
    xz = splits_design.margins(design, z)
    s = steps.advance(s, z, xz, total, grad=gradient(xz), kkt=kkt, move=move,
                      tentative=tentative, revert=revert, converged=converged, done=done)
    return s._replace(done=s.done | full, crowded=crowded, full=full)

  kkt0 = jnp.maximum(optimality(jnp.zeros_like(state.z), gradient(jnp.zeros_like(state.xz)),
                                'l1'), jnp.finfo(dtype).tiny)

  s = steps.iterate(body, state, max_iter, compact, measure=measure, tol=tol)
  kkt = measure(s)
  return steps.finish(s, kkt, tol, *splits_design.raw_weights(design, s.z, shift)), s


def solve_growing(problem: Problem, tol, z, *, mesh, max_iter, block, subproblem, inner_steps,
                  growth=_GROWTH):
  """`solve` from z (each device on its share of the splits, `sharding.map_splits`), as a queue:
  once the problems still going fit in a quarter of the batch they go on alone from where they
  are (on Scene at C=1 a third of the batch's problem-iterations were needed, the rest was
  finished problems carried along); then the problems whose support outgrew the block start
  again from where they stopped with a larger block (`grown`), alone too (most of Scene's
  outgrow 128 and 256 coordinates, a fifth of them 384).
  Returns (Params, SolverState)."""
  compact = batches.can_shrink()
  S, L = problem.num_splits, problem.num_labels
  run = lambda sub, state, left: sharding.map_splits(
      solve, mesh, sub, state, shared=(tol, jnp.asarray(left, jnp.int32), compact),
      block=block, subproblem=subproblem, inner_steps=inner_steps)
  begin = lambda sub, z0: sharding.map_splits(start, mesh, sub, z0)
  (params, result), state = run(problem, begin(problem, z), max_iter)
  if not compact:   # every stage solves all the splits
    n_iter = state.n_iter
    while (block < problem.dim and bool(jnp.any(state.full))
           and int(jnp.max(n_iter)) < max_iter):
      block = grown(block, growth)
      (params, result), state = run(problem, begin(problem, state.z),
                                    max_iter - int(jnp.max(n_iter)))
      n_iter = n_iter + state.n_iter
    return params, result._replace(iter_num=n_iter)
  before = np.zeros((S, L), np.int64)        # iterations at smaller blocks
  while True:
    n_iter = before + np.asarray(state.n_iter)
    # A problem can meet the tolerance on the loop's last step, measured only after it.
    done = np.asarray(state.done) | np.asarray(result.converged)
    full = np.asarray(state.full)
    if int(n_iter.max()) >= max_iter:
      break
    if (~done).any():
      pick, fresh = ~done, False               # go on at this block
    elif full.any() and block < problem.dim:
      pick, fresh = full, True                 # again from where they stopped, a larger block
      block = grown(block, growth)
    else:
      break
    if fresh:
      before = np.where(pick, n_iter, before)
    params, result, state = batches.go_on(problem, pick, mesh, run, state, params, result,
                                          left=max_iter - int(n_iter[pick].max()),
                                          begin=begin if fresh else None)
  return params, result._replace(iter_num=jnp.asarray(before + np.asarray(state.n_iter)))
