"""python -m miml_jax.datasets fetch scene|msrc_v2 [--data_dir=DIR] [--archive=FILE]

Downloads a benchmark dataset from its official source and converts it to the plain layout
(see `miml_jax.datasets.fetch`); `--archive` takes an archive downloaded by other means.
"""

from absl import flags

from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax.datasets import fetch as fetch_lib
from miml_jax.plumbing.errors import UserError

_DATA_DIR = common_flags.data_dir()
_ARCHIVE = flags.DEFINE_string('archive', None, 'Use this official archive, no download.')
_URL = flags.DEFINE_string('url', None, 'Download from this address (a mirror) instead.')
_VERIFY = flags.DEFINE_bool('verify', True, "Check the archive's published checksum.")


def main(argv):
  if len(argv) != 3 or argv[1] != 'fetch':
    raise UserError(f'usage: python -m miml_jax.datasets fetch '
                    f'{"|".join(fetch_lib.SOURCES)} [--data_dir=DIR]')
  root = fetch_lib.fetch(argv[2], _DATA_DIR.value, url=_URL.value, archive=_ARCHIVE.value,
                         checksum='default' if _VERIFY.value else None)
  print(root)


if __name__ == '__main__':
  cli.run(main)
