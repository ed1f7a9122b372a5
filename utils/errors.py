"""User-facing errors: one line on stderr, never a traceback.

Scripts wrap their body with :func:`run_cli`; library code raises :class:`UserError` (bad input,
exit code 2) with a message that names the offending file or flag, or :class:`RunFailed` (a run
that started but could not finish, e.g. its loss became NaN; exit code 3) once it has recorded
the failure in ``failed.json``.
"""
import sys

_AT_END = []  # callbacks run when run_cli's main returns or raises (e.g. releasing folder locks)


def at_end(callback):
    """Have :func:`run_cli` call ``callback()`` when the script's main ends, however it ends
    (registered once per callback)."""
    if callback not in _AT_END:
        _AT_END.append(callback)


class UserError(Exception):
    """Bad input from the user (a flag, a file, a mask). Printed as one line, exit code 2."""


class RunFailed(Exception):
    """A run that stopped before its end (training diverged); ``failed.json`` says why. Exit code 3."""

    exit_code = 3


def run_cli(main, argv=None):
    """Run ``main(argv)``; turn a :class:`UserError` into ``error: <msg>`` on stderr and exit 2,
    a :class:`RunFailed` into the same line and exit 3."""
    try:
        return main(argv)
    except (UserError, RunFailed) as err:
        msg = " ".join(str(err).split())  # always one line
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(getattr(err, "exit_code", 2))
    finally:
        for callback in list(_AT_END):  # e.g. the run's output-folder lock ends with it
            callback()


def first_line(err, limit=160):
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:limit]
