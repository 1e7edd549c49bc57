"""What every stage shares: the user-error type and the CLI runner that turns it into one line, the device rule,
progress bars, atomic file writes, and file-name slugs. Nothing here knows about traces, routing or results."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Advance = Callable[[int], None]


class UserError(Exception):
    """A user-facing problem with an input (file, column, option). The message is one line."""


def run_cli(app: Callable[[], object]) -> None:
    """Run a typer app; a UserError becomes `error: ...` on stderr and exit code 2, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def pick_device(device: str) -> str:
    """auto | cpu | cuda -> cpu | cuda: `auto` means the GPU when torch sees one; anything else is a UserError."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {device!r}")
    return device


@contextmanager
def progress_bars(console: Console, unit: str = "", transient: bool = True) -> Iterator[Callable[..., Advance]]:
    """Yields start(label, total, done=0), which adds a bar (label, bar, count, elapsed, ETA) and returns its
    advance(n) callback: one style for every long job."""
    count = "{task.completed}/{task.total}" + (f" {unit}" if unit else "")
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn(count),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=console, transient=transient) as p:

        def start(label: str, total: int, done: int = 0) -> Advance:
            task = p.add_task(label, total=max(total, 1), completed=done)
            return lambda n: p.advance(task, n)

        yield start


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed onto `path` only when the block ends without error, so
    a crash never leaves half a file, and the temporary is removed either way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def slug(name: str, keep: int = 120) -> str:
    """A name safe as one path component (its last `keep` characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("/"))[-keep:]
