r"""Newton's method in sample space for the L2 problem of `miml_jax.solvers.objective`.

The L2 objective F(z) = ½||z||² + C Σ_i log(1 + exp(-y_i z̃ᵀx̃_i)) is smooth and strongly convex, and
its Hessian H = I + X̃ᵀ W X̃, W = diag(C p_i (1 - p_i)) over the m training rows, is the identity
plus a matrix of rank at most m: a few hundred to a few thousand images, against 5,889 weights.
By Woodbury, with R = W^{1/2} and the training rows' Gram matrix K = X̃ X̃ᵀ,

    H⁻¹ g = g - X̃ᵀ R (I_m + R K R)⁻¹ R X̃ g,

so an exact Newton step costs two products with X̃ and an m x m Cholesky factorisation. K depends
on the split only, so it is formed once and shared by all labels. On these features, where
first-order methods need thousands of iterations, Newton's method needs a few tens.

Each step tries a few step lengths at once (the margins are linear in the step length, so this
costs no extra product with X̃) and keeps the best, so F never increases beyond rounding
(`miml_jax.solvers.steps`). A problem stops when
||∇F|| <= tol ||∇F(0)||, the criterion of liblinear's own L2 solvers, or when no step length
lowers F any more (then `converged` stays False). ||∇F|| is `objective.optimality` for L2, the
measure every solver here stops on.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from miml_jax import sharding
from miml_jax.solvers import steps
from miml_jax.solvers.objective import HIGHEST
from miml_jax.solvers.problem import Params
from miml_jax.solvers.problem import Problem
from miml_jax.solvers.problem import SolverState

# The Cholesky factor is taken of I + RKR plus this many float eps times its largest diagonal
# entry: the smallest jitter that keeps float32 factorisations of raw-feature systems defined.
_JITTER_EPS = 16


@dataclasses.dataclass(frozen=True)
class NewtonL2:
  """Newton's method in sample space for L2 (module docstring). run(problem) -> (Params,
  SolverState)."""
  tol: float = 1e-4
  max_iter: int = 10_000

  def run(self, problem: Problem, mesh=None) -> tuple[Params, SolverState]:
    tol = jnp.asarray(self.tol, problem.X.dtype)
    return sharding.map_splits(solve, mesh, problem, shared=(tol,), max_iter=self.max_iter)


@functools.partial(jax.jit, static_argnames=('max_iter',))
def solve(problem: Problem, tol, *, max_iter) -> tuple[Params, SolverState]:
  """Newton on every problem of `problem` to relative tolerance `tol`; weights in raw units."""
  X, Y, rows, valid = problem.X, problem.Y, problem.rows, problem.valid
  shift, scale, C = problem.shift, problem.scale, problem.C
  intercept_scaling, fit_intercept = problem.intercept_scaling, problem.fit_intercept
  dim = X.shape[1]
  S, m = rows.shape
  L = Y.shape[1]
  dtype = X.dtype
  C = jnp.broadcast_to(C, (L,))
  w = valid.astype(dtype)[..., None]                                    # (S, m, 1)
  # Each split's scaled training rows, materialised: (S, m, D). Centring first spares float32
  # the cancellation of the large common part of non-negative features (the intercept absorbs it).
  centre = X.mean(axis=0)
  Xs = ((X - centre)[rows] - (shift - centre)[:, None, :]) / scale[:, None, :] * w
  if fit_intercept:
    Xs = jnp.concatenate([Xs, intercept_scaling * w], axis=-1)
  ysign = (2.0 * Y - 1.0)[rows] * w                                     # (S, m, L), 0 on padding
  gram = jnp.einsum('smd,skd->smk', Xs, Xs, precision=HIGHEST)          # (S, m, m)
  eye = jnp.eye(m, dtype=dtype)

  def f_of(z, xz):
    return (0.5 * jnp.square(z).sum(axis=1)
            + C * (jnp.logaddexp(0.0, -ysign * xz) * w).sum(axis=1))

  def gradient(z, xz):
    p = jax.nn.sigmoid(-ysign * xz)
    g = z + jnp.einsum('smd,sml->sdl', Xs, -C * ysign * p * w, precision=HIGHEST)
    return g, C * p * (1.0 - p) * w

  def body(s):
    g, curv = gradient(s.z, s.xz)
    gnorm = jnp.linalg.norm(g, axis=1) / g0
    converged = ~s.done & (gnorm <= tol)
    # A step F could not tell from rounding is kept only if it lowered the gradient's norm.
    revert = ~s.done & ~converged & s.tentative & (gnorm >= s.kkt_prev)
    done = s.done | converged | revert
    r = jnp.sqrt(curv)                                                  # (S, m, L)
    xg = jnp.einsum('smd,sdl->sml', Xs, g, precision=HIGHEST)           # X̃g
    inner = eye + r.transpose(0, 2, 1)[..., :, None] * gram[:, None] * r.transpose(0, 2, 1)[
        ..., None, :]                                                   # (S, L, m, m)
    # A jitter at the rounding level of the largest entry keeps the factorisation defined when
    # float32 rounding of K (raw features) would make I + RKR numerically indefinite; it only
    # damps the step a little (it is the Newton step for a slightly smaller W).
    jitter = _JITTER_EPS * jnp.finfo(dtype).eps * jnp.max(
        jnp.diagonal(inner, axis1=-2, axis2=-1), axis=-1)
    chol = jnp.linalg.cholesky(inner + jitter[..., None, None] * eye)
    q = jax.scipy.linalg.cho_solve((chol, True), (r * xg).transpose(0, 2, 1)[..., None])
    rq = r * q[..., 0].transpose(0, 2, 1)                               # (S, m, L)
    step = -(g - jnp.einsum('smd,sml->sdl', Xs, rq, precision=HIGHEST))
    xstep = -(xg - jnp.einsum('smk,skl->sml', gram, rq, precision=HIGHEST))
    # On badly scaled features (raw activations, cond(I + RKR) ~ 1e7) float32 rounding can spoil
    # the Newton step; a diagonally scaled gradient step is tried alongside, so F always has a
    # descent direction to go down.
    hdiag = 1.0 + jnp.einsum('smd,sml->sdl', Xs * Xs, curv, precision=HIGHEST)
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
    loss = (jnp.logaddexp(0.0, -ysign[..., None, None] * xz_t)
            * w[..., None, None]).sum(axis=1)                           # (S, L, 2, J)
    f_t = reg + C[:, None, None] * loss
    f_t = jnp.where(jnp.isfinite(f_t), f_t, jnp.inf).reshape(S, L, 2 * (steps.LENGTHS + 1))
    best, strict, tentative = steps.choose(f_t, done, jnp.finfo(dtype).eps)
    move = strict | tentative
    t_best = jnp.where(move, t[best % (steps.LENGTHS + 1)], 0.0)[:, None, :]
    step = jnp.where((best <= steps.LENGTHS)[:, None, :], steps_[..., 0], steps_[..., 1])
    z = jnp.where(revert[:, None, :], s.z_prev, s.z + t_best * step)
    # Margins recomputed from z, not accumulated, so that rounding does not drift.
    xz = jnp.einsum('smd,sdl->sml', Xs, z, precision=HIGHEST)
    return steps.advance(s, z, xz, f_of, kkt=gnorm, move=move, tentative=tentative,
                         revert=revert, converged=converged, done=done)

  D = Xs.shape[-1]
  z0 = jnp.zeros((S, D, L), dtype)
  xz0 = jnp.zeros((S, m, L), dtype)
  g0 = jnp.maximum(jnp.linalg.norm(gradient(z0, xz0)[0], axis=1), jnp.finfo(dtype).tiny)
  f0 = f_of(z0, xz0)
  state = steps.start(z0, xz0, f0)
  s = jax.lax.while_loop(lambda s: (s.it < max_iter) & ~jnp.all(s.done), body, state)
  gnorm = jnp.linalg.norm(gradient(s.z, s.xz)[0], axis=1) / g0
  converged = s.converged | (gnorm <= tol)
  kkt = jnp.where(s.done, s.kkt, gnorm)
  coef = s.z[:, :dim, :] / scale[..., None]
  intercept = -jnp.einsum('sd,sdl->sl', shift, coef, precision=HIGHEST)
  if fit_intercept:
    intercept = intercept + intercept_scaling * s.z[:, dim, :]
  return Params(coef, intercept), SolverState(s.n_iter, kkt, s.f, converged)
