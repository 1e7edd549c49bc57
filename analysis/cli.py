"""`analysis`: tables and figures from a `sim sweep` results folder."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console

from messplus.common import UserError, run_cli
from messplus.sim.results import open_results
from messplus.sim.routers import MESSPLUS

app = typer.Typer(help="Tables and figures from a sweep's runs/steps/predictions Parquet.", no_args_is_help=True)
console = Console(width=150)
Results = Annotated[Path, typer.Argument(help="Folder written by `sim sweep --out`.")]


class Kind(StrEnum):
    dynamics = "dynamics"
    plane = "plane"
    learning = "learning"
    calls = "calls"


class Accounting(StrEnum):
    ours = "ours"
    paper = "paper"


class Format(StrEnum):
    md = "md"
    tex = "tex"
    csv = "csv"


@app.command()
def report(
    results: Results,
    out: Annotated[Path | None, typer.Option(help="Report folder (default: reports/<results folder name>).")] = None,
) -> None:
    """Markdown report with the main table inline, every figure as PNG and SVG, and a text summary."""
    from messplus.analysis.report import write_report

    path = write_report(open_results(results), out or Path("reports") / results.resolve().name)
    console.print(f"wrote {path}")
    console.print((path.parent / "summary.txt").read_text(), highlight=False)


@app.command()
def table(
    results: Results,
    fmt: Annotated[Format, typer.Option("--format", help="md, tex or csv.")] = Format.md,
    out: Annotated[Path | None, typer.Option(help="File to write (default: print).")] = None,
    accounting: Annotated[
        Accounting,
        typer.Option(
            help="ours: every request's real cost, explorations included, final satisfaction, std over seeds. "
            "paper: as the reference code reports (explorations logged at the previous exploit's cost, mean of "
            "the running satisfaction, stds over steps); see README 'Reproducing the paper'."
        ),
    ] = Accounting.ours,
) -> None:
    """The paper's Table 2 for this sweep: operating cost, satisfaction, cost / E_OPT, SLA and call shares."""
    from messplus.analysis.tables import main_table, paper_table, to_latex, to_markdown

    res = open_results(results)
    t = main_table(res) if accounting == Accounting.ours else paper_table(res)
    text = {"md": lambda: to_markdown(t, res.models), "tex": lambda: to_latex(t, res.models), "csv": t.write_csv}[
        fmt.value
    ]()
    if out:
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        print(text, end="")


@app.command()
def plot(
    kind: Annotated[Kind, typer.Argument(help="dynamics, plane, learning or calls.")],
    results: Results,
    bench: Annotated[str | None, typer.Option(help="Bench for dynamics / learning (default: each).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the PNG and SVG files.")] = Path("reports/figures"),
) -> None:
    """One figure kind; dynamics and learning draw one figure per bench."""
    from messplus.analysis import plots

    res = open_results(results)
    if kind in (Kind.plane, Kind.calls):
        paths = [getattr(plots, kind.value)(res, out)]
    else:
        have = res.runs.filter(pl.col("method") == MESSPLUS).select(pl.col("bench").unique()).collect()["bench"]
        benches = [bench] if bench else sorted(have)
        missing = [b for b in benches if b not in have.to_list()]
        if missing or not benches:
            raise UserError(
                f"no MESS+ runs for bench {(missing or ['any'])[0]!r} in {results} (have: {', '.join(sorted(have))})"
            )
        paths = [getattr(plots, kind.value)(res, b, out) for b in benches]
    for p in paths:
        console.print(f"wrote {p} (+ .svg)")


def main() -> None:
    run_cli(app)
