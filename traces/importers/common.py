"""Pieces every importer shares: reading tables safely and de-duplicating repeated requests."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from messplus.common import UserError
from messplus.traces.io import refuse_pickle


def read_table(path: Path) -> pl.DataFrame:
    """CSV (quoted fields may span lines) or Parquet; pickles are refused."""
    refuse_pickle(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path)
        if path.suffix == ".csv":
            return pl.read_csv(path, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise UserError(f"{path}: cannot read table ({str(e).splitlines()[0]})") from None
    raise UserError(f"{path}: unsupported table format {path.suffix!r} (use .csv or .parquet)")


def dedupe_long(df: pl.DataFrame, where: str, report: list[str]) -> pl.DataFrame:
    """Merge repeated (bench, doc_id, model) rows: correctness must agree, measured costs are averaged."""
    key = ["bench", "doc_id", "model"]
    dup = df.filter(pl.struct(key).is_duplicated())
    if dup.is_empty():
        return df
    bad = dup.group_by(key).agg(pl.col("satisfied").drop_nulls().n_unique().alias("n")).filter(pl.col("n") > 1)
    if not bad.is_empty():
        b, d, m, _ = bad.sort(key).row(0)
        raise UserError(f"{where}: bench {b} doc_id {d}: repeated rows disagree on whether {m!r} satisfied it")
    costs = [c for c in ("energy_j", "latency_s", "cost_usd") if c in df.columns]
    firsts = [c for c in df.columns if c not in key and c not in costs]
    merged = df.group_by(key, maintain_order=True).agg(
        [pl.col(c).drop_nulls().first() for c in firsts] + [pl.col(c).mean() for c in costs]
    )
    n_docs = dup.select(["bench", "doc_id"]).unique().height
    n_rows = dup.height // dup["model"].n_unique()
    report.append(
        f"{where}: {n_docs} requests appeared more than once ({n_rows} source rows); "
        f"kept one row each, correctness agreed, averaged {', '.join(costs) or 'no costs'}"
    )
    return merged.select(df.columns)
