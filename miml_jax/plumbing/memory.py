"""Whether a fit fits in this machine's memory, said before it starts rather than by the kernel's
out-of-memory killer halfway through."""


from miml_jax.plumbing.errors import UserError

# Copies of the features a fit holds at once: the caller's, the solver's on its device, and the
# solver's centred working copy (`miml_jax.solvers.design`).
DATA_COPIES = 3
# Vectors of the rows' and of the weights' size per problem (margins, curvatures, the step
# search's candidates; weights, gradients, the inner solvers' iterates), with room to spare.
ROW_VECTORS = 16
WEIGHT_VECTORS = 64


def available_bytes() -> int | None:
  """Memory the kernel can give without swapping (Linux's MemAvailable), or None if unknown."""
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def fit_bytes(n: int, d: int, problems: int, itemsize: int = 4) -> int:
  """About the peak memory of fitting `problems` (splits x labels) regularised logistic
  regressions on n images of d features with the matrix-free solvers (linear in every size)."""
  return itemsize * (DATA_COPIES * n * d + problems * (ROW_VECTORS * n + WEIGHT_VECTORS * d))


def check_fits(needed: int, what: str) -> None:
  """`UserError` naming `what` when `needed` bytes exceed the memory available now."""
  available = available_bytes()
  if available is not None and needed > available:
    raise UserError(f'{what} needs about {needed / 1e9:.1f} GB of memory and this machine has '
                    f'{available / 1e9:.1f} GB available; use fewer images (or labels), or a '
                    f'machine with more memory')
