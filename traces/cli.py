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
from messplus.traces.schema import COST_KINDS
from messplus.traces.zoo import bundled_zoos, comma_list, load_zoo, resolve_names

DEFAULT_DIR = Path("data/traces")
MAX_SCALE = 100.0  # `traces synth --scale`: at most 100x the paper's request counts
MAX_FEATURES = 65_536  # `traces synth --n-features`: a wider vector per request is no demo, and exhausts memory
app = typer.Typer(help="Trace files: the one format shared by collect, sim and analysis.", no_args_is_help=True)
imports = typer.Typer(help="Import published per-sample results into a trace file.", no_args_is_help=True)
app.add_typer(imports, name="import")
console = Console(width=140)

Models = Annotated[str | None, typer.Option("--models", help="Comma list of model names, cheapest first.")]
ZooFile = Annotated[
    str | None,
    typer.Option(
        "--zoo",
        help=f"Zoo file (TOML/YAML) naming the models, cheapest first, or a bundled zoo: {', '.join(bundled_zoos())}.",
    ),
]

TracePath = Annotated[str, typer.Argument(help="Trace file or folder of trace files.", metavar="PATH")]


Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a trace file already at --out.")]


def _out(path: Path | None, name: str, overwrite: bool) -> Path:
    """The trace file to write, checked before any work: a .parquet name in a writable place, and no file there
    unless --overwrite (then it is replaced atomically)."""
    path = path if path is not None else DEFAULT_DIR / f"{name}.parquet"
    if path.suffix != ".parquet" and not path.is_dir():
        raise UserError(f"--out {path}: a trace file name must end in .parquet")
    check_out_file(path)
    if path.is_file() and not overwrite:
        raise UserError(f"--out {path}: a file is already there; pass --overwrite to replace it, or choose another "
                        "--out")  # fmt: skip
    return path


def _trace_path(path: str) -> Path:
    """A trace path argument, taken as text so that an empty one is refused: Path("") is the current folder."""
    if not path.strip():
        raise UserError("the trace path is empty; give a trace file or a folder of them")
    return Path(path)


def _finish(trace: Trace, report: list[str], out: Path, zoo: str | None = None) -> None:
    """Print the importer's report and write the trace; with --zoo, the trace keeps the zoo file's whole entries
    (hf_id, backend, ...: what `collect` needs to measure the same models), not just their names."""
    if zoo is not None:
        trace = Trace(trace.df, load_zoo(zoo), trace.synthetic, trace.provenance)
    for line in report:
        console.print(f"  {line}", highlight=False, soft_wrap=True)  # paths stay whole, to copy
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
    repeats: Annotated[
        str,
        typer.Option(
            help="A doc that appears on several rows: merge (one request, correctness checked to agree, measured "
            "costs averaged) or keep (every row a request, as the reference simulator replays its batches and as "
            "the paper's tables count them; the k-th row's doc_id gets the suffix #k). [merge|keep]"
        ),
    ] = "merge",
    overwrite: Overwrite = False,
) -> None:
    """MESS+ reference-code traces (label_/energy_consumption_/inference_time_<tier> columns)."""
    from messplus.traces.importers.messplus import import_messplus

    if repeats not in ("merge", "keep"):
        raise UserError(f"--repeats: {repeats!r} is not one of merge, keep")
    out = _out(out, "messplus", overwrite)
    names = resolve_names(models, zoo, []) or None
    _finish(*import_messplus(paths, names, repeats), out, zoo)


@imports.command("lmeval")
def import_lmeval_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="lm-eval --output_path folders (every model folder in them is a model) or single model folders, "
            "cheapest first."
        ),
    ],
    out: Annotated[Path | None, typer.Option(help="Trace file to write (default: data/traces/lmeval.parquet).")] = None,
    task: Annotated[
        list[str] | None, typer.Option(help="Tasks to import, comma list (default: all tasks every model has).")
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
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Count prompt and completion tokens (lm-eval records none) with: `model` = each model's own tokenizer "
            "as its results file records it; or a tokenizer folder or hub id for all models, or a comma list, one per "
            "model. Hub ids load from the local cache when offline. Makes `sim sweep --cost tokens` possible."
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Comma list of names for the models found, in the order found (default: the model each results "
            "file records, else the folder name).",
        ),
    ] = None,
    zoo: ZooFile = None,
    overwrite: Overwrite = False,
) -> None:
    """lm-eval-harness --log_samples outputs, merged into one trace (no cost unless --costs or --tokenizer). lm-eval
    writes <output_path>/<model>/samples_<task>_<date>.jsonl: every folder holding samples files is one model, named
    from its results file. The models of one output path are ordered by the parameter counts lm-eval recorded, else
    by name; give model folders one by one to set the order yourself."""
    from messplus.traces.importers.lmeval import import_lmeval

    out = _out(out, "lmeval", overwrite)
    names = resolve_names(models, zoo, []) or None
    tasks = comma_list(task, "--task") or None
    _finish(*import_lmeval(paths, names, tasks, metric, filter_key, costs, tokenizer), out, zoo)


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
    overwrite: Overwrite = False,
) -> None:
    """RouterBench-style wide tables with '<model>|total_cost' dollar columns."""
    from messplus.traces.importers.wide import import_wide

    out = _out(out, path.stem, overwrite)
    names = resolve_names(models, zoo, []) or None
    _finish(*import_wide(path, names, id_col, text_col, bench_col, bench), out, zoo)


@app.command()
def synth(
    out: Annotated[Path | None, typer.Option(help="Trace file to write (default: data/traces/synth.parquet).")] = None,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    bench: Annotated[
        list[str] | None, typer.Option(help="Benchmarks to generate, comma list (default: the paper's 8).")
    ] = None,
    n_features: Annotated[int, typer.Option(help=f"Per-request feature dimension, in [1, {MAX_FEATURES:,}].")] = 8,
    scale: Annotated[
        float, typer.Option(help="Fraction of the paper's request counts to generate, in (0, 100].")
    ] = 1.0,
    overwrite: Overwrite = False,
) -> None:
    """Calibrated synthetic 3-model zoo from the MESS+ paper's Table 2 (Llama 1B/8B/70B)."""
    from messplus.traces.synth import PAPER_TABLE2, synth_trace

    benches = comma_list(bench, "--bench")
    unknown = [b for b in benches if b not in PAPER_TABLE2]
    if unknown:
        raise UserError(f"unknown bench {unknown[0]!r} (synth knows: {', '.join(PAPER_TABLE2)})")
    check_range(scale, "--scale", 0, MAX_SCALE, lo_open=True)
    check_range(n_features, "--n-features", 1, MAX_FEATURES)
    check_range(seed, "--seed", 0)
    out = _out(out, "synth", overwrite)
    write_trace(synth_trace(benches or None, seed, n_features, scale), out)
    console.print(f"wrote {out}")


def _info_table(path: Path, trace: Trace) -> Table:
    df = trace.df.with_columns(pl.sum_horizontal(*COST_KINDS["tokens"].columns).alias("tokens"))
    costs = (*COST_KINDS, "cpu_energy_j", "dram_energy_j")  # what --cost can minimise, then the host's energy
    cost_cols = [c for c in costs if df[c].null_count() < df.height]
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
def info(path: TracePath) -> None:
    """Requests and models per bench, accuracy and mean cost per model, and where costs came from. Every file is
    read and checked before anything is printed: a bad file is one error line, with no tables before it."""
    traces = [(f, read_trace(f)) for f in trace_files(_trace_path(path))]
    for f, trace in traces:
        console.print(_info_table(f, trace))


@app.command()
def validate(path: TracePath) -> None:
    """Check files against trace schema v1 and, for a folder, that its files can be replayed together (one zoo, one
    kind of features, each bench in one file); the first problem is reported as one line, exit code 2."""
    by_file: dict[str, Trace] = {t.provenance["source"]: t for t in load_benches(_trace_path(path)).values()}
    for f, trace in by_file.items():
        console.print(f"{f}: valid, {len(trace.benches)} benches, {len(trace.zoo.names)} models")


def main() -> None:
    run_cli(app)
