"""The exceptions a user can act on, and how command-line tools report them.

`UserError` is a problem the user can fix (a bad file, folder or option); `Interrupted` is Ctrl-C
during long work, carrying what was kept and how to resume. Command-line entry points turn both,
and any `OSError` (a full disk, a missing permission), into one line on stderr and an exit
status (1, or 130 for an interruption) instead of a traceback; anything else is a bug and keeps
its traceback.
"""

import contextlib
import sys


class UserError(Exception):
  """Bad input from the user: the message names the file and the problem."""


class Interrupted(KeyboardInterrupt):
  """Ctrl-C during long work; the message says how far it got (`rerun to resume: ...`)."""


def _os_error_message(e: OSError) -> str:
  where = ' -> '.join(str(f) for f in (e.filename, e.filename2) if f is not None)
  return f'{where}: {e.strerror or e}' if where else str(e.strerror or e)


@contextlib.contextmanager
def exit_on_user_error():
  """For CLI `main`s: `error: <message>` on stderr and exit status 1 for a `UserError` or an
  `OSError`; `interrupted[; <how to resume>]` and exit status 130 for Ctrl-C."""
  try:
    yield
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  except OSError as e:
    print(f'error: {_os_error_message(e)}', file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt as e:
    print('interrupted' + (f'; {e}' if str(e) else ''), file=sys.stderr)
    sys.exit(130)
