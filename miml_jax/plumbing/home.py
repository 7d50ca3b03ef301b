"""Where miml_jax keeps a user's things: the datasets, and a cache of what it makes from them.

The two environment variables the library reads are read here, and nowhere else:

- `MIML_JAX_DATA`: a folder of datasets by name. Datasets are looked for, in this order, in the
  `data_dir` a command is given (`--data_dir`), in `$MIML_JAX_DATA`, and in `~/miml_jax_data`;
  `python -m miml_jax.datasets fetch` writes to the first of them.
- `MIML_JAX_CACHE`: the cache (default `~/.cache/miml_jax`): `weights/` (weights converted from
  the formats people have, by name), `downloads/` (their original files), `features/` (feature
  files of datasets), `xla/` (compiled programs). Everything there can be made again.
"""

import os

DATA_ENV = 'MIML_JAX_DATA'
CACHE_ENV = 'MIML_JAX_CACHE'


def data_dirs(data_dir=None) -> list[str]:
  """The folders searched for a dataset by name, in order (see the module docstring)."""
  found = [data_dir, os.environ.get(DATA_ENV), os.path.join(os.path.expanduser('~'),
                                                            'miml_jax_data')]
  return list(dict.fromkeys(os.fspath(d) for d in found if d))


def data_home(data_dir=None) -> str:
  """Where `fetch` puts datasets: the first of `data_dirs`."""
  return data_dirs(data_dir)[0]


def cache_dir(*parts: str) -> str:
  """A folder (not created) of the cache: `$MIML_JAX_CACHE/<parts>`, else under
  `~/.cache/miml_jax`."""
  root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser('~'), '.cache', 'miml_jax')
  return os.path.join(root, *parts)
