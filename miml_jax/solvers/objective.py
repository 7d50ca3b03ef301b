r"""The problem every solver here solves: liblinear's regularised logistic regression, per label.

Per label j (and per data split):

    L1:  F(w, β) = ||w||_1 + |β| + C Σ_{i ∈ train} log(1 + exp(-y_ij (wᵀx_i + s β)))
    L2:  F(w, β) = ½||w||² + ½β² + C Σ_{i ∈ train} log(1 + exp(-y_ij (wᵀx_i + s β)))

with y_ij ∈ {-1, +1}, s = `intercept_scaling` and intercept b = s β. liblinear fits the intercept
as the weight β of a synthetic feature of constant value s, so the intercept is regularised too;
without `fit_intercept` there is no β. Dividing by C·m (m training images) gives the paper's
eq. (1), (1/m) Σ log(1 + exp(-y(xᵀw + b))) + λ||w||_1, with λ = 1/(C m), except that eq. (1)
leaves b unpenalised where liblinear (and so the paper's runs) penalise |b|/s.

Every solver stops on, and reports as `kkt`, one optimality measure (`optimality`), relative to
its value at z = 0, the criteria of liblinear's own solvers for these problems:
  L1: the 1-norm of the minimum-norm subgradient of F (zero exactly at the optimum);
  L2: the 2-norm of the gradient of F.
A problem is `converged` when that measure is at most `tol`; one that stops for any other reason
(no step lowers F beyond the rounding of its precision, `max_iter`) is not, whichever solver ran.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


class LogisticFit(NamedTuple):
  """Solver output; leading axis S only when several train masks were given.

  coef: (S, d, L); intercept: (S, L) (b = s·β); objective: (S, L); n_iter: (S, L) iterations
  each problem ran; converged: (S, L) whether it met `tol` within `max_iter`; kkt: (S, L) the
  final value of the solver's relative stopping measure.
  """
  coef: jax.Array
  intercept: jax.Array
  objective: jax.Array
  n_iter: jax.Array
  converged: jax.Array
  kkt: jax.Array


# A zero weight satisfies optimality when |g| <= 1; g is a sum, known only to its rounding, so a
# few units in the last place above 1 still count as satisfied. (Labels with a few positives can
# have their optimum at z = 0 with |g| exactly 1 for the intercept, which rounds to 1 + 1 ulp.)
_KINK_ULPS = 8


def min_norm_subgradient(z, g):
  """The element of ∂F of least norm, for F = ||z||₁ + smooth with gradient g."""
  kink = 1.0 + _KINK_ULPS * jnp.finfo(g.dtype).eps
  return jnp.where(z != 0, g + jnp.sign(z), jnp.sign(g) * jnp.maximum(jnp.abs(g) - kink, 0.0))


def optimality(z, g, penalty, axis=1):
  """The stopping measure of the module docstring at weights z, given the smooth part's gradient
  g there (same shapes); reduced over `axis` (the weights)."""
  if penalty == 'l1':
    return jnp.abs(min_norm_subgradient(z, g)).sum(axis=axis)
  return jnp.linalg.norm(z + g, axis=axis)


def penalty_value(z, penalty, axis=1):
  """The regulariser of weights z, summed over `axis`."""
  if penalty == 'l1':
    return jnp.abs(z).sum(axis=axis)
  return 0.5 * jnp.square(z).sum(axis=axis)


def log1p_exp(x):
  """log(1 + exp(x)) elementwise, the logistic loss at margin -x: jnp.logaddexp(0, x)'s formula
  (the same float32 values, NaN and infinities alike) without its explicit NaN select, which
  kept XLA's CPU loops from vectorising: summed over the rows as the line searches do, 10x
  longer (40 against 3.9 ms on msrc_v2's fold shapes; the sums then agree to float32 rounding,
  3e-7, as they are added in another order)."""
  return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def loss_terms(margins, ysign, mask, axis=1):
  """Σ mask · log(1 + exp(-y m)) over the rows on `axis`."""
  return (log1p_exp(-ysign * margins) * mask).sum(axis=axis)


def objective(X, Y, coef, intercept, *, penalty='l1', C=1.0, intercept_scaling=1.0,
              fit_intercept=True, train_mask=None):
  """liblinear's objective of a fit (see the module docstring); shapes as `fit_logistic`'s."""
  X = jnp.asarray(X)
  single = train_mask is None
  mask = jnp.ones((1, X.shape[0]), X.dtype) if single else jnp.asarray(train_mask, X.dtype)
  coef = jnp.asarray(coef)[None] if single else jnp.asarray(coef)
  intercept = jnp.asarray(intercept)[None] if single else jnp.asarray(intercept)
  ysign = 2.0 * jnp.asarray(Y, X.dtype) - 1.0
  margins = jnp.einsum('nd,sdl->snl', X, coef, precision=HIGHEST) + intercept[:, None, :]
  beta = intercept / intercept_scaling if fit_intercept else jnp.zeros_like(intercept)
  z = jnp.concatenate([coef, beta[:, None, :]], axis=1)
  out = penalty_value(z, penalty) + jnp.asarray(C) * loss_terms(
      margins, ysign[None], mask[..., None])
  return out[0] if single else out
