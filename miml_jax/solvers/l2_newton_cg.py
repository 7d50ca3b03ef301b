r"""Truncated Newton (Newton-CG) for the L2 problem of `miml_jax.solvers.objective`, in weight space.

`newton.NewtonL2` factorises an m x m matrix per problem: exact and fast while the training rows
are a few thousand, but its memory grows as m² and its time as m³. Here, as in liblinear's TRON,
the Newton system (I + X̃ᵀ W X̃) d = -∇F is solved only approximately, by conjugate gradients
that touch the Hessian through products v ↦ v + X̃ᵀ(W (X̃ v)): two passes over the shared data
per CG step, for every problem at once, and memory of the data plus a few (S, n, L) and
(S, D, L) arrays. The Newton iteration count hardly depends on m, so the cost is linear in the
images.

CG stops at a relative residual η = min(1/2, sqrt(||∇F|| / ||∇F(0)||)) (the forcing sequence of
Eisenstat and Walker, superlinear near the optimum); the step length is searched as in the other
Newton solvers (`miml_jax.solvers.steps`). A problem stops when ||∇F|| <= tol ||∇F(0)||, the
measure every solver stops on (`objective.optimality`), or when no step lowers F any more.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from miml_jax import sharding
from miml_jax.solvers import design as splits_design
from miml_jax.solvers import steps
from miml_jax.solvers.objective import loss_terms
from miml_jax.solvers.problem import loop_limits
from miml_jax.solvers.problem import Params
from miml_jax.solvers.problem import Problem
from miml_jax.solvers.problem import SolverState
from miml_jax.solvers.problem import zero_weights

# Most CG steps per Newton step: the forcing sequence usually stops CG long before, and a step
# cut short here is still a descent direction.
MAX_CG = 200


@dataclasses.dataclass(frozen=True)
class NewtonCGL2:
  """Truncated Newton with conjugate gradients for L2 (module docstring). run(problem) ->
  (Params, SolverState)."""
  tol: float = 1e-4
  max_iter: int = 10_000
  max_cg: int = MAX_CG

  def run(self, problem: Problem, mesh=None, init=None) -> tuple[Params, SolverState]:
    """init: (S, D, L) the scaled weights to start from (`problem.scaled_weights`; None: 0)."""
    z0 = zero_weights(problem, mesh) if init is None else init
    state = sharding.map_splits(start, mesh, problem, z0)
    (params, result), _ = sharding.map_splits(
        solve, mesh, problem, state, shared=loop_limits(problem, self.tol, self.max_iter),
        max_cg=self.max_cg)
    return params, result

  def init_state(self, problem: Problem, init=None) -> steps.NewtonState:
    """The loop state at init (S, D, L) (scaled weights; None: 0), as `run` starts."""
    return start(problem, zero_weights(problem) if init is None else init)

  def update(self, problem: Problem, state: steps.NewtonState
             ) -> tuple[Params, steps.NewtonState]:
    """One iteration from `state`, for every problem of the batch: its weights in raw units, and
    the state after it."""
    (params, _), state = solve(problem, state, *loop_limits(problem, self.tol, 1),
                               max_cg=self.max_cg)
    return params, state



def conjugate_gradients(matvec, b, target, active, max_steps):
  """x with ||matvec(x) - b|| <= target for every problem (or after max_steps), from x = 0;
  b (S, D, L), target and active (S, L): inactive problems get 0. All problems step together,
  so that each step is one batched matvec."""
  dot = lambda u, v: (u * v).sum(axis=1)

  def body(c):
    x, r, p, rr, going, k = c
    hp = matvec(p)
    alpha = jnp.where(going, rr / jnp.maximum(dot(p, hp), jnp.finfo(b.dtype).tiny), 0.0)
    x = x + alpha[:, None, :] * p
    r = r - alpha[:, None, :] * hp
    rr_new = dot(r, r)
    beta = jnp.where(going, rr_new / jnp.maximum(rr, jnp.finfo(b.dtype).tiny), 0.0)
    p = jnp.where(going[:, None, :], r + beta[:, None, :] * p, p)
    going = going & (jnp.sqrt(rr_new) > target)
    return x, r, p, jnp.where(going, rr_new, rr), going, k + 1

  rr = dot(b, b)
  going = active & (jnp.sqrt(rr) > target)
  init = (jnp.zeros_like(b), b, b, rr, going, jnp.zeros((), jnp.int32))
  x, *_ = jax.lax.while_loop(lambda c: jnp.any(c[4]) & (c[5] < max_steps), body, init)
  return x


def _operators(problem: Problem):
  """(design, labels as signs (1, n, L), mask (S, n, 1), C (L,), F(z, xz), gradient(z, xz) ->
  (∇F, curvature)) of `problem`: what `start` and `solve` share."""
  L = problem.num_labels
  C = jnp.broadcast_to(problem.C, (L,))
  design = splits_design.make(problem.X, problem.shift, problem.scale,
                              problem.intercept_scaling, problem.fit_intercept)
  ysign = (2.0 * problem.Y - 1.0)[None]                                  # (1, n, L)
  m3 = problem.mask[..., None]                                            # (S, n, 1)

  def f_of(z, xz):
    return 0.5 * jnp.square(z).sum(axis=1) + C * loss_terms(xz, ysign, m3)

  def gradient(z, xz):
    p = jax.nn.sigmoid(-ysign * xz)
    g = z + splits_design.margins_transpose(design, -C * ysign * p * m3)
    return g, C * p * (1.0 - p) * m3

  return design, ysign, m3, C, f_of, gradient


@jax.jit
def start(problem: Problem, z0) -> steps.NewtonState:
  """The state of `solve` at z0 (S, D, L), a starting point in the scaled problem's weights."""
  design, _, _, _, f_of, gradient = _operators(problem)
  z0 = z0.astype(problem.X.dtype)
  xz0 = splits_design.margins(design, z0)
  return steps.start(z0, xz0, f_of(z0, xz0), gradient(z0, xz0)[0])


@functools.partial(jax.jit, static_argnames=('max_cg',))
def solve(problem: Problem, state: steps.NewtonState, tol, max_iter, *, max_cg=MAX_CG):
  """Newton-CG on every problem of `problem` from `state` (`start`) to relative tolerance `tol`
  (of the gradient's norm at 0, wherever it starts); max_iter: most iterations (traced: a second
  call compiles nothing new). Returns ((Params in raw units, SolverState), the state it stopped
  in)."""
  S, n, L = problem.num_splits, problem.X.shape[0], problem.num_labels
  dtype = problem.X.dtype
  design, ysign, m3, C, f_of, gradient = _operators(problem)
  t = steps.lengths(dtype)

  measure = lambda s: jnp.linalg.norm(s.grad, axis=1) / g0

  def body(s):
    g = s.grad
    curv = gradient(s.z, s.xz)[1]   # XLA drops the product with the data: g is not used
    gnorm = jnp.linalg.norm(g, axis=1)
    kkt = gnorm / g0
    converged, revert, done = steps.progress(s, kkt, tol)
    hessian_times = lambda v: v + splits_design.margins_transpose(
        design, curv * splits_design.margins(design, v))
    forcing = jnp.minimum(0.5, jnp.sqrt(kkt))
    step = conjugate_gradients(hessian_times, -g, forcing * gnorm, ~done, max_cg)
    xstep = splits_design.margins(design, step)
    # F along z + t·step: the penalty is a quadratic in t, the loss needs the margins only; one
    # length at a time keeps the memory at one (S, n, L) array.
    zz, zs, ss = [(a * b).sum(axis=1) for a, b in ((s.z, s.z), (s.z, step), (step, step))]
    loss = jax.lax.map(lambda tj: loss_terms(s.xz + tj * xstep, ysign, m3), t)   # (J, S, L)
    f_t = (0.5 * (zz + 2 * t[:, None, None] * zs + t[:, None, None] ** 2 * ss)
           + C * loss)
    f_t = jnp.moveaxis(jnp.where(jnp.isfinite(f_t), f_t, jnp.inf), 0, -1)       # (S, L, J)
    best, strict, tentative = steps.choose(f_t, done, jnp.finfo(dtype).eps)
    move = strict | tentative
    t_best = jnp.where(move, t[best], 0.0)[:, None, :]
    z = jnp.where(revert[:, None, :], s.z_prev, s.z + t_best * step)
    # Margins recomputed from z, not accumulated, so that rounding does not drift.
    xz = splits_design.margins(design, z)
    return steps.advance(s, z, xz, f_of, grad=gradient(z, xz)[0], kkt=kkt, move=move,
                         tentative=tentative, revert=revert, converged=converged, done=done)

  g0 = jnp.maximum(jnp.linalg.norm(gradient(jnp.zeros_like(state.z), jnp.zeros(
      (S, n, L), dtype))[0], axis=1), jnp.finfo(dtype).tiny)
  s = steps.iterate(body, state, max_iter, measure=measure, tol=tol)
  kkt = measure(s)
  return steps.finish(s, kkt, tol, *splits_design.raw_weights(design, s.z, problem.shift)), s
