"""`analysis report`: the main table in three formats, every figure, and a short text summary, in one folder."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from messplus.analysis import plots
from messplus.analysis.tables import main_table, predictor_markdown, to_latex, to_markdown
from messplus.sim.metrics import predictor_quality
from messplus.sim.results import Results
from messplus.sim.routers import MESSPLUS


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
        names = ", ".join(f"{r['label']} ({r['cost_vs_opt']:.2f}x)" for r in policies.iter_rows(named=True))
        cheapest = f"; cheapest {policies['label'][0]}" if policies.height else ""
        mess_note = ""
        for r in mess.iter_rows(named=True):
            missed = r["seeds"] - r["seeds_met"]
            verdict = (
                "met"
                if r["sla_met"]
                else f"missed on {missed} of {r['seeds']} seeds (mean {r['satisfaction_pct']:.1f}%)"
            )
            mess_note += f" {r['label']} {verdict} at {r['cost_vs_opt']:.2f}x E_OPT."
        lines.append(head + f"met by {names or 'only the oracle'}{cheapest}.{mess_note}")
    return lines


def write_report(res: Results, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    table = main_table(res)
    table.write_csv(out / "table.csv")
    (out / "table.md").write_text(to_markdown(table, res.models))
    (out / "table.tex").write_text(to_latex(table, res.models))
    text = summary(table)
    (out / "summary.txt").write_text("\n".join(text) + "\n")
    figs = out / "figures"
    benches = res.runs.select(pl.col("bench").unique(maintain_order=True)).collect()["bench"].to_list()
    has_mess = res.runs.filter(pl.col("method") == MESSPLUS).select(pl.len()).collect().item() > 0
    sections = [("Cost against satisfaction", plots.plane(res, figs)), ("Model call shares", plots.calls(res, figs))]
    if has_mess:
        for b in benches:
            sections += [
                (f"{b}: dynamics", plots.dynamics(res, b, figs)),
                (f"{b}: predictor learning", plots.learning(res, b, figs)),
            ]
    cfg = res.meta["config"]
    md = [
        "# MESS+ sweep report",
        "",
        f"Trace `{res.meta['traces']}`; models (cheapest first): {', '.join(res.models)}; cost: `{res.cost}`; "
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
    if has_mess:
        md += [
            "## MESS+ predictor",
            "",
            "AUC per model of the predictions on the second half of each stream, each made before that request's own "
            "update: mean ± std over seeds; z is how many standard errors the AUC lies above chance (0.5).",
            "",
            predictor_markdown(predictor_quality(res.runs.collect()), res.models),
        ]
    for title, png in sections:
        md += [f"## {title}", "", f"![{title}](figures/{png.name}) ([SVG](figures/{png.with_suffix('.svg').name}))", ""]
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path
