"""Reading and writing trace files: Parquet with the zoo and provenance in the file's metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from messplus.common import UserError, atomic_path, first_repeat
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
    """Write with JSON key-value metadata, atomically (temp file + rename): a crash never leaves half a file, and
    a full disk or a refused write is one line naming the file."""
    path = Path(path)
    table = df.to_arrow()
    extra = {k: json.dumps(v, sort_keys=True).encode() for k, v in metadata.items()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    try:
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, compression="zstd")
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror or str(e).splitlines()[0]})") from None
    return path


def _read_table(path: Path) -> tuple[pl.DataFrame, pa.Schema]:
    """The Parquet table and its schema (with the trace's metadata). polars reads it, checking that text is UTF-8;
    where it refuses, Arrow reads it again only to say which column is broken and how."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    try:
        return pl.read_parquet(path), schema
    except (pl.exceptions.PolarsError, OSError):
        pass
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    for name in table.column_names:
        if pa.types.is_string(table.schema.field(name).type) or pa.types.is_large_string(table.schema.field(name).type):
            try:
                table.column(name).validate(full=True)
            except pa.ArrowInvalid:
                raise UserError(f"{path}: column {name!r} holds text that is not valid UTF-8") from None
    try:
        return pl.from_arrow(table), schema
    except (pa.ArrowException, pl.exceptions.PolarsError) as e:
        raise UserError(f"{path}: cannot read the table ({str(e).splitlines()[0]})") from None


def _metadata(path: Path, schema: pa.Schema) -> dict:
    """The trace's own metadata: a JSON object of this schema version with a zoo list."""
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise UserError(f"{path}: no trace metadata; write traces with `traces import` or traces.io.write_trace")
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path}: trace metadata is not valid JSON; re-import the source") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: trace metadata is a JSON {type(meta).__name__}, expected an object")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(f"{path}: trace schema v{version}, this version reads v{SCHEMA_VERSION}; re-import the source")
    if not isinstance(meta.get("zoo"), list):
        raise UserError(f"{path}: trace metadata has no zoo (a list of models, cheapest first)")
    if not isinstance(meta.get("provenance", {}), dict):
        raise UserError(f"{path}: trace metadata 'provenance' must be an object")
    if not isinstance(meta.get("synthetic", False), bool):
        raise UserError(f"{path}: trace metadata 'synthetic' must be true or false, not {meta['synthetic']!r}")
    return meta


def read_trace(path: str | Path) -> Trace:
    """Read and validate one trace file; every problem is a one-line UserError."""
    path = Path(path)
    refuse_pickle(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a trace file")
    if not path.is_file():
        raise UserError(f"{path}: trace file not found")
    df, schema = _read_table(path)
    meta = _metadata(path, schema)
    zoo = Zoo.from_json(json.dumps(meta["zoo"]), f"{path}: trace metadata")
    provenance = {**meta.get("provenance", {}), "source": str(path)}
    return Trace(df, zoo, bool(meta.get("synthetic")), provenance)


def trace_files(path: str | Path) -> list[Path]:
    """A trace path is a .parquet file or a folder of them."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise UserError(f"{path}: folder holds no .parquet trace files")
        return files
    return [path]


def feature_width(trace: Trace) -> int | None:
    """The length of the trace's per-request feature vectors; None without features."""
    if "features" not in trace.df.columns or trace.df["features"].null_count() == trace.df.height:
        return None
    return int(trace.df["features"].list.len()[0])


def _same_kind(used: dict[str, Trace]) -> None:
    """Traces replayed together must share the zoo (same models, same order) and the kind of features."""
    first_bench, first = next(iter(used.items()))
    for bench, trace in used.items():
        where = f"{trace.provenance['source']} (bench {bench}) and {first.provenance['source']} (bench {first_bench})"
        if trace.zoo.names != first.zoo.names:
            raise UserError(
                f"{where} have different zoos ({', '.join(trace.zoo.names)} vs {', '.join(first.zoo.names)}); "
                "replay one zoo at a time"
            )
        if feature_width(trace) != feature_width(first):
            kinds = [f"{w} features" if w else "no features" for w in (feature_width(trace), feature_width(first))]
            raise UserError(f"{where} have different features ({kinds[0]} vs {kinds[1]}); replay them separately")


def load_benches(path: str | Path, benches: list[str] | tuple[str, ...] | None = None) -> dict[str, Trace]:
    """The trace holding each bench (every bench when None), reading every file once; the error lists the benches
    that exist. A bench in two files, or benches of different zoos or feature kinds, is refused."""
    twice = first_repeat(benches or ())
    if twice is not None:
        raise UserError(f"--bench {twice} is given twice")
    found: dict[str, Trace] = {}
    for f in trace_files(path):
        trace = read_trace(f)
        for b in trace.benches:
            if b in found:
                raise UserError(f"bench {b!r} is in both {found[b].provenance['source']} and {f}; keep one of them")
            found[b] = trace
    missing = [b for b in benches or () if b not in found]
    if missing:
        raise UserError(f"{path}: unknown bench {missing[0]!r} (available: {', '.join(found) or 'none'})")
    used = {b: found[b] for b in benches or found}
    _same_kind(used)
    return used
