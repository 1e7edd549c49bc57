"""`analysis report`: the main table in three formats, every figure, and a short text summary, in one folder.

Everything is checked before anything is drawn (the runs, the output folder), and the report is written as one
set: into a temporary folder beside `--out` that then replaces it by rename, so a failure leaves the old report
(or nothing), never half of one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import polars as pl

from messplus.analysis import plots
from messplus.analysis.tables import main_table, predictor_markdown, to_latex, to_markdown
from messplus.common import UserError, atomic_folder, check_out_folder
from messplus.sim.metrics import predictor_quality
from messplus.sim.results import Results
from messplus.sim.routers import MESSPLUS

REPORT_FILES = {"report.md", "table.md", "table.tex", "table.csv", "summary.txt", "figures"}
LEARNING_MIN = 50  # plots.learning smooths over windows of at least 50 requests: a shorter stream has no curve
FIGURES = "figures"
Draw = Callable[[Path], Path]  # draws into a folder, returns the PNG


def check_runs(res: Results, where: str) -> pl.DataFrame:
    """The runs, after checking there are some and that every figure a run reports is a number: a result set
    with none, or with an infinite or NaN cost, is refused before anything is written."""
    runs = res.runs.collect() if isinstance(res.runs, pl.LazyFrame) else res.runs
    if runs.is_empty():
        raise UserError(f"{where}: the results hold no runs; rerun `sim sweep` with the methods you want to compare")
    for col in ("satisfaction", "total_cost", "cost_per_request", "cost_vs_opt"):
        bad = runs.filter(~pl.col(col).cast(pl.Float64).is_finite()).head(1)  # nulls (no such bound) pass
        if not bad.is_empty():
            r = bad.row(0, named=True)
            raise UserError(
                f"{where}: run {r['run_id']} ({r['method']}, bench {r['bench']}) has {col} = {r[col]}; "
                "the results are damaged: rerun `sim sweep`"
            )
    M = len(res.models)
    odd = runs.filter(pl.col("call_ratio").list.len() != M).head(1)
    if not odd.is_empty():
        r = odd.row(0, named=True)
        raise UserError(
            f"{where}: run {r['run_id']} has call shares for {len(r['call_ratio'])} models, while the metadata "
            f"names {M}; the results are damaged: rerun `sim sweep`"
        )
    return runs


def check_policies(runs: pl.DataFrame, where: str) -> None:
    """The table (and so the report) compares policies: a result set of bounds only would give an empty one."""
    if runs.filter(pl.col("kind") == "policy").is_empty():
        bounds = ", ".join(sorted(runs["method"].unique()))
        raise UserError(
            f"{where}: the results hold only bounds ({bounds}), no routing policy to tabulate; rerun `sim sweep` "
            "with the methods you want to compare (e.g. --methods messplus,single,opt)"
        )


def check_report_out(out: Path) -> None:
    """`out` is replaced as a whole, so it must be absent, empty, or a report folder, in a writable place."""
    check_out_folder(out)
    check_out_folder(out.absolute().parent, f"--out {out}: parent")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in REPORT_FILES) if out.is_dir() else []
    if foreign:
        raise UserError(f"--out {out}: holds {foreign[0]!r}, so it is not a report folder; choose another --out")


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def summary(table: pl.DataFrame) -> list[str]:
    """Per bench and alpha: who met the SLA on every seed, cheapest first, and what that cost against E_OPT."""
    lines = []
    for (bench, alpha), b in table.filter(pl.col("bench") != "average").group_by(
        ["bench", "alpha"], maintain_order=True
    ):
        met = b.filter(pl.col("sla_met")).sort("cost_vs_opt", nulls_last=True)
        mess = b.filter(pl.col("method") == MESSPLUS)
        head = f"{bench} (alpha {alpha:.3f}): "
        if met.is_empty():
            lines.append(head + "no method met the SLA on every seed.")
            continue
        policies = met  # the table holds policies only: bounds are its reference columns
        names = ", ".join(f"{r['label']} ({_fmt_ratio(r['cost_vs_opt'])})" for r in policies.iter_rows(named=True))
        cheapest = f"; cheapest {policies['label'][0]}" if policies.height else ""
        mess_note = ""
        for r in mess.iter_rows(named=True):
            missed = r["seeds"] - r["seeds_met"]
            verdict = (
                "met"
                if r["sla_met"]
                else f"missed on {missed} of {r['seeds']} seeds (mean {r['satisfaction_pct']:.1f}%)"
            )
            mess_note += f" {r['label']} {verdict} at {_fmt_ratio(r['cost_vs_opt'])} E_OPT."
        lines.append(head + f"met by {names or 'only the oracle'}{cheapest}.{mess_note}")
    return lines


def routes(runs: pl.DataFrame) -> bool:
    """Whether any run routes between models (a policy other than a single-model baseline): what the call-share
    figure shows."""
    return runs.filter(pl.col("kind") == "policy", ~pl.col("method").str.contains(":")).height > 0


def figure_plan(res: Results, runs: pl.DataFrame) -> tuple[list[tuple[str, Draw]], list[str]]:
    """The figures this result set can show, as (title, draw), and a note for each one it cannot."""
    plan: list[tuple[str, Draw]] = [("Cost against satisfaction", lambda d: plots.plane(res, d))]
    notes = []
    if routes(runs):
        plan.append(("Model call shares", lambda d: plots.calls(res, d)))
    else:
        notes.append("no call-share figure: the results hold no routing policy besides single-model baselines")
    mess = runs.filter(pl.col("method") == MESSPLUS)
    for b in mess["bench"].unique(maintain_order=True).to_list():
        plan.append((f"{b}: dynamics", lambda d, b=b: plots.dynamics(res, b, d)))
        stream = int(mess.filter(pl.col("bench") == b)["n_requests"].min())
        if stream >= LEARNING_MIN:
            plan.append((f"{b}: predictor learning", lambda d, b=b: plots.learning(res, b, d)))
        else:
            notes.append(f"no learning figure for {b}: its stream has {stream} requests, fewer than {LEARNING_MIN}")
    return plan, notes


def _traces_name(meta: dict) -> str:
    """The trace the sweep replayed, wherever this results version records it."""
    return str(meta.get("options", {}).get("traces") or meta.get("traces") or "?")


def _markdown(res: Results, table: pl.DataFrame, text: list[str], runs: pl.DataFrame) -> list[str]:
    """The report's text up to the figures."""
    cfg = res.meta["config"]
    md = [
        "# MESS+ sweep report",
        "",
        f"Trace `{_traces_name(res.meta)}`; models (cheapest first): {', '.join(res.models)}; cost: `{res.cost}`; "
        f"seeds {cfg['seeds']}; encoders: {', '.join(sorted(set(res.meta['encoders'].values())))}; "
        f"package {res.meta['messplus_version']}.",
        "",
        "## Summary",
        "",
        *[f"- {line}" for line in text],
        *[f"- warning: {w}" for w in res.meta.get("warnings", [])],
        "",
        "## Main table (mean ± std over seeds; operating cost is the total over the scored stream)",
        "",
        to_markdown(table, res.models),
        "Also as `table.csv` and `table.tex`.",
        "",
    ]
    if runs.filter(pl.col("method") == MESSPLUS).height:
        md += [
            "## MESS+ predictor",
            "",
            "AUC per model of the predictions on the second half of each stream, each made before that request's own "
            "update: mean ± std over seeds; z is how many standard errors the AUC lies above chance (0.5).",
            "",
            predictor_markdown(predictor_quality(runs), res.models),
        ]
    return md


def write_report(res: Results, out: Path, where: str = "results") -> Path:
    """Check, compute, then write the whole report as one set; returns the path of report.md."""
    out = Path(out)
    runs = check_runs(res, where)
    check_policies(runs, where)
    check_report_out(out)
    table = main_table(res)
    text = summary(table)
    plan, notes = figure_plan(res, runs)
    md = _markdown(res, table, text, runs) + [f"- note: {n}" for n in notes] + ([""] if notes else [])
    with atomic_folder(out) as tmp:
        table.write_csv(tmp / "table.csv")
        (tmp / "table.md").write_text(to_markdown(table, res.models))
        (tmp / "table.tex").write_text(to_latex(table, res.models))
        (tmp / "summary.txt").write_text("\n".join(text) + "\n")
        for title, draw in plan:
            png = draw(tmp / FIGURES)
            md += [f"## {title}", "", f"![{title}]({FIGURES}/{png.name}) ([SVG]({FIGURES}/{png.stem}.svg))", ""]
        (tmp / "report.md").write_text("\n".join(md))
    return out / "report.md"
