"""Pieces every importer shares: reading tables safely and de-duplicating repeated requests."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from messplus.common import UserError, first_repeat
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
            header = (
                pl.read_csv(path, has_header=False, n_rows=1, infer_schema_length=0).row(0)
                if path.stat().st_size
                else ()
            )
            twice = first_repeat(header)
            if twice is not None:  # polars would keep the second as `<name>_duplicated_0`, unnoticed
                raise UserError(f"{path}: column {twice!r} appears twice in the header; keep one of them")
            return pl.read_csv(path, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise UserError(f"{path}: cannot read table ({str(e).splitlines()[0]})") from None
    raise UserError(f"{path}: unsupported table format {path.suffix!r} (use .csv or .parquet)")


def read_text(path: Path) -> str:
    """A UTF-8 text file's content (JSON, JSONL); another encoding is one line naming the file and the byte."""
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is not content
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); re-save it as UTF-8") from None


def numeric(df: pl.DataFrame, columns: list[str] | tuple[str, ...], where: str) -> pl.DataFrame:
    """Columns as Float64. Numbers and booleans pass; text is parsed, and a value that is not a number (say
    "high") is one line naming column and row instead of a cast error."""
    out = []
    for name in columns:
        dtype = df.schema[name]
        if dtype == pl.String:
            parsed = pl.col(name).str.strip_chars().cast(pl.Float64, strict=False)
            bad = df.with_row_index("_row").filter(pl.col(name).is_not_null() & parsed.is_null()).head(1)
            if not bad.is_empty():
                raise UserError(f"{where}: column {name!r} row {bad['_row'][0]}: {bad[name][0]!r} is not a number")
            out.append(parsed.alias(name))
        elif dtype.is_numeric() or dtype in (pl.Boolean, pl.Null):
            out.append(pl.col(name).cast(pl.Float64))
        else:
            raise UserError(f"{where}: column {name!r} has type {dtype}, expected numbers")
    return df.with_columns(out)


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
        f"{where}: {n_docs} request{'s' * (n_docs != 1)} appeared more than once ({n_rows} source rows); "
        f"kept one row each, correctness agreed, averaged {', '.join(costs) or 'no costs'}"
    )
    return merged.select(df.columns)
