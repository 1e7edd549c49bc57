"""`traces`: import published results, generate the demo zoo, inspect and validate trace files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from messplus.common import UserError, check_out_file, check_range, run_cli
from messplus.traces.io import Trace, load_benches, read_trace, trace_files, write_trace
from messplus.traces.zoo import resolve_names

DEFAULT_DIR = Path("data/traces")
MAX_SCALE = 100.0  # `traces synth --scale`: at most 100x the paper's request counts
app = typer.Typer(help="Trace files: the one format shared by collect, sim and analysis.", no_args_is_help=True)
imports = typer.Typer(help="Import published per-sample results into a trace file.", no_args_is_help=True)
app.add_typer(imports, name="import")
console = Console(width=140)

Models = Annotated[str | None, typer.Option("--models", help="Comma list of model names, cheapest first.")]
ZooFile = Annotated[str | None, typer.Option("--zoo", help="Zoo file (TOML/YAML) naming the models, cheapest first.")]


def _out(path: Path | None, name: str) -> Path:
    """The trace file to write, checked before any work: a .parquet name in a writable place (an existing trace
    there is replaced atomically)."""
    path = path if path is not None else DEFAULT_DIR / f"{name}.parquet"
    if path.suffix != ".parquet" and not path.is_dir():
        raise UserError(f"--out {path}: a trace file name must end in .parquet")
    check_out_file(path)
    return path


def _finish(trace: Trace, report: list[str], out: Path) -> None:
    for line in report:
        console.print(f"  {line}", highlight=False)
    write_trace(trace, out)
    console.print(f"wrote {out}")


@imports.command("messplus")
def import_messplus_cmd(
    paths: Annotated[list[Path], typer.Argument(help="JSON lists, folders of CSV batches, or folders of either.")],
    out: Annotated[
        Path | None, typer.Option(help="Trace file to write (default: data/traces/messplus.parquet).")
    ] = None,
    models: Models = None,
    zoo: ZooFile = None,
) -> None:
    """MESS+ reference-code traces (label_/energy_consumption_/inference_time_<tier> columns)."""
    from messplus.traces.importers.messplus import import_messplus

    out = _out(out, "messplus")
    names = resolve_names(models, zoo, []) or None
    _finish(*import_messplus(paths, names), out)


@imports.command("lmeval")
def import_lmeval_cmd(
    folders: Annotated[list[Path], typer.Argument(help="One lm-eval --output_path folder per model, cheapest first.")],
    out: Annotated[Path | None, typer.Option(help="Trace file to write (default: data/traces/lmeval.parquet).")] = None,
    task: Annotated[
        list[str] | None, typer.Option(help="Task(s) to import (default: all tasks every model has).")
    ] = None,
    metric: Annotated[
        str, typer.Option(help="Per-sample metric read as satisfied: auto = acc_norm, else acc, else exact_match.")
    ] = "auto",
    filter_key: Annotated[
        str | None, typer.Option("--filter", help="lm-eval filter to read (default: the first logged).")
    ] = None,
    costs: Annotated[
        Path | None, typer.Option(help="CSV/Parquet with model[,doc_id] and energy_j/latency_s/cost_usd.")
    ] = None,
    models: Models = None,
    zoo: ZooFile = None,
) -> None:
    """lm-eval-harness --log_samples outputs, merged into one trace (no cost unless --costs)."""
    from messplus.traces.importers.lmeval import import_lmeval

    out = _out(out, "lmeval")
    names = resolve_names(models, zoo, []) or None
    _finish(*import_lmeval(folders, names, task, metric, filter_key, costs), out)


@imports.command("wide")
def import_wide_cmd(
    path: Annotated[Path, typer.Argument(help="CSV or Parquet table, one correctness column per model.")],
    out: Annotated[
        Path | None, typer.Option(help="Trace file to write (default: data/traces/<file stem>.parquet).")
    ] = None,
    id_col: Annotated[str, typer.Option(help="Request id column.")] = "sample_id",
    text_col: Annotated[str, typer.Option(help="Request text column.")] = "prompt",
    bench_col: Annotated[str, typer.Option(help="Benchmark name column.")] = "eval_name",
    bench: Annotated[str | None, typer.Option(help="Benchmark name for every row (overrides --bench-col).")] = None,
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma list of models to keep, cheapest first (default: all, by mean cost)."),
    ] = None,
    zoo: ZooFile = None,
) -> None:
    """RouterBench-style wide tables with '<model>|total_cost' dollar columns."""
    from messplus.traces.importers.wide import import_wide

    out = _out(out, path.stem)
    names = resolve_names(models, zoo, []) or None
    _finish(*import_wide(path, names, id_col, text_col, bench_col, bench), out)


@app.command()
def synth(
    out: Annotated[Path | None, typer.Option(help="Trace file to write (default: data/traces/synth.parquet).")] = None,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    bench: Annotated[list[str] | None, typer.Option(help="Benchmarks to generate (default: the paper's 8).")] = None,
    n_features: Annotated[int, typer.Option(help="Per-request feature dimension.")] = 8,
    scale: Annotated[
        float, typer.Option(help="Fraction of the paper's request counts to generate, in (0, 100].")
    ] = 1.0,
) -> None:
    """Calibrated synthetic 3-model zoo from the MESS+ paper's Table 2 (Llama 1B/8B/70B)."""
    from messplus.traces.synth import PAPER_TABLE2, synth_trace

    unknown = [b for b in bench or [] if b not in PAPER_TABLE2]
    if unknown:
        raise UserError(f"unknown bench {unknown[0]!r} (synth knows: {', '.join(PAPER_TABLE2)})")
    twice = [b for b in bench or [] if (bench or []).count(b) > 1]
    if twice:
        raise UserError(f"--bench {twice[0]} is given twice")
    check_range(scale, "--scale", 0, MAX_SCALE, lo_open=True)
    check_range(n_features, "--n-features", 1)
    check_range(seed, "--seed", 0)
    out = _out(out, "synth")
    write_trace(synth_trace(bench, seed, n_features, scale), out)
    console.print(f"wrote {out}")


def _info_table(path: Path, trace: Trace) -> Table:
    df = trace.df
    cost_cols = [c for c in ("energy_j", "latency_s", "cost_usd") if df[c].null_count() < df.height]
    flag = " (synthetic trace)" if trace.synthetic else ""
    table = Table(title=f"{path}{flag}", title_justify="left", caption="sources: e=energy l=latency c=cost_usd")
    for col in ("bench", "requests", "model", "accuracy %", *[f"mean {c}" for c in cost_cols], "sources"):
        table.add_column(col, justify="right" if col not in ("bench", "model", "sources") else "left")
    rank = pl.DataFrame({"model": list(trace.zoo.names), "_m": range(len(trace.zoo.names))})
    src = [
        pl.col(c).unique().drop_nulls().sort().str.join("/").alias(c)
        for c in ("energy_source", "latency_source", "cost_usd_source")
    ]
    stats = (
        df.group_by(["bench", "model"], maintain_order=True)
        .agg(pl.len().alias("n"), pl.col("satisfied").mean().alias("acc"), *[pl.col(c).mean() for c in cost_cols], *src)
        .join(rank, on="model")
        .sort(["bench", "_m"], maintain_order=True)
    )
    for row in stats.iter_rows(named=True):
        sources = " ".join(f"{k[0]}:{row[k]}" for k in ("energy_source", "latency_source", "cost_usd_source") if row[k])
        costs = [f"{row[c]:.4g}" if row[c] is not None else "-" for c in cost_cols]
        table.add_row(row["bench"], str(row["n"]), row["model"], f"{100 * row['acc']:.2f}", *costs, sources)
    return table


@app.command()
def info(path: Annotated[Path, typer.Argument(help="Trace file or folder of trace files.")]) -> None:
    """Requests and models per bench, accuracy and mean cost per model, and where costs came from."""
    for f in trace_files(path):
        console.print(_info_table(f, read_trace(f)))


@app.command()
def validate(path: Annotated[Path, typer.Argument(help="Trace file or folder of trace files.")]) -> None:
    """Check files against trace schema v1 and, for a folder, that its files can be replayed together (one zoo, one
    kind of features, each bench in one file); the first problem is reported as one line, exit code 2."""
    by_file: dict[str, Trace] = {t.provenance["source"]: t for t in load_benches(path).values()}
    for f, trace in by_file.items():
        console.print(f"{f}: valid, {len(trace.benches)} benches, {len(trace.zoo.names)} models")


def main() -> None:
    run_cli(app)
