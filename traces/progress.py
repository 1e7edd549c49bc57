"""One progress-bar style for every long job: label, bar, count, elapsed time and ETA."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Advance = Callable[[int], None]


@contextmanager
def progress_bars(console: Console, unit: str = "", transient: bool = True) -> Iterator[Callable[..., Advance]]:
    """Yields start(label, total, done=0), which adds a bar and returns its advance(n) callback."""
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
