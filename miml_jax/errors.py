"""The one exception type for problems a user can fix (bad files, bad folders, bad options).

Command-line entry points catch `UserError` and print its message on one line with a non-zero
exit status instead of a traceback; anything else is a bug and keeps its traceback.
"""

import contextlib
import sys


class UserError(Exception):
  """Bad input from the user: the message names the file and the problem."""


@contextlib.contextmanager
def exit_on_user_error():
  """For CLI `main`s: turns a `UserError` into `error: <message>` on stderr and exit status 1."""
  try:
    yield
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
