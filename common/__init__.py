"""What every stage shares: the user-error type and the CLI runner that turns it into one line, the device rule,
progress bars, atomic file and folder writes, output-path checks, and file-name slugs. Nothing here knows about
traces, routing or results."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Advance = Callable[[int], None]
T = TypeVar("T")
INT64_MAX = 2**63 - 1
DEBUG_ENV = "MESSPLUS_DEBUG"  # set to 1 to see the traceback behind a one-line I/O or data error


class UserError(Exception):
    """A user-facing problem with an input (file, column, option). The message is one line."""


def first_repeat(items: Iterable[T]) -> T | None:
    """The first item that equals an earlier one, or None: what a "given twice" error names."""
    seen: list[T] = []  # a list, not a set: items need not be hashable
    for x in items:
        if x in seen:
            return x
        seen.append(x)
    return None


def _flush_stdout() -> None:
    """Push out what the command printed: a full disk or a closed pipe behind stdout is an OSError naming it."""
    try:
        sys.stdout.flush()
    except OSError as e:
        raise OSError(e.errno, e.strerror, "<stdout>") from None


def _fail(message: str, code: int = 2) -> None:
    """Print `error: <message>` as exactly one line on stderr and exit. A stdout that cannot take its buffered
    output is swapped for /dev/null first, so the interpreter's last flush adds no second error."""
    try:
        sys.stdout.flush()
    except OSError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (lives until the process ends, a moment later)
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(code)


def _data_errors() -> tuple[type, ...]:
    """The exception bases of Arrow and Polars, for whichever of them is loaded (never imported here)."""
    kinds = []
    if "pyarrow" in sys.modules:
        kinds.append(sys.modules["pyarrow"].ArrowException)
    if "polars" in sys.modules:
        kinds.append(sys.modules["polars"].exceptions.PolarsError)
    return tuple(kinds)


def fault_message(e: BaseException) -> str | None:
    """The one-line message of a fault that is not a bug: an OSError (disk full, permission, missing file) or a
    data file that Arrow or Polars cannot read; None for anything else."""
    if isinstance(e, OSError):
        where = ": ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        what = e.strerror or str(e) or type(e).__name__
        return f"{where}: {what}" if where else what
    if isinstance(e, _data_errors()):
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return f"cannot read the data ({first})"
    return None


def _command_line_errors() -> tuple[type, type]:
    """(any command-line error, "no arguments: show the help") of the installed typer, which vendors click from
    0.2x on."""
    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # older typer: click itself
        from click.exceptions import ClickException, NoArgsIsHelpError
    return ClickException, NoArgsIsHelpError


INTERRUPTED = 130  # the shell's exit code for a process stopped by Ctrl-C (128 + SIGINT)


def run_cli(app: Callable[..., object]) -> None:
    """Run a typer app. A UserError, a bad command line, an OSError or an unreadable data file becomes one line
    `error: ...` on stderr and exit code 2, never a traceback (MESSPLUS_DEBUG=1 re-raises the last two)."""
    import typer

    command_line_error, no_args = _command_line_errors()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # other libraries: warnings only
    logging.getLogger("messplus").setLevel(logging.INFO)  # our own progress notes
    try:
        code = app(standalone_mode=False)
        if code == INTERRUPTED:  # typer turns Ctrl-C into a quiet exit 130: say so, as for any other stop
            _fail("interrupted; every output is written whole or not at all, so what was there before is intact",
                  INTERRUPTED)  # fmt: skip
        _flush_stdout()
    except UserError as e:
        _fail(str(e))
    except no_args as e:  # no arguments at all: the help, as usual
        e.show()
        raise SystemExit(e.exit_code) from None
    except command_line_error as e:  # click's own message, without the usage box around it
        _fail(e.format_message())
    except typer.Abort:
        _fail("interrupted", INTERRUPTED)
    except Exception as e:
        message = fault_message(e)
        if message is None or os.environ.get(DEBUG_ENV) == "1":
            raise
        _fail(message)
    raise SystemExit(code if isinstance(code, int) else 0)


def pick_device(device: str) -> str:
    """auto | cpu | cuda -> cpu | cuda: `auto` means the GPU when torch sees one; `cuda` without one, or anything
    else, is a UserError (never a silent run on the CPU recorded as cuda)."""
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {device!r}")
    if device == "cpu":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise UserError("--device cuda: torch sees no CUDA GPU on this machine; use --device cpu (or auto)")
    return "cpu"


def check_range(value: float | None, flag: str, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> None:  # fmt: skip
    """A number option must be finite (an integer where `integer`) and within [lo, hi] (an end excluded where
    `lo_open` / `hi_open`); None means "not given" and passes."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{flag}: must be a finite number, got {value!r}")
    if integer and not float(value).is_integer():
        raise UserError(f"{flag}: must be an integer, got {value!r}")
    if (integer or isinstance(value, int)) and abs(value) > INT64_MAX:  # stored as Int64, numpy's C long
        raise UserError(f"{flag}: {value!r} does not fit a 64-bit integer")
    low = lo is not None and (value <= lo if lo_open else value < lo)
    high = hi is not None and (value >= hi if hi_open else value > hi)
    if low or high:
        lo_text = "-inf" if lo is None else f"{lo:g}"
        hi_text = "inf)" if hi is None else f"{hi:g}{')' if hi_open else ']'}"
        raise UserError(f"{flag}: {value!r} is outside {'(' if lo_open or lo is None else '['}{lo_text}, {hi_text}")


def _nearest_existing(path: Path) -> Path:
    return next(p for p in (path, *path.parents) if p.exists())


def _check_writable_place(path: Path, flag: str) -> None:
    """The nearest existing folder at or above `path` must be a folder we may create entries in."""
    existing = _nearest_existing(path.resolve())  # resolved: "missing/../file.txt/x" is under a file
    if not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable")


def check_out_file(path: Path, flag: str = "--out") -> None:
    """Before any work: `path` names a file we can write (atomically, beside it): not a folder, under folders
    that exist or can be made, in a writable place. Nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name")
    if path.exists() and not path.is_file():  # a device or a pipe: an atomic write would replace it
        raise UserError(f"{flag} {path}: is not a regular file")
    _check_writable_place(path.parent, flag)


def check_out_folder(path: Path, flag: str = "--out") -> None:
    """Before any work: `path` names a folder we can write into: a folder or nothing yet, in a writable place.
    Nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a folder")
    _check_writable_place(path, flag)


@contextmanager
def progress_bars(console: Console, unit: str = "", transient: bool = True) -> Iterator[Callable[..., Advance]]:
    """Yields start(label, total, done=0), which adds a bar (label, bar, count, elapsed, ETA) and returns its
    advance(n) callback: one style for every long job."""
    if not console.is_terminal:  # a pipe or a file: no bar to redraw, so a plain line every few seconds
        yield _progress_lines(unit)
        return
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


PIPE_EVERY_S = 5.0  # seconds between progress lines when output is not a terminal


def _progress_lines(unit: str) -> Callable[..., Advance]:
    """progress_bars' start() for output that is not a terminal: each job prints `label: done/total` on stderr at
    most every PIPE_EVERY_S seconds, and when it finishes; stdout stays the command's own output."""

    def start(label: str, total: int, done: int = 0) -> Advance:
        state = {"done": done, "last": time.monotonic(), "t0": time.monotonic()}

        def advance(n: int) -> None:
            state["done"] += n
            now = time.monotonic()
            if now - state["last"] >= PIPE_EVERY_S or state["done"] >= total:
                state["last"] = now
                suffix = f" {unit}" if unit else ""
                print(f"{label}: {state['done']}/{total}{suffix} ({now - state['t0']:.0f} s)", file=sys.stderr,
                      flush=True)  # fmt: skip

        return advance

    return start


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


def recover_folder(path: Path) -> None:
    """Undo an atomic_folder write killed between its two renames: the old folder, moved aside, goes back."""
    moved = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
    if moved and not path.exists():
        os.rename(moved[-1], path)


@contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """A temporary folder beside `path` to fill; when the block ends without error it replaces `path` by rename
    (the old folder moved aside, then removed), so a reader finds the old set of files or the new one, never a
    mix. The temporary is removed either way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(path)
    new = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.new-"))
    try:
        yield new
        os.chmod(new, 0o755)
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
        if path.exists():
            os.rename(path, old)
        os.rename(new, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(new, ignore_errors=True)


def available_memory() -> int:
    """Bytes this machine can still give: MemAvailable where /proc/meminfo says it, else all physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(need: int, what: str, fix: str) -> None:
    """Before the work: refuse, in one line, what would need more memory than is available (rather than be killed
    by the kernel minutes later with no message). need: an estimate in bytes of `what`."""
    have = available_memory()
    if need > have:
        raise UserError(f"{what} needs about {need / 2**30:.1f} GiB, and {have / 2**30:.1f} GiB are available; {fix}")


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes, read in blocks (traces and results can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def slug(name: str, keep: int = 120) -> str:
    """A name safe as one path component (its last `keep` characters): letters, digits, '.', '_' and '-' only, and
    no leading dot (no '..', no hidden file). Every name that becomes a file or folder name passes through here."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-keep:]
    return re.sub(r"^\.", "_", safe) or "_"
