"""The exceptions a user can act on, and how command-line tools report them.

`UserError` is a problem the user can fix (a bad file, folder or option); `Interrupted` is Ctrl-C
during long work, carrying what was kept and how to resume. Command-line entry points turn both,
and any `OSError` (a full disk, a missing permission), into one line on stderr and an exit
status (1, or 130 for an interruption) instead of a traceback; anything else is a bug and keeps
its traceback. SIGTERM (what `timeout`, `kill` and batch schedulers send) and SIGHUP (a closed
terminal) end a command as Ctrl-C does, with what was kept and exit status 128 + the signal's
number (143, 129); a closed pipe (`... | head`) ends it quietly.
"""

import contextlib
import os
import signal
import sys


class UserError(Exception):
  """Bad input from the user: the message names the file and the problem."""


class Interrupted(KeyboardInterrupt):
  """Ctrl-C during long work; the message says how far it got (`rerun to resume: ...`)."""


def _os_error_message(e: OSError) -> str:
  where = ' -> '.join(str(f) for f in (e.filename, e.filename2) if f is not None)
  return f'{where}: {e.strerror or e}' if where else str(e.strerror or e)


class _Signalled(KeyboardInterrupt):
  """Raised in the main thread by SIGTERM or SIGHUP, so that work ends as on Ctrl-C."""

  def __init__(self, signum: int = signal.SIGINT):
    super().__init__()
    self.signum = signum


def interrupted_status(e: KeyboardInterrupt) -> int:
  """The exit status of a command ended by `e`: 128 + the signal's number (130 for Ctrl-C)."""
  return 128 + getattr(e, 'signum', signal.SIGINT)


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ('SIGTERM', 'SIGHUP')
                      if hasattr(signal, name))


@contextlib.contextmanager
def _stop_signals_interrupt(received: list):
  """Within the block SIGTERM and SIGHUP raise `_Signalled` (recording the signal in `received`),
  as SIGINT raises KeyboardInterrupt; the previous handlers come back afterwards."""
  def handler(signum, frame):   # pylint: disable=unused-argument
    received.append(signum)
    raise _Signalled(signum)
  previous = {}
  try:
    for signum in _STOP_SIGNALS:
      previous[signum] = signal.signal(signum, handler)
  except ValueError:   # not the main thread: signals stay as they are
    pass
  try:
    yield
  finally:
    for signum, old in previous.items():
      signal.signal(signum, old)


@contextlib.contextmanager
def exit_on_user_error():
  """For CLI `main`s: `error: <message>` on stderr and exit status 1 for a `UserError` or an
  `OSError`; `interrupted[; <how to resume>]` and exit status 130 for Ctrl-C (143 for SIGTERM,
  129 for SIGHUP); a closed standard output ends the command quietly (exit status 141, as a
  shell reports SIGPIPE)."""
  received = []
  try:
    with _stop_signals_interrupt(received):
      yield
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  except BrokenPipeError:
    # The reader went away (`| head`): nothing more to say, and nothing to flush at exit.
    with contextlib.suppress(OSError):
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(141)
  except OSError as e:
    print(f'error: {_os_error_message(e)}', file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt as e:
    print('interrupted' + (f'; {e}' if str(e) else ''), file=sys.stderr)
    sys.exit(128 + (received[0] if received else signal.SIGINT))
