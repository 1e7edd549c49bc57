"""lm-eval-harness `--log_samples` outputs (samples_<task>_<date>.jsonl): one folder per model, merged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from messplus.common import UserError
from messplus.traces.importers.common import numeric, read_table, read_text
from messplus.traces.io import Trace
from messplus.traces.zoo import Zoo

METRIC_PREFERENCE = ("acc_norm", "acc", "exact_match")  # "auto" takes the first one a task logs
SAMPLES = re.compile(r"samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[\d\-\.]+)\.jsonl$")


def context(arguments: object) -> str:
    """The rendered request: first request's first argument, in either of lm-eval's layouts; anything else is a
    ValueError."""
    try:
        if isinstance(arguments, dict):  # {"gen_args_0": {"arg_0": ctx, ...}, ...}
            return str(arguments["gen_args_0"]["arg_0"])
        if isinstance(arguments, list):  # [[ctx, continuation], ...]
            return str(arguments[0][0])
    except (KeyError, IndexError, TypeError):
        pass
    raise ValueError(f"'arguments' is neither lm-eval layout: {str(arguments)[:60]!r}")


def pick_metric(sample: dict, metric: str, where: str) -> str:
    """`auto` takes the first of METRIC_PREFERENCE that the task logs."""
    if metric != "auto":
        return metric
    found = next((m for m in METRIC_PREFERENCE if m in sample), None)
    if found is None:
        raise UserError(f"{where}: none of {', '.join(METRIC_PREFERENCE)} logged; pick one with --metric")
    return found


def _records(path: Path) -> list[dict]:
    """The JSON object on each non-empty line of a samples file."""
    rows = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}: line {lineno} is not valid JSON (truncated file?)") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {lineno} is a JSON {type(row).__name__}, expected an object (one sample)")
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no samples")
    return rows


def _sample_row(r: dict, metric: str, where: str) -> tuple[str, str, object]:
    """(doc_id, text, metric value) of one sample; a missing field or an odd `arguments` is one line."""
    for key in ("doc_id", "arguments", metric):
        if key not in r:
            raise UserError(f"{where}: no {key!r} field")
    try:
        return str(r["doc_id"]), context(r["arguments"]), r[metric]
    except ValueError as e:
        raise UserError(f"{where}: {e}") from None


def _as_text(value: object) -> str | None:
    """A logged metric value as text for `numeric` to parse (booleans as 0/1), so that one bad value is reported
    with its row."""
    if isinstance(value, bool):
        return str(int(value))
    return None if value is None else str(value)


def read_samples(path: Path, metric: str = "auto", filter_key: str | None = None) -> tuple[pl.DataFrame, str]:
    """One samples file -> (doc_id, text, satisfied) rows and the metric used."""
    rows = _records(path)
    filters = list(dict.fromkeys(str(r.get("filter", "none")) for r in rows))
    key = filter_key or filters[0]
    if key not in filters:
        raise UserError(f"{path}: no samples for filter {key!r} (has: {', '.join(filters)})")
    rows = [r for r in rows if str(r.get("filter", "none")) == key]
    metric = pick_metric(rows[0], metric, str(path))
    parsed = [_sample_row(r, metric, f"{path}: sample {i}") for i, r in enumerate(rows)]
    df = pl.DataFrame(
        {
            "doc_id": [d for d, _, _ in parsed],
            "text": [t for _, t, _ in parsed],
            "satisfied": pl.Series([_as_text(v) for _, _, v in parsed], dtype=pl.String),
        }
    )
    return numeric(df, ["satisfied"], f"{path} (metric {metric})"), metric


def _samples_by_task(folder: Path) -> dict[str, Path]:
    """Newest samples file per task below a model's output folder."""
    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("samples_*.jsonl")):
        m = SAMPLES.search(p.name)
        if m and (m["task"] not in found or p.name > found[m["task"]].name):
            found[m["task"]] = p
    if not found:
        raise UserError(f"{folder}: no lm-eval samples_<task>_<date>.jsonl files (run lm-eval with --log_samples)")
    return found


def _apply_costs(long: pl.DataFrame, costs: Path, report: list[str]) -> pl.DataFrame:
    """Per-request costs (keyed by model and doc_id) are imported; per-model constants are estimates."""
    table = read_table(costs)
    cols = [c for c in ("energy_j", "latency_s", "cost_usd") if c in table.columns]
    if "model" not in table.columns or not cols:
        raise UserError(f"{costs}: cost table needs a 'model' column and one of energy_j, latency_s, cost_usd")
    per_request = "doc_id" in table.columns
    on = ["model", "doc_id"] if per_request else ["model"]
    table = numeric(table, cols, str(costs)).select([pl.col(c).cast(pl.String) for c in on] + cols)
    long = long.join(table, on=on, how="left")
    label = "imported" if per_request else "estimated"
    src = {"energy_j": "energy_source", "latency_s": "latency_source", "cost_usd": "cost_usd_source"}
    long = long.with_columns(
        pl.when(pl.col(c).is_null()).then(pl.lit("none")).otherwise(pl.lit(label)).alias(src[c]) for c in cols
    )
    report.append(f"{costs}: {', '.join(cols)} {'per request' if per_request else 'per model'} ({label})")
    return long


def import_lmeval(
    folders: list[Path],
    names: list[str] | None,
    tasks: list[str] | None = None,
    metric: str = "auto",
    filter_key: str | None = None,
    costs: Path | None = None,
) -> tuple[Trace, list[str]]:
    """Folders are given cheapest model first; names default to the folder names."""
    names = names or [f.name for f in folders]
    if len(names) != len(folders):
        raise UserError(f"{len(names)} model names for {len(folders)} folders")
    report: list[str] = []
    per_model = [_samples_by_task(f) for f in folders]
    common = set.intersection(*(set(p) for p in per_model))
    tasks = tasks or sorted(common)
    for name, found in zip(names, per_model, strict=True):
        missing = [t for t in tasks if t not in found]
        if missing:
            raise UserError(f"model {name}: no samples for task {missing[0]!r} (has: {', '.join(sorted(found))})")
    frames = []
    for task in tasks:
        for name, found in zip(names, per_model, strict=True):
            df, used = read_samples(found[task], metric, filter_key)
            frames.append(df.with_columns(pl.lit(task).alias("bench"), pl.lit(name).alias("model")))
            report.append(f"{found[task]}: {df.height} samples of {task} for {name}, satisfied = {used}")
    long = pl.concat(frames)
    if costs is not None:
        long = _apply_costs(long, costs, report)
    trace = Trace(
        long,
        Zoo.from_names(names),
        provenance={"importer": "lmeval", "metric": metric, "source": ", ".join(map(str, folders))},
    )
    return trace, report
