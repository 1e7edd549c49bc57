"""One error type for every bad input, and the CLI wrapper that turns it into one line and exit code 2."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


class TraceError(Exception):
    """A user-facing problem with an input (file, column, option). The message is one line."""


def run_cli(app: Callable[[], object]) -> None:
    """Run a typer app; a TraceError becomes `error: ...` on stderr and exit code 2, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app()
    except TraceError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
