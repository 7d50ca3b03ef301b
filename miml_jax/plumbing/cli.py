"""What every command-line tool shares: one-line errors, numbers checked up front, quiet logs.

    def main(argv):
      cli.no_arguments(argv)
      cli.at_least(_SPLITS, 1)
      ...
    if __name__ == '__main__':
      cli.run(main)

`run` is `absl.app.run` with the whole of `main` under `errors.exit_on_user_error` (a user error,
an `OSError` or Ctrl-C is one line on stderr, never a traceback) and absl's INFO log off unless
`--verbosity=0` (or higher) asks for it. The checks raise `UserError` naming the flag, so that a
bad number stops a command before any long work.
"""

import base64
import math
import os
import sys

import numpy as np
from absl import app
from absl import flags
from absl import logging

from miml_jax.plumbing.errors import exit_on_user_error
from miml_jax.plumbing.errors import UserError


_CHECKS_BEFORE_MAIN = []


def check_before_main(check) -> None:
  """Has `run` call `check()` (raising `UserError` for a bad value) after the flags are
  parsed, before `main`: how `miml_jax.plumbing.common_flags` checks each shared flag once."""
  _CHECKS_BEFORE_MAIN.append(check)


def run(main) -> None:
  """Runs `main(argv)` as a command (see the module docstring)."""
  def guarded(argv):
    # WARNING and above by default: the INFO lines (the flags, JAX's platform probing) are for
    # whoever asks with --verbosity=0.
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    with exit_on_user_error():
      try:
        for check in _CHECKS_BEFORE_MAIN:
          check()
        main(argv)
      except app.UsageError as e:
        raise UserError(f'{e} (--helpshort lists the flags)') from None

  app.run(guarded, flags_parser=_parse_flags)


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f'error: {e} (--helpshort lists the flags)', file=sys.stderr)
    sys.exit(1)


def no_arguments(argv) -> None:
  if len(argv) > 1:
    raise UserError(f'unexpected arguments: {" ".join(argv[1:])} (every option is a --flag)')


def _name(flag) -> str:
  return f'--{flag.name}'


def at_least(flag, low, high=None):
  """The integer flag's value, checked to lie in [low, high]."""
  value = flag.value
  if value is None or value < low or (high is not None and value > high):
    bound = f'in {low}..{high}' if high is not None else f'at least {low}'
    raise UserError(f'{_name(flag)} must be {bound}, got {value}')
  return value


def processes(flag):
  """A joblib-style process count: n >= 1, or -1 for all cores (-2 all but one, ...)."""
  if flag.value is None or flag.value == 0:
    raise UserError(f'{_name(flag)} must be a number of processes, or -1 for all cores; got '
                    f'{flag.value}')
  return flag.value


# The solvers compute in float32: a number they are given must be one there too (1e300 would
# become inf, and 1e-300 zero).
_FLOAT32 = np.finfo(np.float32)


def _positive_float32(value) -> bool:
  return (value is not None and math.isfinite(value) and value > 0
          and float(_FLOAT32.smallest_normal) <= value <= float(_FLOAT32.max))


def positive(flag, or_what: str = ''):
  """The float flag's value, checked to be finite and positive in float32, the precision the
  solvers compute in."""
  value = flag.value
  if not _positive_float32(value):
    raise UserError(f'{_name(flag)} must be a finite positive number{or_what} within float32\'s '
                    f'range ({_FLOAT32.smallest_normal:.1e} to {_FLOAT32.max:.1e}), got {value}')
  return value


def fraction(flag):
  """The float flag's value, checked to lie strictly between 0 and 1."""
  value = flag.value
  if value is None or not 0 < value < 1:
    raise UserError(f'{_name(flag)} must lie strictly between 0 and 1, got {value}')
  return value


def positive_numbers(flag) -> list[float]:
  """A list flag's values as finite positive floats (e.g. a grid of C)."""
  values = []
  for text in flag.value or ():
    try:
      value = float(text)
    except ValueError:
      value = math.nan
    if not _positive_float32(value):
      raise UserError(f'{_name(flag)} must hold finite positive numbers within float32\'s range '
                      f'({_FLOAT32.smallest_normal:.1e} to {_FLOAT32.max:.1e}), got {text!r}')
    values.append(value)
  if not values:
    raise UserError(f'{_name(flag)} is empty')
  return values


def integers(flag, low) -> list[int]:
  """A list flag's values as integers of at least `low`."""
  values = []
  for text in flag.value or ():
    try:
      value = int(text)
    except ValueError:
      value = low - 1
    if value < low:
      raise UserError(f'{_name(flag)} must hold integers of at least {low}, got {text!r}')
    values.append(value)
  if not values:
    raise UserError(f'{_name(flag)} is empty')
  return values


def choices(flag, allowed) -> list[str]:
  """A list flag's values, each checked to be one of `allowed`."""
  values = list(flag.value or ())
  unknown = [v for v in values if v not in allowed]
  if unknown or not values:
    raise UserError(f'{_name(flag)}: unknown {", ".join(unknown) or "(empty)"}; choose from '
                    f'{", ".join(allowed)}')
  return values


def image_sizes(scales_flag, image_size_flag=None):
  """The input size(s) of an extraction: --scales (several sizes, a tuple) if given, else
  --image_size (224 for a command without one); `UserError` if both are set."""
  if not scales_flag.value:
    return 224 if image_size_flag is None else image_size_flag.value
  if image_size_flag is not None and image_size_flag.present:
    raise UserError(f'give {_name(scales_flag)} or {_name(image_size_flag)}, not both')
  sizes = tuple(integers(scales_flag, 1))
  if len(set(sizes)) != len(sizes):
    raise UserError(f'{_name(scales_flag)} repeats a size: {",".join(scales_flag.value)}')
  return sizes if len(sizes) > 1 else sizes[0]


def json_path(path: str) -> dict:
  """{'image': text} for a JSON row; a file name that is not valid UTF-8 (os.fsdecode keeps its
  bytes as lone surrogates, which no JSON reader accepts) is shown with its bad bytes as \\xNN,
  and its exact bytes follow in 'image_bytes' (base64) to find the file again."""
  try:
    path.encode('utf-8')
    return {'image': path}
  except UnicodeEncodeError:
    raw = os.fsencode(path)
    return {'image': raw.decode('utf-8', 'backslashreplace'),
            'image_bytes': base64.b64encode(raw).decode('ascii')}


def warn(message: str) -> None:
  """`warning: <message>` on stderr, one line, above a progress bar if one is showing: for a
  problem the command goes past (one bad photo of a library) and counts in its exit status."""
  import tqdm   # pylint: disable=g-import-not-at-top
  tqdm.tqdm.write(f'warning: {message}', file=sys.stderr)


def write_stdout(text: str) -> None:
  """Writes `text` to standard output as the file system's bytes: a file name that is not valid
  UTF-8 comes out as the very bytes of its name (as `ls` prints it), never as an encoding
  error, and whatever the terminal's encoding."""
  data = text.encode(sys.getfilesystemencoding(), 'surrogateescape')
  buffer = getattr(sys.stdout, 'buffer', None)
  if buffer is None:   # a text-only stream (a test's capture): the name's escapes as text
    sys.stdout.write(data.decode('utf-8', 'backslashreplace'))
    return
  sys.stdout.flush()
  buffer.write(data)
  buffer.flush()

