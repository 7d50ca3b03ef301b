"""Command-line flags for `miml_jax.plumbing.runtime`, shared by every command; `apply()` first in main."""

from absl import flags

from miml_jax.plumbing import home
from miml_jax.plumbing import runtime
from miml_jax.plumbing.errors import exit_on_user_error
from miml_jax.plumbing.errors import UserError

COMPILATION_CACHE = flags.DEFINE_string(
    'compilation_cache', None, 'Folder of compiled XLA programs kept between runs (default: '
    '$MIML_JAX_CACHE/xla, else ~/.cache/miml_jax/xla; empty: off).')
DISTRIBUTED = flags.DEFINE_boolean(
    'distributed', False, 'Join a multi-host run (jax.distributed.initialize); the cluster is '
    'detected unless the three flags below are given.')
COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                  'Multi-host: host:port of process 0.')
NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Multi-host: processes in all.')
PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Multi-host: this process, 0-based.')
DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    'distributed_timeout', runtime.DISTRIBUTED_TIMEOUT_SECONDS,
    'Multi-host: seconds to wait for every process to join before giving up.')


def apply() -> None:
  with exit_on_user_error():
    if DISTRIBUTED.value:
      runtime.initialize_distributed(COORDINATOR.value, NUM_PROCESSES.value, PROCESS_ID.value,
                                     timeout=DISTRIBUTED_TIMEOUT.value)
    else:
      given = [h for h in (COORDINATOR, NUM_PROCESSES, PROCESS_ID) if h.present]
      if given:
        raise UserError(f'--{given[0].name} is for a multi-host run: add --distributed')
    runtime.enable_compilation_cache(home.cache_dir('xla') if COMPILATION_CACHE.value is None
                                     else COMPILATION_CACHE.value)
