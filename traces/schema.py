"""Trace schema v1: the long-format contract between collect, sim and analysis.

One row per (bench, doc_id, model). Costs carry their unit in the name and are nullable;
each cost family says where its figure came from, so measured and estimated numbers never mix silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from messplus.common import UserError

SCHEMA_VERSION = 1
META_KEY = b"messplus"  # Parquet key-value metadata: JSON with schema_version, zoo, synthetic, provenance

SOURCES = ("measured", "apportioned", "estimated", "imported", "synthetic", "none")
"""measured: metered per request; apportioned: metered per batch, split by tokens; estimated: a model of cost;
imported: taken from a published trace; synthetic: generated; none: not available (value is null)."""

COLUMNS: dict[str, pl.DataType] = {
    "bench": pl.String,  # benchmark / task name
    "doc_id": pl.String,  # request id within the bench (strings, so any source's ids fit)
    "text": pl.String,  # the request text the predictor sees
    "model": pl.String,  # zoo member name
    "satisfied": pl.Int8,  # 1 if the model satisfied the request, else 0
    "energy_j": pl.Float64,  # joules per request
    "latency_s": pl.Float64,  # seconds per request
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "cost_usd": pl.Float64,  # US dollars per request
    "cpu_energy_j": pl.Float64,  # joules per request of the host's CPU packages (RAPL), beside the GPUs' energy_j
    "dram_energy_j": pl.Float64,  # joules per request of the host's DRAM (RAPL)
    "energy_source": pl.String,  # one of SOURCES
    "latency_source": pl.String,
    "cost_usd_source": pl.String,
    "cpu_energy_source": pl.String,
    "dram_energy_source": pl.String,
}
REQUIRED = ("bench", "doc_id", "text", "model", "satisfied")
COSTS = ("energy_j", "latency_s", "prompt_tokens", "completion_tokens", "cost_usd", "cpu_energy_j", "dram_energy_j")
SOURCE_OF = {"energy_j": "energy_source", "latency_s": "latency_source", "cost_usd": "cost_usd_source",
             "cpu_energy_j": "cpu_energy_source", "dram_energy_j": "dram_energy_source"}  # fmt: skip
OPTIONAL = {"features": pl.List(pl.Float32)}  # per-request feature vector (synthetic traces)


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Add absent optional columns as nulls and order/cast columns as the schema says."""
    cols = []
    for name, dtype in COLUMNS.items():
        col = pl.col(name) if name in df.columns else pl.lit(None)
        cols.append(col.cast(dtype).alias(name))
    cols += [pl.col(n).cast(t) for n, t in OPTIONAL.items() if n in df.columns]
    return df.select(cols)


KEYS = ("bench", "doc_id", "model")  # one row per key; none may be empty
TOKENS = ("prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class CostKind:
    """A cost `sim sweep --cost` can minimise: the trace columns it sums per request, its unit per request, and
    the unit and scale its totals are reported in."""

    columns: tuple[str, ...]
    unit: str
    total_unit: str
    total_scale: float


# The one table of cost kinds: traces (which are complete), sim (--cost, V's unit) and analysis (units) read it.
COST_KINDS = {
    "energy_j": CostKind(("energy_j",), "J", "MJ", 1e-6),
    "latency_s": CostKind(("latency_s",), "s", "h", 1 / 3600),
    "cost_usd": CostKind(("cost_usd",), "USD", "USD", 1.0),
    "tokens": CostKind(TOKENS, "tokens", "M tokens", 1e-6),
}


def _first_row(df: pl.DataFrame, mask: pl.Expr) -> int | None:
    idx = df.with_row_index("_row").filter(mask).select("_row").head(1)
    return None if idx.is_empty() else int(idx.item())


def _is_text(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Null) or isinstance(dtype, pl.Categorical | pl.Enum)


def _check_types(df: pl.DataFrame, where: str) -> None:
    """Each column holds what the schema says it does: text as UTF-8 strings, numbers as numbers, features as a
    list of numbers (casting a string to a number, or bytes to text, would hide a broken file)."""
    for name in (*REQUIRED[:4], *SOURCE_OF.values()):
        dtype = df.schema.get(name)
        if dtype is not None and not _is_text(dtype) and not (name == "doc_id" and dtype.is_integer()):
            raise UserError(f"{where}: column {name!r} has type {dtype}, expected UTF-8 text")
    for name in COSTS:
        dtype = df.schema.get(name)
        if dtype is not None and dtype != pl.Null and not dtype.is_numeric():
            raise UserError(f"{where}: column {name!r} has type {dtype}, expected numbers")
    dtype = df.schema.get("features")
    inner = getattr(dtype, "inner", None)
    if dtype is not None and dtype != pl.Null and (inner is None or not inner.is_numeric()):
        raise UserError(f"{where}: column 'features' has type {dtype}, expected a list of numbers per row")


def _check_keys(df: pl.DataFrame, where: str) -> None:
    """No request without bench, doc_id, model or text; no empty name (an empty bench would be silently unusable)."""
    for name in REQUIRED[:4]:
        row = _first_row(df, pl.col(name).is_null())
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: empty value")
    for name in KEYS:
        row = _first_row(df, pl.col(name).cast(pl.String).str.strip_chars() == "")
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: empty name")
        row = _first_row(df, pl.col(name).cast(pl.String).str.contains(r"[\x00-\x1f\x7f]"))
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: {df[name][row]!r} holds a control character "
                            "(a NUL, a newline, ...); names must be printable")  # fmt: skip
    row = _first_row(df, pl.col("bench").cast(pl.String).str.contains("/", literal=True))
    if row is not None:  # a combined stream names its requests <bench>/<doc_id>: a '/' in a bench would be ambiguous
        raise UserError(f"{where}: column 'bench' row {row}: {df['bench'][row]!r} holds a '/', which streams of "
                        "several benches use to name requests; rename the bench")  # fmt: skip


def _check_satisfied(df: pl.DataFrame, where: str) -> None:
    sat = df["satisfied"]
    if not sat.dtype.is_numeric() and sat.dtype != pl.Boolean:
        raise UserError(f"{where}: column 'satisfied' has type {sat.dtype}, expected 0/1 integers")
    s = pl.col("satisfied").cast(pl.Float64)
    row = _first_row(df, s.is_null() | s.is_nan() | ~s.is_in([0.0, 1.0]))
    if row is not None:
        raise UserError(f"{where}: column 'satisfied' row {row}: value {df['satisfied'][row]!r} is not 0 or 1")


MAX_COST = 1e12  # per request: no request costs that much in J, USD, s or tokens, and sums over streams stay finite


def _check_costs(df: pl.DataFrame, where: str) -> None:
    """Costs are null (unknown) or finite, non-negative and at most MAX_COST; token counts are whole numbers."""
    for name in (c for c in COSTS if c in df.columns):
        c = pl.col(name).cast(pl.Float64)
        row = _first_row(df, c.is_nan())
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: NaN cost (write null for a missing cost)")
        row = _first_row(df, c.is_infinite())
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: infinite cost {df[name][row]}")
        row = _first_row(df, c < 0)
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: negative cost {df[name][row]}")
        row = _first_row(df, c > MAX_COST)
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: {df[name][row]} is above {MAX_COST:g} per "
                            "request, which no request costs (and a stream's sum of such costs overflows)")  # fmt: skip
        row = _first_row(df, c.round(0) != c) if name in TOKENS else None
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: {df[name][row]} is not a whole number of tokens")
    for name in (s for s in SOURCE_OF.values() if s in df.columns):
        row = _first_row(df, pl.col(name).is_not_null() & ~pl.col(name).cast(pl.String).is_in(SOURCES))
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: {df[name][row]!r} is not one of {', '.join(SOURCES)}")


def _check_features(df: pl.DataFrame, where: str) -> None:
    """Features, where present, are on every row, all of one length (at least 1) and finite."""
    if "features" not in df.columns or df["features"].null_count() == df.height:
        return
    f = pl.col("features")
    row = _first_row(df, f.is_null())
    if row is not None:
        raise UserError(f"{where}: column 'features' row {row}: no features, while other rows have them")
    lengths = df.select(f.list.len())["features"]
    width = int(lengths[0])
    if width == 0:
        raise UserError(f"{where}: column 'features' row 0: an empty feature list")
    row = _first_row(df, f.list.len() != width)
    if row is not None:
        raise UserError(f"{where}: column 'features' row {row}: {lengths[row]} values, while row 0 has {width}")
    row = _first_row(df, ~f.list.eval(pl.element().cast(pl.Float64).is_finite().fill_null(False)).list.all())
    if row is not None:
        raise UserError(f"{where}: column 'features' row {row}: a NaN, infinite or missing value")


def _check_rows(df: pl.DataFrame, where: str, models: tuple[str, ...] | None) -> None:
    """Every model of the zoo and only those; each (bench, doc_id, model) once; every request has every model."""
    if models is not None:
        row = _first_row(df, ~pl.col("model").cast(pl.String).is_in(models))
        if row is not None:
            raise UserError(
                f"{where}: column 'model' row {row}: unknown model {df['model'][row]!r} (zoo: {', '.join(models)})"
            )
    zoo = models or tuple(df["model"].unique(maintain_order=True))
    per = df.group_by(["bench", "doc_id"], maintain_order=True).agg(
        n=pl.len(), distinct=pl.col("model").n_unique()
    )  # one pass for both checks; the rows are searched only when one fails
    key = list(KEYS)
    if (per["n"] != per["distinct"]).any():
        row = _first_row(df, pl.struct(key).is_duplicated())
        b, d, m = (df[k][row] for k in key)
        raise UserError(f"{where}: row {row}: duplicated (bench, doc_id, model) = ({b}, {d}, {m})")
    short = per.filter(pl.col("distinct") < len(zoo)).head(1)
    if not short.is_empty():
        b, d = short.select("bench", "doc_id").row(0)
        have = set(df.filter(pl.col("bench") == b, pl.col("doc_id") == d)["model"])
        missing = next(m for m in zoo if m not in have)
        raise UserError(f"{where}: bench {b} doc_id {d}: no row for model {missing!r}")


def validate(df: pl.DataFrame, where: str, models: tuple[str, ...] | None = None) -> None:
    """Raise a one-line UserError naming file, column and row for the first problem found."""
    for name in REQUIRED:
        if name not in df.columns:
            raise UserError(
                f"{where}: missing column {name!r} (trace schema v{SCHEMA_VERSION} needs {', '.join(REQUIRED)})"
            )
    if df.is_empty():
        raise UserError(f"{where}: the trace holds no rows")
    _check_types(df, where)
    _check_keys(df, where)
    _check_satisfied(df, where)
    _check_costs(df, where)
    _check_features(df, where)
    _check_rows(df, where, models)
