"""User-facing errors: one line on stderr, exit code 2, never a traceback.

Scripts wrap their body with :func:`run_cli`; library code raises :class:`UserError`
with a message that names the offending file or flag.
"""
import sys


class UserError(Exception):
    """Bad input from the user (a flag, a file, a mask). Printed as one line, exit code 2."""


def run_cli(main, argv=None):
    """Run ``main(argv)``; turn a :class:`UserError` into ``error: <msg>`` on stderr and exit 2."""
    try:
        return main(argv)
    except UserError as err:
        msg = " ".join(str(err).split())  # always one line
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)


def first_line(err, limit=160):
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:limit]
