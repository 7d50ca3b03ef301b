r"""Newton steps on a few coordinates: which ones, their model Hessian, the step in an orthant.

Both L1 solvers take Newton steps on a working set of K coordinates per problem
(`l1_prox_newton` at every iteration, `fista` every few): the non-zero weights first, then the
zero weights that most violate optimality; the model Hessian on them, H = X̃_Wᵀ D X̃_W with a
ridge at the rounding level of its diagonal; and, at given signs σ, the model's minimiser in
that orthant, where the L1 norm is the linear σᵀz and the model is a smooth quadratic. Arrays are
(..., K) per problem, H (..., K, K).
"""

import jax
import jax.numpy as jnp

from miml_jax.solvers import steps
from miml_jax.solvers.objective import HIGHEST


def select(zt, sub, K):
  """Each problem's K coordinates to move: the non-zero weights first, then the zero weights that
  most violate optimality. zt, sub: (..., D) weights and minimum-norm subgradient. Returns
  (indices (..., K), the violation left outside the set (...))."""
  violation = jnp.where(zt != 0, 0.0, jnp.abs(sub))
  score = jnp.where(zt != 0, 1.0 + violation.max() + jnp.abs(zt), violation)
  _, idx = jax.lax.top_k(score, K)
  outside = violation.sum(-1) - jnp.take_along_axis(violation, idx, axis=-1).sum(-1)
  return idx, outside


def put(zt, idx, values):
  """zt (S, L, D) with the coordinates idx (S, L, K) set to values (S, L, K)."""
  return jax.vmap(jax.vmap(lambda v, i, x: v.at[i].set(x)))(zt, idx, values)


def model_hessian(columns, curvature):
  """The model Hessian H (S, L, K, K) of the set's columns (S, L, K, m) under the rows'
  curvatures (S, L, m); its diagonal (S, L, K); and the ridge (S, L) that keeps its
  factorisations defined (`steps.RIDGE` times the mean diagonal)."""
  H = jnp.einsum('slkm,slm,sljm->slkj', columns, curvature, columns, precision=HIGHEST)
  h_diag = jnp.diagonal(H, axis1=-2, axis2=-1)
  ridge = steps.RIDGE * jnp.maximum(h_diag.mean(axis=-1), jnp.finfo(H.dtype).tiny)
  return H, h_diag, ridge


def hessian_times(H, v):
  """H v for each problem's (K, K) model Hessian H (..., K, K) and vector v (..., K)."""
  return jnp.einsum('...kj,...j->...k', H, v, precision=HIGHEST)


def gradient_signs(z, g):
  """The orthant a Newton step stays in, from the gradient g of the smooth part (OWL-QN's): a
  non-zero weight keeps its sign, a zero weight takes the sign it would descend in (|g| > 1),
  the others stay zero."""
  return jnp.where(z != 0, jnp.sign(z), jnp.where(g > 1.0, -1.0, jnp.where(g < -1.0, 1.0, 0.0)))


def orthant_newton(H, ridge, g, z, sigma):
  """The step to the model's minimiser over the coordinates with signs sigma ≠ 0, in their
  orthant (the L1 norm there is σᵀz); coordinates with sigma = 0 go to zero."""
  free = sigma != 0
  fixed = jnp.where(free, 0.0, -z)
  # On the free set F: H_FF δ_F = -(g + σ + H δ_fixed)_F.
  rhs = -(g + sigma + hessian_times(H, fixed))
  both = free[..., :, None] & free[..., None, :]
  H_free = (jnp.where(both, H, 0.0) + jnp.where(free, ridge[..., None], 1.0)[..., None]
            * jnp.eye(g.shape[-1], dtype=g.dtype))
  solved = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(H_free), True),
                                      jnp.where(free, rhs, 0.0)[..., None])[..., 0]
  return jnp.where(free, jnp.where(jnp.isfinite(solved), solved, 0.0), fixed)


def orthant_points(z, step, sigma, t):
  """z + t·step (..., J, K) at the step lengths t (J,), each coordinate that would cross out of
  its orthant sigma stopped at zero (the step holds only within it)."""
  points = z[..., None, :] + t[:, None] * step[..., None, :]
  return jnp.where(jnp.sign(points) == sigma[..., None, :], points, 0.0)
