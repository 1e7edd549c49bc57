"""Trace schema v1: the long-format contract between collect, sim and analysis.

One row per (bench, doc_id, model). Costs carry their unit in the name and are nullable;
each cost family says where its figure came from, so measured and estimated numbers never mix silently.
"""

from __future__ import annotations

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
    "energy_source": pl.String,  # one of SOURCES
    "latency_source": pl.String,
    "cost_usd_source": pl.String,
}
REQUIRED = ("bench", "doc_id", "text", "model", "satisfied")
COSTS = ("energy_j", "latency_s", "prompt_tokens", "completion_tokens", "cost_usd")
SOURCE_OF = {"energy_j": "energy_source", "latency_s": "latency_source", "cost_usd": "cost_usd_source"}
OPTIONAL = {"features": pl.List(pl.Float32)}  # per-request feature vector (synthetic traces)


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Add absent optional columns as nulls and order/cast columns as the schema says."""
    cols = []
    for name, dtype in COLUMNS.items():
        col = pl.col(name) if name in df.columns else pl.lit(None)
        cols.append(col.cast(dtype).alias(name))
    cols += [pl.col(n).cast(t) for n, t in OPTIONAL.items() if n in df.columns]
    return df.select(cols)


def _first_row(df: pl.DataFrame, mask: pl.Expr) -> int | None:
    idx = df.with_row_index("_row").filter(mask).select("_row").head(1)
    return None if idx.is_empty() else int(idx.item())


def validate(df: pl.DataFrame, where: str, models: tuple[str, ...] | None = None) -> None:
    """Raise a one-line UserError naming file, column and row for the first problem found."""
    for name in REQUIRED:
        if name not in df.columns:
            raise UserError(
                f"{where}: missing column {name!r} (trace schema v{SCHEMA_VERSION} needs {', '.join(REQUIRED)})"
            )
    for name in REQUIRED[:4]:
        row = _first_row(df, pl.col(name).is_null())
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: empty value")
    sat = df["satisfied"]
    if not sat.dtype.is_numeric() and sat.dtype != pl.Boolean:
        raise UserError(f"{where}: column 'satisfied' has type {sat.dtype}, expected 0/1 integers")
    s = pl.col("satisfied").cast(pl.Float64)
    row = _first_row(df, s.is_null() | s.is_nan() | ~s.is_in([0.0, 1.0]))
    if row is not None:
        raise UserError(f"{where}: column 'satisfied' row {row}: value {df['satisfied'][row]!r} is not 0 or 1")
    for name in COSTS:
        if name not in df.columns:
            continue
        c = pl.col(name).cast(pl.Float64)
        row = _first_row(df, c.is_nan())
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: NaN cost (write null for a missing cost)")
        row = _first_row(df, c < 0)
        if row is not None:
            raise UserError(f"{where}: column {name!r} row {row}: negative cost {df[name][row]}")
    for name in SOURCE_OF.values():
        if name in df.columns:
            row = _first_row(df, pl.col(name).is_not_null() & ~pl.col(name).is_in(SOURCES))
            if row is not None:
                raise UserError(
                    f"{where}: column {name!r} row {row}: {df[name][row]!r} is not one of {', '.join(SOURCES)}"
                )
    if models is not None:
        row = _first_row(df, ~pl.col("model").is_in(models))
        if row is not None:
            raise UserError(
                f"{where}: column 'model' row {row}: unknown model {df['model'][row]!r} (zoo: {', '.join(models)})"
            )
    key = ["bench", "doc_id", "model"]
    row = _first_row(df, pl.struct(key).is_duplicated())
    if row is not None:
        b, d, m = (df[k][row] for k in key)
        raise UserError(f"{where}: row {row}: duplicated (bench, doc_id, model) = ({b}, {d}, {m})")
    zoo = models or tuple(df["model"].unique(maintain_order=True))
    counts = df.group_by(["bench", "doc_id"], maintain_order=True).agg(pl.col("model"))
    short = counts.filter(pl.col("model").list.len() < len(zoo)).head(1)
    if not short.is_empty():
        b, d, have = short.row(0)
        missing = next(m for m in zoo if m not in have)
        raise UserError(f"{where}: bench {b} doc_id {d}: no row for model {missing!r}")
