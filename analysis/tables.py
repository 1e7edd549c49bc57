"""The paper's Table 2 for any sweep: operating cost, satisfaction and call shares per bench and method."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from messplus.common import UserError
from messplus.sim.results import Results
from messplus.sim.routers import MESSPLUS

CONFIG = ("V", "c", "k", "feedback", "cost_estimate", "learn")


def labelled(runs: pl.LazyFrame) -> pl.LazyFrame:
    """Add `label`: the method, plus the MESS+ settings that vary in this sweep (e.g. "messplus V=0.001")."""
    mess = runs.filter(pl.col("method") == MESSPLUS)
    varying = [c for c in CONFIG if mess.select(pl.col(c).n_unique()).collect().item() > 1]
    parts = [pl.lit(f" {c}=") + pl.col(c).cast(pl.String) for c in varying]
    suffix = pl.concat_str(parts) if parts else pl.lit("")
    return runs.with_columns(
        pl.when(pl.col("method") == MESSPLUS).then(pl.lit(MESSPLUS) + suffix).otherwise(pl.col("method")).alias("label")
    )


KEYS = ["bench", "alpha", "label", "method"]  # one table row each


def policy_runs(res: Results) -> pl.LazyFrame:
    """Labelled runs of every method that is a policy (bounds left out), with call shares in % as share_<m>."""
    shares = [(100 * pl.col("call_ratio").list.get(m)).alias(f"share_{m}") for m in range(len(res.models))]
    return labelled(res.runs).filter(pl.col("kind") == "policy").with_columns(shares)


def per_seed(models: list[str]) -> list[pl.Expr]:
    """What both accountings count over a row's seeds: how many, how many met the SLA, mean call shares."""
    return [
        pl.len().alias("seeds"),
        pl.col("sla_met").all().alias("sla_met"),
        pl.col("sla_met").sum().alias("seeds_met"),
        *[pl.col(f"share_{m}").mean().alias(f"share_{models[m]}") for m in reversed(range(len(models)))],
    ]


def main_table(res: Results) -> pl.DataFrame:
    """One row per (bench, alpha, label): means and stds over seeds; shares per model, largest model first; then
    an average row per label, as in the paper's Table 2."""
    unit, scale = res.unit(total=True)
    runs = policy_runs(res)
    latency = runs.select(pl.col("latency_sla").is_not_null().any()).collect().item()
    second = [pl.col("mean_latency_s").mean(), pl.col("latency_sla").first(), pl.col("latency_met").all()]
    stats = (
        runs.with_columns((pl.col("total_cost") * scale).alias("cost"), (100 * pl.col("satisfaction")).alias("sat"))
        .group_by(KEYS, maintain_order=True)
        .agg(
            *per_seed(res.models),
            *over_seeds(f"cost_{unit}"),
            pl.col("cost_vs_opt").mean().alias("cost_vs_opt"),
            *(second if latency else []),
        )
        .sort(["bench", "alpha"], maintain_order=True)
        .select(main_table_columns(f"cost_{unit}", res.models) + (LATENCY if latency else []))
        .collect()
    )
    return with_average(stats)


LATENCY = ["mean_latency_s", "latency_sla", "latency_met"]  # a second SLA's columns, where one was set


def over_seeds(cost: str) -> list[pl.Expr]:
    """Mean and std over a row's seeds of the per-run `cost` and `sat` (%), named as the tables write them."""
    return [
        pl.col("cost").mean().alias(cost),
        pl.col("cost").std().fill_null(0).alias(f"{cost}_std"),
        pl.col("sat").mean().alias("satisfaction_pct"),
        pl.col("sat").std().fill_null(0).alias("satisfaction_pct_std"),
    ]


def with_average(stats: pl.DataFrame) -> pl.DataFrame:
    """The rows, then one per label averaged over benches (bench "average", no alpha; met where every row met)."""
    flags = [c for c, t in stats.schema.items() if t == pl.Boolean]  # met on every row: all
    average = (
        stats.group_by(["label", "method"], maintain_order=True)
        .agg(
            pl.exclude("bench", "alpha", "seeds", "seeds_met", *flags).mean(),
            *[pl.col(c).all() for c in flags],
            pl.col("seeds").min(),
            pl.col("seeds_met").min(),
        )
        .with_columns(pl.lit("average").alias("bench"), pl.lit(None, pl.Float64).alias("alpha"))
        .select(stats.columns)
    )
    return pl.concat([stats, average])


WHOLE = "_whole_bench"  # a cost column scaled from the scored stream to the whole bench (paper accounting)


def paper_table(res: Results) -> pl.DataFrame:
    """The main table counted as the MESS+ reference code reports it (README, "Reproducing the paper"): an
    exploration step is logged with the previous exploit step's cost (steps before the first exploit count
    nothing), satisfaction is the mean over steps of the running satisfaction, and the SLA is judged on that figure.
    The paper totals a bench's whole stream, so each run's total is scaled from its scored stream to the bench
    (x (calibration + scored) / scored; the column name says so). Means and stds over seeds, an average row.
    Needs every step (`sim sweep --steps-every 1`)."""
    if res.meta["config"].get("steps_every", 1) != 1:
        raise UserError("paper accounting needs every step: rerun `sim sweep` with --steps-every 1")
    unit, scale = res.unit(total=True)
    runs = policy_runs(res)
    spent = pl.col("running_cost") * pl.col("t")
    steps = (
        res.steps.sort("run_id", "t")
        .with_columns((spent - spent.shift(1, fill_value=0.0).over("run_id")).alias("step_cost"))
        .with_columns(
            pl.when(pl.col("explored"))
            .then(None)
            .otherwise(pl.col("step_cost"))
            .forward_fill()
            .over("run_id")
            .alias("logged_cost")
        )
    )
    per_run = run_sums(steps.select("run_id", "logged_cost", "running_satisfaction").collect())
    whole = (pl.col("n_requests") + pl.col("n_calib")) / pl.col("n_requests")
    cost = f"cost_{unit}{WHOLE}"
    table = (
        runs.join(per_run, on="run_id", maintain_order="left")
        .with_columns(
            (pl.col("logged_total") * scale * whole).alias("cost"),
            (pl.col("logged_mean") / pl.col("opt_cost_per_request")).alias("paper_vs_opt"),
            (pl.col("sat") >= 100 * pl.col("alpha") - 1e-9).alias("sla_met"),  # judged on its own figure
        )
        .group_by(KEYS, maintain_order=True)
        .agg(*per_seed(res.models), *over_seeds(cost), pl.col("paper_vs_opt").mean().alias("cost_vs_opt"))
        .sort(["bench", "alpha"], maintain_order=True)
        .select(main_table_columns(cost, res.models))
        .collect()
    )
    return with_average(table)


def run_sums(steps: pl.DataFrame) -> pl.LazyFrame:
    """Per run of steps [rows sorted by run_id, t]: the logged cost's total and mean (nulls, before a first exploit,
    left out) and the mean running satisfaction in %. Summed in step order by numpy: polars' parallel group-by adds a
    group's floats in an order that varies from call to call, and a table must read the same twice."""
    ids = steps["run_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, dtype=np.int64)
    logged = steps["logged_cost"].to_numpy()  # float with NaN for null
    seen = np.isfinite(logged)
    sums = lambda x: np.add.reduceat(x, starts) if len(starts) else np.zeros(0)  # noqa: E731
    n, n_logged = np.diff(np.r_[starts, len(ids)]), sums(seen.astype(np.int64))
    total = sums(np.where(seen, logged, 0.0))
    return pl.LazyFrame({
        "run_id": ids[starts], "logged_total": total,
        "logged_mean": np.where(n_logged > 0, total / np.maximum(n_logged, 1), np.nan),
        "sat": 100 * sums(steps["running_satisfaction"].to_numpy()) / np.maximum(n, 1),
    })  # fmt: skip


def main_table_columns(cost: str, models: list[str]) -> list[str]:
    """The column order both accountings write (cost: the cost column's name)."""
    return [*KEYS, "seeds", cost, f"{cost}_std", "satisfaction_pct",
            "satisfaction_pct_std", "sla_met", "seeds_met", "cost_vs_opt", *[f"share_{m}" for m in reversed(models)]]  # fmt: skip


def pm(mean: float | None, sd: float | None, digits: int = 4) -> str:
    """mean ± sd with the same decimals: as many as `digits` significant digits of the mean need; "-" for a figure
    that does not exist (null: no run had one)."""
    if mean is None or not math.isfinite(mean):
        return "-"
    d = max(0, digits - 1 - math.floor(math.log10(abs(mean)))) if mean else 2
    return f"{mean:.{d}f} ± {sd or 0.0:.{d}f}"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}  # fmt: skip


def latex_escape(text: str) -> str:
    """Every character LaTeX treats specially, escaped in one pass (model names may hold any of them)."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def _cells(table: pl.DataFrame, models: list[str]) -> tuple[list[str], list[list[str]]]:
    unit = next(c for c in table.columns if c.startswith("cost_") and not c.endswith("_std") and c != "cost_vs_opt")
    label = unit.removeprefix("cost_").removesuffix(WHOLE) + (
        ", whole bench: scored stream x T / scored" if unit.endswith(WHOLE) else ""
    )
    header = ["bench", "alpha", "method", f"operating cost ({label})", "satisfaction %", "cost / E_OPT", "SLA",
              "call share % (" + " / ".join(reversed(models)) + ")"]  # fmt: skip
    rows = []
    for r in table.iter_rows(named=True):
        shares = " / ".join(f"{r[f'share_{m}']:.0f}" for m in reversed(models))
        rows.append([
            r["bench"], "" if r["alpha"] is None else f"{r['alpha']:.3f}", r["label"],
            pm(r[unit], r[unit + "_std"]), pm(r["satisfaction_pct"], r["satisfaction_pct_std"]),
            "-" if r["cost_vs_opt"] is None else f"{r['cost_vs_opt']:.2f}",
            "met" if r["sla_met"] else f"missed ({r['seeds'] - r['seeds_met']}/{r['seeds']} seeds)", shares,
        ])  # fmt: skip
        if "mean_latency_s" in table.columns:
            took, kept = r["mean_latency_s"], r["latency_met"]
            rows[-1].append("-" if took is None else f"{took:.3g} ({'met' if kept else 'missed'})")
    if "mean_latency_s" in table.columns:
        header.append(f"mean latency s (SLA {table['latency_sla'].drop_nulls()[0]:g} s)")
    return header, rows


def to_markdown(table: pl.DataFrame, models: list[str]) -> str:
    header, rows = _cells(table, models)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(("✅ " if c == "met" else "❌ " if c.startswith("missed") else "") + c for c in row) + " |"
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def to_latex(table: pl.DataFrame, models: list[str]) -> str:
    """A tabular with met / missed rows shaded green / red, as the paper does (needs \\usepackage[table]{xcolor})."""
    header, rows = _cells(table, models)
    out = [
        r"\begin{tabular}{" + "l" * 3 + "r" * (len(header) - 3) + "}",
        r"\toprule",
        " & ".join(map(latex_escape, header)) + r" \\",
        r"\midrule",
    ]
    for row in rows:
        colour = r"\rowcolor{green!12}" if row[6] == "met" else r"\rowcolor{red!12}"
        out.append(colour + " & ".join(map(latex_escape, row)) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def predictor_markdown(quality: pl.DataFrame, models: list[str]) -> str:
    """sim.metrics.predictor_quality as a table: late AUC mean ± std over seeds, and its z against chance."""
    header = ["bench", "c", "k", "learn", "seeds", *models]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in quality.iter_rows(named=True):
        cells = [
            "-" if a is None else f"{a:.3f} ± {sd:.3f} (z {z:.1f})"
            for a, sd, z in zip(r["auc"], r["auc_sd"], r["z"], strict=True)
        ]
        key = [r["bench"], f"{r['c']:g}", f"{r['k']:g}", r["learn"], str(r["seeds"])]
        lines.append("| " + " | ".join(key + cells) + " |")
    return "\n".join(lines) + "\n"
