"""MESS+ reference-code traces: one JSON list (bare NaN tokens) or a folder of CSV batches per benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from messplus.common import UserError
from messplus.traces.importers.common import dedupe_long, read_table
from messplus.traces.io import Trace
from messplus.traces.zoo import Zoo

TIERS = ("xsmall", "small", "medium", "large", "xlarge")  # the reference code's size order


def _read_records(path: Path) -> pl.DataFrame:
    if path.suffix == ".json":
        try:
            records = json.loads(path.read_text())  # Python's json accepts the bare NaN tokens
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
        if not isinstance(records, list) or not records:
            raise UserError(f"{path}: expected a non-empty JSON list of records")
        return pl.DataFrame(records, infer_schema_length=None)
    batches = sorted(path.glob("*.csv"))
    if not batches:
        raise UserError(f"{path}: no .json file or folder of .csv batches")
    return pl.concat([read_table(b) for b in batches], how="diagonal_relaxed")


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


def _one_bench(src: Path, names: list[str] | None, report: list[str]) -> tuple[pl.DataFrame, list[str]]:
    where = str(src)
    df = _read_records(src)
    tiers = _tiers(df, where)
    names = names or tiers
    if len(names) != len(tiers):
        raise UserError(f"{where}: {len(names)} model names given for {len(tiers)} tiers ({', '.join(tiers)})")
    for col in ("doc_id", "input_text"):
        if col not in df.columns:
            raise UserError(f"{where}: missing column {col!r} (MESS+ format)")
    bench = df["benchmark_name"][0] if "benchmark_name" in df.columns else src.stem
    parts = []
    for tier, name in zip(tiers, names, strict=True):
        for col in (f"energy_consumption_{tier}", f"inference_time_{tier}"):
            if col not in df.columns:
                raise UserError(f"{where}: missing column {col!r}")
        metric = next((c for c in (f"acc_norm_{tier}", f"acc_{tier}") if c in df.columns), None)
        if metric is not None:
            disagree = df.filter(pl.col(metric) != pl.col(f"label_{tier}")).height
            if disagree:
                report.append(f"{where}: {disagree} rows where {metric} differs from label_{tier}; used label_{tier}")
        parts.append(
            df.select(
                pl.lit(bench).alias("bench"),
                pl.col("doc_id").cast(pl.Float64).cast(pl.Int64).cast(pl.String),
                pl.col("input_text").alias("text"),
                pl.lit(name).alias("model"),
                pl.col(f"label_{tier}").alias("satisfied"),
                pl.col(f"energy_consumption_{tier}").fill_nan(None).alias("energy_j"),
                pl.col(f"inference_time_{tier}").fill_nan(None).alias("latency_s"),
            )
        )
    long = pl.concat(parts)
    long = dedupe_long(long, where, report)
    long = long.with_columns(
        pl.when(pl.col(c).is_null()).then(pl.lit("none")).otherwise(pl.lit("imported")).alias(s)
        for c, s in (("energy_j", "energy_source"), ("latency_s", "latency_source"))
    )
    n_req = long["doc_id"].n_unique()
    report.append(f"{where}: bench {bench}, {n_req} requests x {len(names)} models")
    return long, names


def import_messplus(paths: list[Path], names: list[str] | None) -> tuple[Trace, list[str]]:
    report: list[str] = []
    frames, zoo_names = [], None
    for path in paths:
        for src in _bench_sources(path):
            long, got = _one_bench(src, names, report)
            if zoo_names is not None and got != zoo_names:
                raise UserError(f"{src}: tiers {got} differ from earlier files' {zoo_names}")
            zoo_names = got
            frames.append(long)
    trace = Trace(
        pl.concat(frames),
        Zoo.from_names(zoo_names),
        provenance={"importer": "messplus", "source": ", ".join(map(str, paths))},
    )
    return trace, report
