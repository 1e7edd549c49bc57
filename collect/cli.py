"""`collect`: measure a model zoo on a benchmark into a trace (see collect/run.py for the on-disk layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from messplus.common import UserError, progress_bars, run_cli
from messplus.traces.hub import quiet_libraries
from messplus.traces.zoo import bundled_zoos, load_zoo

app = typer.Typer(help="Run every zoo model once per benchmark sample; record correctness, tokens, latency, energy.")
console = Console(width=150)


@app.callback(no_args_is_help=True)
def _root() -> None:
    """Measure a model zoo once."""


@app.command()
def traces(
    bench: Annotated[str, typer.Option(help="lm-eval task name (any registered task, or one under --include-path).")],
    zoo: Annotated[
        str,
        typer.Option(
            help=f"Zoo file (TOML/YAML), cheapest model first, or a bundled zoo: {', '.join(bundled_zoos())}."
        ),
    ] = "paper-llama",
    out: Annotated[Path, typer.Option(help="Collection folder; rerunning the same command resumes there.")] = Path(
        "data/collect"
    ),
    include_path: Annotated[str | None, typer.Option(help="Folder of local lm-eval task YAMLs.")] = None,
    metric: Annotated[
        str, typer.Option(help="Per-sample metric read as satisfied: auto = acc_norm, else acc, else exact_match.")
    ] = "auto",
    mode: Annotated[
        str,
        typer.Option(
            help="exact: meter one request at a time (the paper); batched: meter batches, apportion by tokens."
        ),
    ] = "exact",
    batch_size: Annotated[int, typer.Option(help="Requests per metered batch in batched mode.")] = 8,
    chunk: Annotated[int, typer.Option(help="Docs per lm-eval call and per part file: the most a kill can lose.")] = 32,
    limit: Annotated[int | None, typer.Option(help="Only the first N docs (a quick check).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    assumed_power_w: Annotated[
        float | None, typer.Option(help="Without a GPU meter, record power x latency as an `estimated` energy.")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace a finished <bench>.parquet in --out that holds other docs (say, after --limit)."),
    ] = False,
) -> None:
    """Collect one benchmark for every model of the zoo into <out>/<bench>.parquet."""
    from messplus.collect.run import CollectConfig, collect

    cfg = CollectConfig(
        bench=bench, zoo=load_zoo(zoo), out=out, include_path=include_path, metric=metric, mode=mode,
        batch_size=batch_size, chunk=chunk, limit=limit, device=device, assumed_power_w=assumed_power_w,
        overwrite=overwrite,
    )  # fmt: skip
    with progress_bars(console, unit="docs", transient=False) as progress:
        try:
            path = collect(cfg, progress)
        except KeyboardInterrupt:
            raise UserError(
                f"interrupted; finished chunks are kept in {out}: rerun the same command to resume"
            ) from None
    console.print(f"wrote {path}; inspect it with `traces info {path}`")


@app.command()
def quickcheck(
    out: Annotated[
        Path, typer.Option(help="Folder for the zoo (zoo.toml, tiny-a/, tiny-b/) and the task (task/).")
    ] = Path("data/quickcheck"),
    overwrite: Annotated[bool, typer.Option(help="Rebuild a quick check already in --out.")] = False,
) -> None:
    """Build the CPU quick check: two tiny Llamas (one random, one trained on the task) and a local lm-eval task,
    with no download; then collect it as the printed command says."""
    from messplus.collect.quickcheck import tiny_zoo, toy_task
    from messplus.common import check_out_folder

    check_out_folder(out)
    if (out / "zoo.toml").exists() and not overwrite:
        raise UserError(f"--out {out}: holds a quick check already; pass --overwrite to rebuild it")
    zoo, task = tiny_zoo(out), toy_task(out / "task")
    console.print(f"zoo: {zoo}\ntask folder: {task}\nnext: collect traces --bench toyqa --zoo {zoo} --include-path "
                  f"{task} --out {out / 'out'} --device cpu", highlight=False, soft_wrap=True)  # fmt: skip


def main() -> None:
    quiet_libraries()  # hub retries and per-task chatter would bury progress and the one error line
    run_cli(app)
