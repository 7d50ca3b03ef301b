"""The skeleton the Newton solvers share: their loop state, the step-length search (several
lengths tried at once, one chosen), the progress check, the loop and the clean-up.

A solver's iteration `body(state) -> state` measures its stopping measure at state.z, asks
`progress` which problems are converged, reverted or done, searches the lengths (`lengths`,
`choose`) and moves (`advance`, with the gradient at the point it moves to); `iterate` runs it,
and `finish` turns the last state into (Params, SolverState). The gradient travels in the state
so that `iterate` can see, at no cost, that every problem left is converged where it stands, and
stop before an iteration that would only find that out.

Along each candidate direction the solvers evaluate F at the step lengths 4, 2, 1, 1/2, ...,
1/2^11 and 0 in one batch (their margins are linear in the length, so this costs no extra product
with the data). F at length 0 is computed the same way as at the others, so that comparisons see
differences, not the rounding of two different sums.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from miml_jax.solvers import batches
from miml_jax.solvers.problem import Params
from miml_jax.solvers.problem import SolverState

# Newton's step is nearly always taken whole; the shorter ones are the safeguard where float32
# rounding spoils it, and below 1/2^11 a step is not worth an iteration.
LENGTHS = 12
# Longer steps tried too, taken only where they lower F beyond rounding. From zero on separable
# data (every Table 1 problem: more weights than images) the loss is far from its quadratic
# model and Newton's whole step falls short: L2's gradient fell only 2.8x per iteration for the
# first seven (Scene folds). With 4 and 2: L2 on Scene's folds 9 -> 5 iterations, final fits
# 11 -> 7 (median), L1 12.4 -> 10.6 s; the same optima (objectives within 2.3e-7).
LONGER = (4.0, 2.0)
# All lengths of a direction: LONGER, 1, 1/2, ..., 1/2^(LENGTHS - 1), and 0 (the last, `HERE`).
NUM_LENGTHS = len(LONGER) + LENGTHS + 1
HERE = NUM_LENGTHS - 1
# The working-set model's ridge, relative to its mean curvature: keeps a Cholesky factorisation
# defined for columns without curvature, and is too small to change a step otherwise.
RIDGE = 1e-6
# A step must lower F by more than this many eps of |F| to count as progress: below, the change
# is the rounding of F's sum.
PROGRESS_EPS = 2


def lengths(dtype):
  """(NUM_LENGTHS,) the step lengths: `LONGER`, 1, 1/2, ..., 1/2^(LENGTHS - 1), and 0."""
  halvings = jnp.where(jnp.arange(LENGTHS + 1) < LENGTHS, 0.5 ** jnp.arange(LENGTHS + 1), 0.0)
  return jnp.concatenate([jnp.asarray(LONGER, halvings.dtype), halvings]).astype(dtype)


def choose(f_try, done, eps):
  """The step to take given F of the candidates, f_try (..., k (LENGTHS + 1)): k directions,
  each at `lengths`. Returns (its index, whether it lowers F beyond rounding, whether it is taken
  only tentatively), for the problems not `done`.

  A step that lowers F by more than its rounding is taken. Near the optimum float32 no longer
  sees F go down while the stopping measure still can: the best step that does not raise F
  beyond rounding is then taken tentatively, and the solver keeps it only if the measure falls.
  Otherwise nothing moves: the problem is as solved as its precision allows.
  """
  J = NUM_LENGTHS
  f_here = f_try[..., HERE]
  noise = PROGRESS_EPS * eps * jnp.abs(f_here)
  best = jnp.argmin(f_try, axis=-1)
  f_best = jnp.take_along_axis(f_try, best[..., None], axis=-1)[..., 0]
  # Tentative steps (near the optimum, within rounding) are never the longer ones.
  index = jnp.arange(f_try.shape[-1]) % J
  moving = jnp.where((index != HERE) & (index >= len(LONGER)), f_try, jnp.inf)
  best_moving = jnp.argmin(moving, axis=-1)
  f_moving = jnp.take_along_axis(moving, best_moving[..., None], axis=-1)[..., 0]
  strict = ~done & (f_best < f_here - noise)
  tentative = ~done & ~strict & (f_moving <= f_here + noise)
  return jnp.where(strict, best, best_moving), strict, tentative


class NewtonState(NamedTuple):
  """The loop state of the L2 Newton solvers; (S, L) per problem unless said."""
  z: jax.Array          # (S, D, L)
  xz: jax.Array         # (S, rows, L) margins X̃z
  f: jax.Array
  z_prev: jax.Array     # (S, D, L) the point before the last step, F and the measure there
  f_prev: jax.Array
  kkt_prev: jax.Array
  tentative: jax.Array  # the last step lowered F by no more than its rounding
  n_iter: jax.Array
  converged: jax.Array
  done: jax.Array
  kkt: jax.Array        # the stopping measure relative to its value at 0
  # (S, D, L) the gradient the solver measures with, at z (L2: F's; L1: the loss's). Carried
  # from the iteration that moved to z, so that the loop's stopping check (`iterate`) and the
  # next iteration need no product with the data of their own.
  grad: jax.Array


def start(z, xz, f, grad) -> NewtonState:
  """The state before the first iteration, at z (margins xz, objective f, gradient grad)."""
  no, one = jnp.zeros(f.shape, bool), jnp.ones(f.shape, f.dtype)
  return NewtonState(z, xz, f, z, f, one, no, jnp.zeros(f.shape, jnp.int32), no, no, one, grad)


def advance(s: NewtonState, z, xz, f_of, *, grad, kkt, move, tentative, revert, converged,
            done) -> NewtonState:
  """The state after an iteration that measured `kkt` at s.z and moved to z (margins xz,
  gradient grad) where `move`, or back to s.z_prev where `revert` (a tentative step that did
  not lower the measure).
  A problem not `done` that cannot `move` is done: no step length lowers F any more. s may be
  any NamedTuple with NewtonState's fields (a solver's own state, with more): its type stays."""
  return s._replace(
      z=z, xz=xz, f=jnp.where(move, f_of(z, xz), jnp.where(revert, s.f_prev, s.f)),
      z_prev=jnp.where(move[:, None, :], s.z, s.z_prev),
      f_prev=jnp.where(move, s.f, s.f_prev), kkt_prev=jnp.where(move, kkt, s.kkt_prev),
      tentative=tentative, n_iter=s.n_iter + (~done).astype(jnp.int32),
      converged=s.converged | converged, done=done | ~move,
      kkt=jnp.where(s.done, s.kkt, jnp.where(revert, s.kkt_prev, kkt)), grad=grad)


def progress(s: NewtonState, kkt, tol):
  """(converged, revert, done) (S, L) of an iteration that measured `kkt` at s.z: converged at
  `tol`; reverted, when the last step was tentative and did not lower the measure (a step F
  could not tell from rounding is kept only if it lowered the stopping measure); done, either
  or already."""
  converged = ~s.done & (kkt <= tol)
  revert = ~s.done & ~converged & s.tentative & (kkt >= s.kkt_prev)
  return converged, revert, s.done | converged | revert


def iterate(body, state: NewtonState, max_iter, compact=False, *, measure=None,
            tol=None) -> NewtonState:
  """`body` from `state` until every problem is done or after max_iter iterations (traced: a
  second call compiles nothing new); compact (traced, or False): also stop once the problems
  still going fit in a quarter of the batch (`batches.fits_smaller`), to go on with those
  alone.

  measure: optional s -> (S, L), the stopping measure at s.z from s.grad (as the body measures
  it). With it, the loop also stops once every problem not done is converged where it stands
  (measure <= tol), and marks those converged and done, as the next body would have: without
  it, that body's whole batch of steps is computed only to find them converged (one iteration
  in five of L2 Newton's warm-started folds). Those no longer count as going for `compact`
  either, so the batch shrinks an iteration sooner."""
  def pending(s):
    if measure is None:
      return ~s.done
    return ~s.done & ~(measure(s) <= tol)

  def going(carry):
    s, it = carry
    left = pending(s)
    more = (it < max_iter) & jnp.any(left)
    if compact is False:
      return more
    return more & ~(compact & batches.fits_smaller(left))

  s, _ = jax.lax.while_loop(going, lambda c: (body(c[0]), c[1] + 1),
                            (state, jnp.zeros((), jnp.int32)))
  if measure is None:
    return s
  kkt = measure(s)
  converged = ~s.done & (kkt <= tol)
  return s._replace(converged=s.converged | converged, done=s.done | converged,
                    tentative=s.tentative & ~converged, kkt=jnp.where(converged, kkt, s.kkt))


def finish(s: NewtonState, kkt, tol, coef, intercept) -> tuple[Params, SolverState]:
  """The result of the last state s: its weights in raw units (coef, intercept), and the
  stopping measure `kkt` measured at s.z (the loop may end on its step), for the problems not
  done before."""
  converged = s.converged | (kkt <= tol)
  return Params(coef, intercept), SolverState(s.n_iter, jnp.where(s.done, s.kkt, kkt), s.f,
                                              converged)
