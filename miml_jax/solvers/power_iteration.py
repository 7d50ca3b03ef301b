"""The largest eigenvalue of a positive semi-definite operator known through its products."""

import jax
import jax.numpy as jnp


def top_eigenvalue(matvec, v, iterations):
  """λmax of the operator `matvec` on (..., D) vectors, per leading index, by `iterations` power
  steps from v: the Rayleigh quotient of the last iterate, which approaches λmax from below
  (callers scale it up by a margin for a bound)."""
  tiny = jnp.finfo(v.dtype).tiny

  def step(_, v):
    w = matvec(v)
    return w / jnp.maximum(jnp.linalg.norm(w, axis=-1, keepdims=True), tiny)

  v = jax.lax.fori_loop(0, iterations, step, v)
  return (v * matvec(v)).sum(-1)
