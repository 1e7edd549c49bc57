"""`analysis`: tables and figures from `sim sweep` results folders (several of one trace read as one set)."""

from __future__ import annotations

import os
import shutil
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console

from messplus.common import UserError, atomic_path, check_out_file, check_out_folder, run_cli
from messplus.sim.results import open_sets
from messplus.sim.routers import MESSPLUS
from messplus.traces.zoo import comma_list

app = typer.Typer(help="Tables and figures from a sweep's runs/steps/predictions Parquet.", no_args_is_help=True)
console = Console(width=150)
Results = Annotated[list[Path], typer.Argument(help="Folder written by `sim sweep --out`; several of one trace are "
                                               "read as one set (runs renumbered, a `set` column names each run's "
                                               "folder).")]  # fmt: skip


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


def check_apart(out: Path, results: list[Path]) -> None:
    """An output inside a results folder would replace one of its files or make it no longer a results set."""
    for folder in results:
        o, r = out.resolve(), folder.resolve()
        if o == r or r in o.parents:
            raise UserError(f"--out {out}: lies inside the results folder {folder}; write it elsewhere")


def named(results: list[Path]) -> str:
    """The results folders as messages name them."""
    return ", ".join(map(str, results))


@app.command()
def report(
    results: Results,
    out: Annotated[
        Path | None,
        typer.Option(help="Report folder (default: reports/<results folder name>, names joined by + for several)."),
    ] = None,
) -> None:
    """Markdown report with the main table inline, every figure as PNG and SVG, and a text summary."""
    from messplus.analysis.report import write_report

    res = open_sets(results)
    out = out or Path("reports") / "+".join(folder.resolve().name for folder in results)
    check_apart(out, results)
    path = write_report(res, out, named(results))
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
    from messplus.analysis.report import check_policies, check_runs
    from messplus.analysis.tables import main_table, paper_table, to_latex, to_markdown

    res = open_sets(results)
    check_policies(check_runs(res, named(results)), named(results))
    if out:
        check_out_file(out)
        check_apart(out, results)
    t = main_table(res) if accounting == Accounting.ours else paper_table(res)
    text = {"md": lambda: to_markdown(t, res.models), "tex": lambda: to_latex(t, res.models), "csv": t.write_csv}[
        fmt.value
    ]()
    if out:
        with atomic_path(out) as tmp:
            tmp.write_text(text)
        console.print(f"wrote {out}")
    else:
        print(text, end="")


def _plot_benches(res, results: str, kind: Kind, bench: str | None) -> list[str]:
    """The benches a per-bench figure is drawn for: each with MESS+ runs (and, for learning, a long enough
    stream)."""
    from messplus.analysis.report import LEARNING_MIN

    mess = res.runs.filter(pl.col("method") == MESSPLUS).group_by("bench").agg(pl.col("n_requests").min()).collect()
    have = sorted(mess["bench"])
    if bench is not None and not bench.strip():
        raise UserError("--bench: empty; give a bench name or leave the option out for each bench")
    benches = [bench] if bench is not None else have
    if not have:
        raise UserError(f"{results}: no MESS+ runs, so no {kind.value} figure (it shows MESS+ over the stream)")
    missing = [b for b in benches if b not in have]
    if missing:
        raise UserError(f"no MESS+ runs for bench {missing[0]!r} in {results} (have: {', '.join(have)})")
    short = mess.filter(pl.col("bench").is_in(benches), pl.col("n_requests") < LEARNING_MIN)
    if kind == Kind.learning and short.height:
        b, n = short.row(0)
        raise UserError(f"bench {b}: its stream has {n} requests, too few for the learning figure (>= {LEARNING_MIN})")
    return benches


def _draw_into(out: Path, draw) -> list[Path]:
    """Draw into a temporary folder inside `out`, then move each file into place by rename: a failure leaves the
    figures that were there before, never half a set."""
    fresh = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".plot-"))
    try:
        pngs = draw(tmp)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
        return [out / p.name for p in pngs]
    except BaseException:
        if fresh:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def numbers(values: list[str] | None, flag: str) -> list[float] | None:
    """A list option of numbers (comma list or repeated), None when left out."""
    if values is None:
        return None
    out = []
    for text in comma_list(values, flag):
        try:
            out.append(float(text))
        except ValueError:
            raise UserError(f"{flag}: expected a number, got {text!r}") from None
    return out


@app.command()
def plot(
    kind: Annotated[Kind, typer.Argument(help="dynamics, plane, learning or calls (each described above).")],
    results: Results,
    bench: Annotated[str | None, typer.Option(help="Bench for dynamics / learning (default: each).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the PNG and SVG files.")] = Path("reports/figures"),
    alpha: Annotated[
        list[str] | None,
        typer.Option(
            metavar="A,B",
            help="dynamics: the SLA levels drawn, as its titles print them (0.79 names 0.7896); comma list. "
            "Default: up to 4, evenly spread.",
        ),
    ] = None,
    V: Annotated[
        list[str] | None,
        typer.Option(
            "--V",
            metavar="V1,V2",
            help="dynamics: the V drawn, a column each; comma list. Default: up to 4, evenly spread.",
        ),
    ] = None,
    c: Annotated[
        float | None,
        typer.Option(help="dynamics: the exploration constant c of the runs drawn (default: the smallest)."),
    ] = None,
) -> None:
    """One figure kind, as PNG and SVG.

    dynamics (one per bench): MESS+ over the stream: running satisfaction against the SLA, running cost per request
    and the virtual queue Q, a column per V and a line per alpha, mean over seeds with their min-to-max band, and
    the request after which every seed holds the SLA; a drift stream's blocks are named.

    plane: cost per request against satisfaction, a panel per bench: every method (MESS+ per setting) as a point,
    mean over seeds, beside the bounds (oracle, mix, E_OPT) and the SLA; the paper's Table 2 as a picture.

    learning (one per bench): the MESS+ predictor's loss and AUC against the request index, and the cumulative cost
    of exploring, a line per c, mean over seeds with their min-to-max band.

    calls: stacked shares of the requests each model answered, per bench and routing method; Table 2's call-share
    columns as bars.
    """
    from messplus.analysis import plots
    from messplus.analysis.report import check_runs, routes

    res = open_sets(results)
    runs = check_runs(res, named(results))
    check_out_folder(out)
    check_apart(out, results)
    picks = {"alphas": numbers(alpha, "--alpha"), "Vs": numbers(V, "--V"), "c": c}
    given = [flag for flag, v in zip(("--alpha", "--V", "--c"), picks.values(), strict=True) if v is not None]
    if given and kind != Kind.dynamics:
        raise UserError(f"{given[0]}: only `analysis plot dynamics` takes it (it picks what that figure shows)")
    if kind == Kind.calls and not routes(runs):
        raise UserError(f"{named(results)}: no routing policy besides single-model baselines, so no call shares to "
                        "draw")  # fmt: skip
    if kind in (Kind.plane, Kind.calls):
        paths = _draw_into(out, lambda d: [getattr(plots, kind.value)(res, d)])
    elif kind == Kind.dynamics:
        benches = _plot_benches(res, named(results), kind, bench)
        for b in benches:  # every choice checked before anything is drawn
            try:
                plots.dynamics_runs(res, b, **picks)
            except UserError as e:  # each bench has its own alphas (alpha mid): one bench at a time may be meant
                raise UserError(f"{e}; pick the bench with --bench" if len(benches) > 1 else str(e)) from None
        paths = _draw_into(out, lambda d: [plots.dynamics(res, b, d, **picks) for b in benches])
    else:
        benches = _plot_benches(res, named(results), kind, bench)
        paths = _draw_into(out, lambda d: [plots.learning(res, b, d) for b in benches])
    for p in paths:
        console.print(f"wrote {p} (+ .svg)")


def main() -> None:
    run_cli(app)
