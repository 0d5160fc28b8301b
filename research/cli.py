"""What the research tools' command lines share: a flag type and the error-to-exit-status rule
of the ``alime`` command (a user error is one line on stderr and exit status 2)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def run_main(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """Parse ``argv`` and call ``run``; a ``ValueError`` or missing file becomes
    ``PROG: error: MESSAGE`` on stderr and exit status 2, as in ``alime``.

    Returns:
        The exit status.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
