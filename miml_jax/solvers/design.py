"""The features each data split is fitted on, as linear operators over one shared matrix.

Split s sees x̃ = ((x - shift_s) / scale_s, s₀) for every image x, s₀ = `intercept_scaling` being
liblinear's constant intercept column (left out without an intercept). The scaled features are
never formed: every product goes through the shared X, so S splits cost one copy of the data.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from miml_jax.solvers.objective import HIGHEST


class Design(NamedTuple):
  X: jax.Array                 # (n, d) features minus their mean over all rows
  XT: jax.Array                # (d, n) the same, transposed: see `columns`
  shift: jax.Array             # (S, d) each split's shift, minus the same mean
  scale: jax.Array             # (S, d)
  intercept_scaling: jax.Array
  fit_intercept: bool

  @property
  def dim(self):
    """Weights per problem: the features, plus the intercept's."""
    return self.X.shape[1] + int(self.fit_intercept)


def make(X, shift, scale, intercept_scaling, fit_intercept) -> Design:
  # (X - shift) = (X - c) - (shift - c). On raw non-negative features the products Xw are
  # otherwise mostly a large common part that the intercept cancels, and in float32 the rounding
  # of that part, different for every row, stalls the solvers.
  centre = X.mean(axis=0)
  X = X - centre
  return Design(X, X.T, shift - centre, scale, intercept_scaling, fit_intercept)


def margins(design: Design, z):
  """X̃z for every split and label: z (S, D, L) -> (S, n, L)."""
  d = design.X.shape[1]
  w = z[:, :d, :] / design.scale[..., None]
  out = (jnp.einsum('nd,sdl->snl', design.X, w, precision=HIGHEST)
         - jnp.einsum('sd,sdl->sl', design.shift, w, precision=HIGHEST)[:, None, :])
  if design.fit_intercept:
    out = out + design.intercept_scaling * z[:, d:, :]
  return out


def margins_transpose(design: Design, r):
  """X̃ᵀr, the adjoint of `margins`: r (S, n, L) -> (S, D, L)."""
  total = r.sum(axis=1)                                                  # (S, L)
  g = (jnp.einsum('nd,snl->sdl', design.X, r, precision=HIGHEST)
       - design.shift[..., None] * total[:, None, :]) / design.scale[..., None]
  if design.fit_intercept:
    g = jnp.concatenate([g, design.intercept_scaling * total[:, None, :]], axis=1)
  return g


def columns(design: Design, rows, idx):
  """Columns idx (S, L, K) of X̃ at the rows (S, m) of each split: (S, L, K, m)."""
  d = design.X.shape[1]
  feat = jnp.minimum(idx, d - 1)
  # From the transposed copy: each column's rows then lie in one contiguous run of memory
  # (gathering from X itself strides by d for every row, about 4x slower on a CPU).
  cols = design.XT[feat[..., None], rows[:, None, None, :]]             # (S, L, K, m)
  sh = jnp.take_along_axis(design.shift[:, None, :], feat, axis=-1)
  sc = jnp.take_along_axis(design.scale[:, None, :], feat, axis=-1)
  out = (cols - sh[..., None]) / sc[..., None]
  if design.fit_intercept:
    out = jnp.where((idx == d)[..., None], design.intercept_scaling, out)
  return out


def raw_weights(design: Design, z, raw_shift):
  """(coef (S, d, L), intercept (S, L)) in raw-feature units: decisions are x·coef + intercept.

  wᵀ(x - shift)/scale + s₀β = (w/scale)ᵀx + s₀β - (w/scale)ᵀshift.
  """
  d = design.X.shape[1]
  coef = z[:, :d, :] / design.scale[..., None]
  intercept = -jnp.einsum('sd,sdl->sl', raw_shift, coef, precision=HIGHEST)
  if design.fit_intercept:
    intercept = intercept + design.intercept_scaling * z[:, d, :]
  return coef, intercept
