"""Wide tables (RouterBench style): one correctness column per model plus `<model>|total_cost` in dollars.

Empty-cell rule: repeated request ids are first merged cell by cell (correctness must agree, costs are
averaged); a request still missing any model's correctness or cost is dropped, and the report counts them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl

from messplus.common import UserError
from messplus.traces.importers.common import dedupe_long, numeric, read_table
from messplus.traces.io import Trace
from messplus.traces.zoo import Zoo

COST_SUFFIX = "|total_cost"


def _unwrap(text: str) -> str:
    """RouterBench stores prompts as a Python list literal of turns; keep the turns' text."""
    if text.startswith("[") and text.endswith("]"):
        try:
            turns = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(turns, list) and all(isinstance(t, str) for t in turns):
            return "\n".join(turns)
    return text


def _models(df: pl.DataFrame, names: list[str] | None, where: str) -> list[str]:
    """The models to import: those with a correctness and a cost column, or the `names` asked for among them. A
    cost column without its correctness column is refused (a misspelt or dropped model, not one to skip)."""
    orphan = next(
        (c for c in df.columns if c.endswith(COST_SUFFIX) and c.removesuffix(COST_SUFFIX) not in df.columns), None
    )
    if orphan is not None:
        model = orphan.removesuffix(COST_SUFFIX)
        raise UserError(
            f"{where}: column {orphan!r} has no correctness column {model!r}; add it or drop the cost column"
        )
    found = [
        c.removesuffix(COST_SUFFIX)
        for c in df.columns
        if c.endswith(COST_SUFFIX) and c.removesuffix(COST_SUFFIX) in df.columns
    ]
    if not found:
        raise UserError(f"{where}: no model columns (need '<model>' and '<model>{COST_SUFFIX}' pairs)")
    missing = [n for n in names or () if n not in found]
    if missing:
        raise UserError(f"{where}: unknown model {missing[0]!r} (table has: {', '.join(found)})")
    return names or found


def import_wide(
    path: Path,
    names: list[str] | None,
    id_col: str = "sample_id",
    text_col: str = "prompt",
    bench_col: str = "eval_name",
    bench: str | None = None,
) -> tuple[Trace, list[str]]:
    """The table's models (or `names`, cheapest first) as a long trace; the report says what was merged and
    dropped."""
    where = str(path)
    df = read_table(path)
    for col in (id_col, text_col):
        if col not in df.columns:
            raise UserError(f"{where}: missing column {col!r} (set it with --id-col / --text-col)")
    if bench is None and bench_col not in df.columns:
        raise UserError(f"{where}: missing column {bench_col!r}; name the benchmark with --bench")
    chosen = _models(df, names, where)
    df = numeric(df, [c for m in chosen for c in (m, m + COST_SUFFIX)], where)
    bench_expr = pl.lit(bench) if bench is not None else pl.col(bench_col).cast(pl.String)
    report: list[str] = []
    long = pl.concat(
        df.select(
            bench_expr.alias("bench"),
            pl.col(id_col).cast(pl.String).alias("doc_id"),
            pl.col(text_col).cast(pl.String).map_elements(_unwrap, return_dtype=pl.String).alias("text"),
            pl.lit(m).alias("model"),
            pl.col(m).cast(pl.Float64).alias("satisfied"),
            pl.col(m + COST_SUFFIX).cast(pl.Float64).fill_nan(None).alias("cost_usd"),
        )
        for m in chosen
    )
    long = dedupe_long(long, where, report)
    empty = long.filter(pl.col("satisfied").is_null() | pl.col("cost_usd").is_null())
    if not empty.is_empty():
        per_model = empty.group_by("model", maintain_order=True).len()
        detail = ", ".join(f"{m}: {n}" for m, n in per_model.iter_rows())
        drop = empty.select(["bench", "doc_id"]).unique()
        long = long.join(drop, on=["bench", "doc_id"], how="anti")
        report.append(
            f"{where}: empty cells after merging repeats ({detail}); dropped {drop.height} incomplete requests"
        )
    if long.is_empty():
        raise UserError(f"{where}: no request has every model's correctness and cost")
    if not names:  # cost order: cheapest mean cost first
        names = long.group_by("model").agg(pl.col("cost_usd").mean()).sort(["cost_usd", "model"])["model"].to_list()
    long = long.with_columns(pl.lit("imported").alias("cost_usd_source"))
    n_req = long.select(["bench", "doc_id"]).unique().height
    report.append(f"{where}: {n_req} requests x {len(names)} models, models in cost order: {', '.join(names)}")
    return Trace(long, Zoo.from_names(names), provenance={"importer": "wide", "source": str(path)}), report
