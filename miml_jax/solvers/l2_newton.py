r"""Newton's method in sample space for the L2 problem of `miml_jax.solvers.objective`.

The L2 objective F(z) = ½||z||² + C Σ_i log(1 + exp(-y_i z̃ᵀx̃_i)) is smooth and strongly convex, and
its Hessian H = I + X̃ᵀ W X̃, W = diag(C p_i (1 - p_i)) over the m training rows, is the identity
plus a matrix of rank at most m: a few hundred to a few thousand images, against 5,889 weights.
By Woodbury, with R = W^{1/2} and the training rows' Gram matrix K = X̃ X̃ᵀ,

    H⁻¹ g = g - X̃ᵀ R (I_m + R K R)⁻¹ R X̃ g,

so an exact Newton step costs two products with X̃ and an m x m Cholesky factorisation. K depends
on the split only, so it is formed once and shared by all labels; where all labels' weights W
agree (at z = 0, where every W is C/4), so does the factorisation. On these features, where
first-order methods need thousands of iterations, Newton's method needs a few tens.

Each step tries a few step lengths at once (the margins are linear in the step length, so this
costs no extra product with X̃) and keeps the best, so F never increases beyond rounding
(`miml_jax.solvers.steps`). A problem stops when
||∇F|| <= tol ||∇F(0)||, the criterion of liblinear's own L2 solvers, or when no step length
lowers F any more (then `converged` stays False). ||∇F|| is `objective.optimality` for L2, the
measure every solver here stops on.

Problems stop at different iterations (on Scene's 30 splits x 5 labels a median of 12, the last
at 40), and every iteration factorises every problem's system, finished or not; so the batch
shrinks to the problems still going (`miml_jax.solvers.batches`), which go on from where they
are.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from miml_jax import sharding
from miml_jax.solvers import batches
from miml_jax.solvers import steps
from miml_jax.solvers.objective import HIGHEST
from miml_jax.solvers.objective import log1p_exp
from miml_jax.solvers.problem import loop_limits
from miml_jax.solvers.problem import Params
from miml_jax.solvers.problem import Problem
from miml_jax.solvers.problem import SolverState
from miml_jax.solvers.problem import zero_weights

# The Cholesky factor is taken of I + RKR plus this many float eps times its largest diagonal
# entry: the smallest jitter that keeps float32 factorisations of raw-feature systems defined.
_JITTER_EPS = 16


@dataclasses.dataclass(frozen=True)
class NewtonL2:
  """Newton's method in sample space for L2 (module docstring). run(problem) -> (Params,
  SolverState)."""
  tol: float = 1e-4
  max_iter: int = 10_000

  def run(self, problem: Problem, mesh=None, init=None) -> tuple[Params, SolverState]:
    """init: (S, D, L) the scaled weights to start from (`problem.scaled_weights`; None: 0).

    The batch shrinks to the problems still going (`miml_jax.solvers.batches`): on Scene the
    median problem stops after 12 iterations and the last after 40, and each iteration
    factorises every problem's (m x m) system."""
    tol = jnp.asarray(self.tol, problem.X.dtype)
    z0 = zero_weights(problem, mesh) if init is None else init
    compact = batches.can_shrink()
    run = lambda sub, state, left: sharding.map_splits(
        solve, mesh, sub, state, shared=(tol, jnp.asarray(left, jnp.int32), compact))
    (params, result), state = run(problem, sharding.map_splits(start, mesh, problem, z0),
                                  self.max_iter)
    while compact:
      done, n_iter = np.asarray(state.done), np.asarray(state.n_iter)
      if done.all() or int(n_iter.max()) >= self.max_iter:
        break
      params, result, state = batches.go_on(problem, ~done, mesh, run, state, params, result,
                                            left=self.max_iter - int(n_iter[~done].max()))
    return params, result

  def init_state(self, problem: Problem, init=None) -> steps.NewtonState:
    """The loop state at init (S, D, L) (scaled weights; None: 0), as `run` starts."""
    return start(problem, zero_weights(problem) if init is None else init)

  def update(self, problem: Problem, state: steps.NewtonState
             ) -> tuple[Params, steps.NewtonState]:
    """One iteration from `state`, for every problem of the batch (`run`'s, without the shrinking
    batch): its weights in raw units, and the state after it. (It forms the rows' Gram matrix
    again: for following one iteration, not for speed.)"""
    (params, _), state = solve(problem, state, *loop_limits(problem, self.tol, 1), False)
    return params, state


def _training_rows(problem: Problem):
  """Each split's scaled training rows, materialised: (S, m, D), 0 on padding; their labels as
  signs (S, m, L), 0 on padding; and the rows' validity as weights (S, m, 1)."""
  X, Y, rows, valid = problem.X, problem.Y, problem.rows, problem.valid
  shift, scale = problem.shift, problem.scale
  w = valid.astype(X.dtype)[..., None]
  # Centring first spares float32 the cancellation of the large common part of non-negative
  # features (the intercept absorbs it).
  centre = X.mean(axis=0)
  Xs = ((X - centre)[rows] - (shift - centre)[:, None, :]) / scale[:, None, :] * w
  if problem.fit_intercept:
    Xs = jnp.concatenate([Xs, problem.intercept_scaling * w], axis=-1)
  return Xs, (2.0 * Y - 1.0)[rows] * w, w


def _gradient(Xs, ysign, w, C, z, xz):
  """F's gradient (S, D, L) at z with margins xz, on the training rows Xs (`_training_rows`)."""
  p = jax.nn.sigmoid(-ysign * xz)
  return z + jnp.einsum('smd,sml->sdl', Xs, -C * ysign * p * w, precision=HIGHEST)


def _objective(problem: Problem, ysign, w, z, xz):
  """F at z (S, D, L) with margins xz (S, m, L) on the training rows."""
  C = jnp.broadcast_to(problem.C, (problem.num_labels,))
  return (0.5 * jnp.square(z).sum(axis=1)
          + C * (log1p_exp(-ysign * xz) * w).sum(axis=1))


def _factor(gram, r, eye):
  """Cholesky factors of I + R K R, R = diag(r), for r (..., m) and Gram matrices K (..., m, m)
  (broadcast against each other)."""
  inner = eye + r[..., :, None] * gram * r[..., None, :]
  # A jitter at the rounding level of the largest entry keeps the factorisation defined when
  # float32 rounding of K (raw features) would make I + RKR numerically indefinite; it only
  # damps the step a little (it is the Newton step for a slightly smaller W).
  jitter = _JITTER_EPS * jnp.finfo(eye.dtype).eps * jnp.max(
      jnp.diagonal(inner, axis1=-2, axis2=-1), axis=-1)
  return jnp.linalg.cholesky(inner + jitter[..., None, None] * eye)


@jax.jit
def start(problem: Problem, z0) -> steps.NewtonState:
  """The state of `solve` at z0 (S, D, L), a starting point in the scaled problem's weights."""
  Xs, ysign, w = _training_rows(problem)
  z0 = z0.astype(problem.X.dtype)
  xz0 = jnp.einsum('smd,sdl->sml', Xs, z0, precision=HIGHEST)
  C = jnp.broadcast_to(problem.C, (problem.num_labels,))
  return steps.start(z0, xz0, _objective(problem, ysign, w, z0, xz0),
                     _gradient(Xs, ysign, w, C, z0, xz0))


@jax.jit
def solve(problem: Problem, state: steps.NewtonState, tol, max_iter, compact):
  """Newton on every problem of `problem` from `state` (`start`) to relative tolerance `tol` (of
  the gradient's norm at 0, wherever it starts); max_iter: most iterations (traced: a second
  call compiles nothing new). compact: also stop once the problems still going fit in a quarter
  of the batch (`batches.fits_smaller`), to go on with those alone. Returns ((Params in raw
  units, SolverState), the state it stopped in)."""
  X, Y, rows = problem.X, problem.Y, problem.rows
  shift, scale, C = problem.shift, problem.scale, problem.C
  intercept_scaling, fit_intercept = problem.intercept_scaling, problem.fit_intercept
  dim = X.shape[1]
  S, m = rows.shape
  L = Y.shape[1]
  dtype = X.dtype
  C = jnp.broadcast_to(C, (L,))
  Xs, ysign, w = _training_rows(problem)
  gram = jnp.einsum('smd,skd->smk', Xs, Xs, precision=HIGHEST)          # (S, m, m)
  # For the fallback step's diagonal, once: squared inside the loop, XLA formed X̃ ∘ X̃ anew at
  # every iteration (a sixth of an iteration on Scene's folds).
  squares = Xs * Xs
  eye = jnp.eye(m, dtype=dtype)

  f_of = functools.partial(_objective, problem, ysign, w)

  gradient = functools.partial(_gradient, Xs, ysign, w, C)
  measure = lambda s: jnp.linalg.norm(s.grad, axis=1) / g0

  def body(s):
    g = s.grad
    p = jax.nn.sigmoid(-ysign * s.xz)
    curv = C * p * (1.0 - p) * w
    gnorm = measure(s)
    converged, revert, done = steps.progress(s, gnorm, tol)
    r = jnp.sqrt(curv)                                                  # (S, m, L)
    xg = jnp.einsum('smd,sdl->sml', Xs, g, precision=HIGHEST)           # X̃g
    rhs = r * xg                                                        # (S, m, L)

    def each_label():
      chol = _factor(gram[:, None], r.transpose(0, 2, 1), eye)          # (S, L, m, m)
      q = jax.scipy.linalg.cho_solve((chol, True), rhs.transpose(0, 2, 1)[..., None])
      return q[..., 0].transpose(0, 2, 1)

    def one_for_all():
      chol = _factor(gram, r[..., 0], eye)                              # (S, m, m)
      return jax.scipy.linalg.cho_solve((chol, True), rhs)

    # Where every label of a split has the same curvature (at z = 0 all are C/4), one
    # factorisation serves them all: the first iteration from zero costs a label's, not L.
    shared = jnp.all(curv == curv[..., :1])
    rq = r * jax.lax.cond(shared, one_for_all, each_label)              # (S, m, L)
    step = -(g - jnp.einsum('smd,sml->sdl', Xs, rq, precision=HIGHEST))
    xstep = -(xg - jnp.einsum('smk,skl->sml', gram, rq, precision=HIGHEST))
    # On badly scaled features (raw activations, cond(I + RKR) ~ 1e7) float32 rounding can spoil
    # the Newton step; a diagonally scaled gradient step is tried alongside, so F always has a
    # descent direction to go down.
    hdiag = 1.0 + jnp.einsum('smd,sml->sdl', squares, curv, precision=HIGHEST)
    steps_ = jnp.stack([jnp.where(jnp.isfinite(step), step, 0.0), -g / hdiag], axis=-1)
    xsteps = jnp.stack([jnp.where(jnp.isfinite(xstep), xstep, 0.0),
                        jnp.einsum('smd,sdl->sml', Xs, -g / hdiag, precision=HIGHEST)], axis=-1)
    t = steps.lengths(dtype)                                            # (J,)
    # F along z + t·step: the penalty is a quadratic in t, the loss needs the margins only.
    zz = (s.z * s.z).sum(1)[..., None, None]                            # (S, L, 1, 1)
    zs = jnp.einsum('sdl,sdlk->slk', s.z, steps_)[..., None]            # (S, L, 2, 1)
    ss = jnp.einsum('sdlk,sdlk->slk', steps_, steps_)[..., None]
    reg = 0.5 * (zz + 2 * t * zs + t * t * ss)                          # (S, L, 2, J)
    xz_t = s.xz[..., None, None] + t * xsteps[..., None]                # (S, m, L, 2, J)
    loss = (log1p_exp(-ysign[..., None, None] * xz_t)
            * w[..., None, None]).sum(axis=1)                           # (S, L, 2, J)
    f_t = reg + C[:, None, None] * loss
    f_t = jnp.where(jnp.isfinite(f_t), f_t, jnp.inf).reshape(S, L, 2 * steps.NUM_LENGTHS)
    best, strict, tentative = steps.choose(f_t, done, jnp.finfo(dtype).eps)
    move = strict | tentative
    t_best = jnp.where(move, t[best % steps.NUM_LENGTHS], 0.0)[:, None, :]
    step = jnp.where((best < steps.NUM_LENGTHS)[:, None, :], steps_[..., 0], steps_[..., 1])
    z = jnp.where(revert[:, None, :], s.z_prev, s.z + t_best * step)
    # Margins recomputed from z, not accumulated, so that rounding does not drift.
    xz = jnp.einsum('smd,sdl->sml', Xs, z, precision=HIGHEST)
    return steps.advance(s, z, xz, f_of, grad=gradient(z, xz), kkt=gnorm, move=move,
                         tentative=tentative, revert=revert, converged=converged, done=done)

  g0 = jnp.maximum(jnp.linalg.norm(gradient(jnp.zeros_like(state.z), jnp.zeros_like(state.xz)),
                                   axis=1), jnp.finfo(dtype).tiny)
  s = steps.iterate(body, state, max_iter, compact, measure=measure, tol=tol)
  gnorm = measure(s)
  coef = s.z[:, :dim, :] / scale[..., None]
  intercept = -jnp.einsum('sd,sdl->sl', shift, coef, precision=HIGHEST)
  if fit_intercept:
    intercept = intercept + intercept_scaling * s.z[:, dim, :]
  return steps.finish(s, gnorm, tol, coef, intercept), s
