"""Process-wide JAX set-up for the command-line tools: compilation cache and several hosts.

Library code never calls these; each command's `main` does, from the flags of
`miml_jax.plumbing.runtime_flags`.
"""

import os

import jax

from miml_jax.plumbing.errors import UserError


def enable_compilation_cache(path: str) -> None:
  """Keeps XLA's compiled programs in `path` (JAX's persistent compilation cache), so that the
  same command run again compiles nothing. An empty path leaves the cache off."""
  if not path:
    return
  path = os.path.expanduser(path)
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise UserError(f'{path}: cannot create the compilation cache folder ({e.strerror})') from None
  jax.config.update('jax_compilation_cache_dir', path)
  # Cache every program that took a noticeable time to compile, whatever its size.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins this process to a multi-host run with `jax.distributed.initialize` (JAX's own
  runtime). Without arguments JAX detects the cluster (Cloud TPU, SLURM, Open MPI, ...); give
  all three to start processes by hand. Afterwards `jax.devices()` lists every host's devices
  and the solvers spread their splits over all of them."""
  given = [a is not None for a in (coordinator_address, num_processes, process_id)]
  if any(given) and not all(given):
    raise UserError('a hand-started multi-host run needs --coordinator_address, '
                    '--num_processes and --process_id together')
  # Processes computing on CPUs talk through gloo (XLA's CPU collectives); accelerators use
  # their own, whatever this says.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes, process_id)
