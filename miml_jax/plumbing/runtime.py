"""Process-wide JAX set-up for the command-line tools: compilation cache and several hosts.

Library code never calls these; each command's `main` does, from the flags of
`miml_jax.plumbing.runtime_flags`.
"""

import os
import sys
import threading
import time

import jax

from miml_jax.plumbing.errors import interrupted_status
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


# How long a process waits for the others of a multi-host run to join it (jax's own default).
DISTRIBUTED_TIMEOUT_SECONDS = 300
# JAX's runtime ends the whole process (a fatal error and a stack trace) when its wait for the
# coordinator times out: ours ends a little earlier, with one line.
_BEFORE_JAX_GIVES_UP = 2


def check_coordinator_address(address: str) -> None:
  """`UserError` unless `address` is host:port."""
  host, _, port = address.rpartition(':')
  if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(
      c.isspace() for c in address):
    raise UserError(f'--coordinator_address must be host:port (e.g. 10.0.0.1:1234), got '
                    f'{address!r}')


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, *,
                           timeout: int = DISTRIBUTED_TIMEOUT_SECONDS) -> None:
  """Joins this process to a multi-host run with `jax.distributed.initialize` (JAX's own
  runtime). Without arguments JAX detects the cluster (Cloud TPU, SLURM, Open MPI, ...); give
  all three to start processes by hand. Afterwards `jax.devices()` lists every host's devices
  and the solvers spread their splits over all of them.

  The wait for the other processes answers Ctrl-C and SIGTERM at once, and gives up after
  `timeout` seconds with one line naming the coordinator (JAX's runtime would end the process
  with a stack trace); either ends the process then and there (`os._exit`): JAX's runtime
  cannot be stopped half-way, and nothing has been written yet.
  """
  given = [a is not None for a in (coordinator_address, num_processes, process_id)]
  if any(given) and not all(given):
    raise UserError('a hand-started multi-host run needs --coordinator_address, '
                    '--num_processes and --process_id together')
  if all(given):
    check_coordinator_address(coordinator_address)
    if num_processes < 1:
      raise UserError(f'--num_processes must be at least 1, got {num_processes}')
    if not 0 <= process_id < num_processes:
      raise UserError(f'--process_id must be in 0..{num_processes - 1} (--num_processes='
                      f'{num_processes}), got {process_id}')
  if timeout < 1 + _BEFORE_JAX_GIVES_UP:
    raise UserError(f'the multi-host wait must be at least {1 + _BEFORE_JAX_GIVES_UP} seconds, '
                    f'got {timeout}')
  # Processes computing on CPUs talk through gloo (XLA's CPU collectives); accelerators use
  # their own, whatever this says.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  failed = []

  def join():
    try:
      jax.distributed.initialize(coordinator_address, num_processes, process_id,
                                 initialization_timeout=timeout)
    except Exception as e:   # pylint: disable=broad-except
      failed.append(e)

  joining = threading.Thread(target=join, name='jax.distributed.initialize', daemon=True)
  joining.start()
  deadline = time.monotonic() + timeout - _BEFORE_JAX_GIVES_UP
  where = coordinator_address or 'the detected cluster'
  try:
    while joining.is_alive() and time.monotonic() < deadline:
      joining.join(0.2)
  except KeyboardInterrupt as e:
    _end_now(f'interrupted while waiting for the other processes at {where}',
             interrupted_status(e))
  if joining.is_alive():
    _end_now(f'error: no multi-host run formed at {where} within {timeout} s (is process 0 '
             'started, and the address reachable from here?)', 1)
  if failed:
    e = failed[0]
    if isinstance(e, ValueError) and not coordinator_address:
      raise UserError('--distributed found no cluster to join (Cloud TPU, SLURM, Open MPI); '
                      'start the processes by hand with --coordinator_address, --num_processes '
                      'and --process_id') from None
    raise UserError(f'--distributed: could not join the run at {where}: {e}') from None


def _end_now(message: str, status: int) -> None:
  print(message, file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(status)   # pylint: disable=protected-access
