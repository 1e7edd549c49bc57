"""MESS+ reference-code traces: one JSON list (bare NaN tokens) or a folder of CSV batches per benchmark.

Some benchmarks hold a doc more than once (the reference's LogiQA folder three passes over its 651 docs, Social IQa
every sample twice). The reference simulator replays every row as a request; `repeats="keep"` does the same, the
k-th row of a doc (k >= 2) becoming request `<doc_id>#k`, while "merge" (the default) keeps one request per doc with
its measured costs averaged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import polars as pl

from messplus.common import UserError
from messplus.traces.importers.common import dedupe_long, numeric, read_table, read_text
from messplus.traces.io import Trace
from messplus.traces.zoo import Zoo

TIERS = ("xsmall", "small", "medium", "large", "xlarge")  # the reference code's size order
Repeats = Literal["merge", "keep"]


def _read_records(path: Path) -> pl.DataFrame:
    """A JSON list of record objects, or a folder of CSV batches, as one table."""
    if path.suffix == ".json":
        try:
            records = json.loads(read_text(path))  # Python's json accepts the bare NaN tokens
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
        if not isinstance(records, list) or not records:
            raise UserError(f"{path}: expected a non-empty JSON list of records")
        bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
        if bad is not None:
            raise UserError(f"{path}: record {bad} is a JSON {type(records[bad]).__name__}, expected an object")
        try:
            return pl.DataFrame(records, infer_schema_length=None)
        except pl.exceptions.PolarsError as e:
            raise UserError(f"{path}: records do not form a table ({str(e).splitlines()[0]})") from None
    batches = sorted(path.glob("*.csv"))
    if not batches:
        raise UserError(f"{path}: no .json file or folder of .csv batches")
    try:
        return pl.concat([read_table(b) for b in batches], how="diagonal_relaxed")
    except pl.exceptions.PolarsError as e:
        raise UserError(f"{path}: CSV batches do not fit together ({str(e).splitlines()[0]})") from None


def _bench_sources(path: Path) -> list[Path]:
    """A .json file, a folder of CSV batches, or a folder holding several of those."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{path}: not found")
    if any(path.glob("*.csv")):
        return [path]
    found = sorted(path.glob("*.json")) + sorted(p for p in path.iterdir() if p.is_dir() and any(p.glob("*.csv")))
    if not found:
        raise UserError(f"{path}: holds no MESS+ traces (*.json lists or folders of *.csv batches)")
    return found


def _tiers(df: pl.DataFrame, where: str) -> list[str]:
    found = [c.removeprefix("label_") for c in df.columns if c.startswith("label_")]
    if not found:
        raise UserError(f"{where}: missing columns 'label_<tier>' (MESS+ format)")
    unknown = [t for t in found if t not in TIERS]
    if unknown:
        raise UserError(
            f"{where}: unknown tier {unknown[0]!r} in column 'label_{unknown[0]}' (known: {', '.join(TIERS)})"
        )
    return sorted(found, key=TIERS.index)


def _doc_ids(df: pl.DataFrame, where: str) -> pl.DataFrame:
    """doc_id as the reference code writes it (a float such as 12.0) -> "12"; a fraction or a gap is refused."""
    df = numeric(df, ["doc_id"], where)
    d = pl.col("doc_id")
    bad = df.with_row_index("_row").filter(d.is_null() | d.is_nan() | (d.round(0) != d)).head(1)
    if not bad.is_empty():
        raise UserError(f"{where}: column 'doc_id' row {bad['_row'][0]}: {bad['doc_id'][0]!r} is not a whole number")
    return df.with_columns(d.cast(pl.Int64).cast(pl.String))


def _tier_rows(df: pl.DataFrame, tier: str, name: str, bench: str, where: str, report: list[str]) -> pl.DataFrame:
    """One tier's columns as long rows of model `name`."""
    for col in (f"energy_consumption_{tier}", f"inference_time_{tier}"):
        if col not in df.columns:
            raise UserError(f"{where}: missing column {col!r}")
    metric = next((c for c in (f"acc_norm_{tier}", f"acc_{tier}") if c in df.columns), None)
    if metric is not None:
        disagree = df.filter(pl.col(metric) != pl.col(f"label_{tier}")).height
        if disagree:
            report.append(f"{where}: {disagree} rows where {metric} differs from label_{tier}; used label_{tier}")
    return df.select(
        pl.lit(bench).alias("bench"),
        pl.col("doc_id"),
        pl.col("input_text").alias("text"),
        pl.lit(name).alias("model"),
        pl.col(f"label_{tier}").alias("satisfied"),
        pl.col(f"energy_consumption_{tier}").fill_nan(None).alias("energy_j"),
        pl.col(f"inference_time_{tier}").fill_nan(None).alias("latency_s"),
    )


def _passes(df: pl.DataFrame, where: str, report: list[str]) -> pl.DataFrame:
    """Every row its own request: a doc's k-th row (k >= 2, in file order) becomes doc `<doc_id>#k`."""
    k = pl.int_range(pl.len()).over("doc_id") + 1
    df = df.with_columns(pl.when(k > 1).then(pl.col("doc_id") + "#" + k.cast(pl.String)).otherwise("doc_id"))
    n = df.filter(pl.col("doc_id").str.contains("#", literal=True)).height
    if n:
        report.append(f"{where}: kept {n} repeated rows as requests of their own (doc_id suffixed #2, #3, ...)")
    return df


def _one_bench(src: Path, names: list[str] | None, repeats: Repeats, report: list[str]) -> tuple[pl.DataFrame, list]:
    """One bench's long rows and its model names (the tiers', or `names`)."""
    where = str(src)
    df = _read_records(src)
    tiers = _tiers(df, where)
    names = names or tiers
    if len(names) != len(tiers):
        raise UserError(f"{where}: {len(names)} model names given for {len(tiers)} tiers ({', '.join(tiers)})")
    for col in ("doc_id", "input_text"):
        if col not in df.columns:
            raise UserError(f"{where}: missing column {col!r} (MESS+ format)")
    if df.schema["input_text"] not in (pl.String, pl.Null):
        raise UserError(f"{where}: column 'input_text' has type {df.schema['input_text']}, expected text")
    cols = [c for c in df.columns if c.startswith(("label_", "acc_", "energy_consumption_", "inference_time_"))]
    df = _doc_ids(numeric(df, cols, where), where)
    if repeats == "keep":
        df = _passes(df, where, report)
    bench = df["benchmark_name"].cast(pl.String)[0] if "benchmark_name" in df.columns else src.stem
    parts = [_tier_rows(df, t, n, bench, where, report) for t, n in zip(tiers, names, strict=True)]
    long = dedupe_long(pl.concat(parts), where, report)
    long = long.with_columns(
        pl.when(pl.col(c).is_null()).then(pl.lit("none")).otherwise(pl.lit("imported")).alias(s)
        for c, s in (("energy_j", "energy_source"), ("latency_s", "latency_source"))
    )
    n_req = long["doc_id"].n_unique()
    report.append(f"{where}: bench {bench}, {n_req} requests x {len(names)} models")
    return long, names


def import_messplus(paths: list[Path], names: list[str] | None, repeats: Repeats = "merge") -> tuple[Trace, list[str]]:
    report: list[str] = []
    frames, zoo_names = [], None
    for path in paths:
        for src in _bench_sources(path):
            long, got = _one_bench(src, names, repeats, report)
            if zoo_names is not None and got != zoo_names:
                raise UserError(f"{src}: tiers {got} differ from earlier files' {zoo_names}")
            zoo_names = got
            frames.append(long)
    trace = Trace(
        pl.concat(frames),
        Zoo.from_names(zoo_names),
        provenance={"importer": "messplus", "source": ", ".join(map(str, paths)), "repeats": repeats},
    )
    return trace, report
