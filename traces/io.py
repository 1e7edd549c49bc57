"""Reading and writing trace files: Parquet with the zoo and provenance in the file's metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from messplus.common import UserError, atomic_path
from messplus.traces.schema import META_KEY, SCHEMA_VERSION, conform, validate
from messplus.traces.zoo import Zoo

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pk")


@dataclass(frozen=True)
class Trace:
    """A validated trace: the long table plus its zoo (cost order) and provenance."""

    df: pl.DataFrame
    zoo: Zoo
    synthetic: bool = False
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate before conforming: the casts to schema types must never hide a bad value."""
        validate(self.df, self.provenance.get("source", "trace"), self.zoo.names)
        object.__setattr__(self, "df", conform(self.df))

    @property
    def benches(self) -> list[str]:
        return self.df["bench"].unique(maintain_order=True).to_list()


def refuse_pickle(path: Path) -> None:
    """Loading a pickle runs arbitrary code, so no path in this project ever unpickles."""
    is_pickle = path.suffix.lower() in PICKLE_SUFFIXES
    if not is_pickle and path.is_file():
        with path.open("rb") as f:
            head = f.read(2)
        is_pickle = len(head) == 2 and head[0] == 0x80 and head[1] <= 5
    if is_pickle:
        raise UserError(
            f"{path}: refusing to load a pickle (unpickling runs arbitrary code); convert it where you trust it, "
            f"e.g. python -c \"import pandas as p; p.read_pickle('{path.name}').to_parquet('{path.stem}.parquet')\""
        )


def write_trace(trace: Trace, path: str | Path) -> Path:
    """Validate, then write atomically (temp file + rename) so a crash never leaves half a trace."""
    path = Path(path)
    df = trace.df
    meta = {
        "schema_version": SCHEMA_VERSION,
        "zoo": json.loads(trace.zoo.to_json()),
        "synthetic": trace.synthetic,
        "provenance": trace.provenance,
    }
    return write_parquet(df, path, {META_KEY: meta})


def write_parquet(df: pl.DataFrame, path: str | Path, metadata: dict[bytes, dict]) -> Path:
    """Write with JSON key-value metadata, atomically (temp file + rename): a crash never leaves half a file."""
    path = Path(path)
    table = df.to_arrow()
    extra = {k: json.dumps(v, sort_keys=True).encode() for k, v in metadata.items()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read_trace(path: str | Path) -> Trace:
    """Read and validate one trace file; every problem is a one-line UserError."""
    path = Path(path)
    refuse_pickle(path)
    if not path.is_file():
        raise UserError(f"{path}: trace file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise UserError(f"{path}: no trace metadata; write traces with `traces import` or traces.io.write_trace")
    meta = json.loads(raw)
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(f"{path}: trace schema v{version}, this version reads v{SCHEMA_VERSION}; re-import the source")
    zoo = Zoo.from_json(json.dumps(meta["zoo"]))
    provenance = {**meta.get("provenance", {}), "source": str(path)}
    return Trace(pl.from_arrow(table), zoo, bool(meta.get("synthetic")), provenance)


def trace_files(path: str | Path) -> list[Path]:
    """A trace path is a .parquet file or a folder of them."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise UserError(f"{path}: folder holds no .parquet trace files")
        return files
    return [path]


def load_benches(path: str | Path, benches: list[str] | tuple[str, ...] | None = None) -> dict[str, Trace]:
    """The trace holding each bench (every bench when None), reading every file once; the error lists the benches
    that exist."""
    found: dict[str, Trace] = {}
    for f in trace_files(path):
        trace = read_trace(f)
        for b in trace.benches:
            found.setdefault(b, trace)
    missing = [b for b in benches or () if b not in found]
    if missing:
        raise UserError(f"{path}: unknown bench {missing[0]!r} (available: {', '.join(found) or 'none'})")
    return {b: found[b] for b in benches or found}
