"""`sim plan`: the cheapest MESS+ setting that keeps an SLA by a deadline, with a stated confidence.

MESS+ approaches alpha from below: the queue rests near V x (price of accuracy), and the shortfall after T requests
is about that over T (the paper's Theorem 1). To keep "running satisfaction >= A at request T0" the planner hands
MESS+ a higher target (A + margin), or a smaller V, or more exploration, and picks the cheapest combination that
met the SLA on at least a share P of N seed orders of the trace. The guarantee is empirical, over orders of this
trace: a future stream with another mix of requests is not covered.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from messplus.common import UserError
from messplus.common.options import opt, validate
from messplus.sim import mess
from messplus.sim.bench import Bench, load, resolve_alphas
from messplus.sim.config import Cost, SweepConfig
from messplus.sim.inputs import Inputs
from messplus.sim.results import KEY, VERSION, options
from messplus.sim.routers.bounds import accuracy_price
from messplus.traces.dense import to_arrays
from messplus.traces.io import load_benches, write_parquet

PLAN_SCHEMA = {
    "bench": pl.String, "found": pl.Boolean, "alpha": pl.Float64, "by": pl.Int64, "every": pl.Int64, "confidence": pl.Float64,
    "seeds": pl.Int64, "alpha_target": pl.Float64, "V": pl.Float64, "v_unit": pl.String, "c": pl.Float64,
    "k": pl.Float64, "p_meet": pl.Float64, "cost_per_request": pl.Float64, "cost_per_request_unplanned": pl.Float64,
    "p_meet_unplanned": pl.Float64, "margin": pl.Float64, "margin_theorem": pl.Float64, "validate_seeds": pl.Int64,
    "p_meet_validated": pl.Float64,
}  # fmt: skip


@dataclass(frozen=True)
class PlanConfig:
    """What the operator promises (alpha by a deadline, with a confidence) and the settings searched."""

    # fmt: off
    benches: tuple[str, ...] = opt((), "Benches to plan (default: every bench in the trace).", flag="--bench",
                                   empty_ok=True)
    alpha: float | Literal["mid"] = opt("mid", "The SLA: running satisfaction promised ('mid': halfway between "
                                        "the cheapest and the best model's accuracy).", lo=0, hi=1, lo_open=True)
    by: int | None = opt(None, "Deadline T0: the stream position (t in steps.parquet) at which the SLA is "
                         "measured (default: half the scored stream).", lo=1)
    every: int | None = opt(None, "Also require the SLA at every K-th request after T0.", lo=1)
    confidence: float = opt(0.95, "Share of seed orders that must meet the SLA.", lo=0, hi=1, lo_open=True)
    seeds: int = opt(100, "Seed orders of the trace to plan on.", lo=2)
    validate_seeds: str = opt("", "Fresh seeds to check the plan on: FIRST-LAST (e.g. 1000-1199) or a comma list; "
                              "the planning seeds never overlap them.")
    margins: tuple[float, ...] = opt((0.0, 0.005, 0.01, 0.02, 0.03, 0.05), "Margins searched: MESS+ is handed "
                                     "alpha + margin.", lo=0, hi=1)
    Vs: tuple[float, ...] = opt((1e-3, 1e-4, 1e-5), "Cost weights V searched (unit: see --v-unit).", flag="--V",
                                lo=0)
    v_unit: Literal["raw", "largest"] = opt("raw", "What V multiplies (as in `sim sweep`).")
    cs: tuple[float, ...] = opt((0.1, 0.5), "Exploration scales c searched.", flag="--c", lo=0, lo_open=True)
    k: float = opt(0.25, "Exploration decay k.", lo=0)
    cost: Cost = opt("energy_j", "Cost minimised (as in `sim sweep`).")
    encoder: str = opt("auto", "Predictor input (as in `sim sweep`).")
    calib_frac: float = opt(0.2, "Leading share of each order held out (as in `sim sweep`; T0 counts after it).",
                            lo=0, hi=0.9)
    # fmt: on

    def validation(self) -> tuple[int, ...]:
        text = self.validate_seeds.strip()
        try:
            if "-" in text:
                first, last = (int(x) for x in text.split("-", 1))
                return tuple(range(first, last + 1))
            return tuple(int(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise UserError(f"--validate-seeds: expected FIRST-LAST or a comma list, got {text!r}") from None

    def planning(self) -> tuple[int, ...]:
        """The first `seeds` non-negative seeds outside the validation set."""
        held = set(self.validation())
        return tuple(itertools.islice((s for s in itertools.count() if s not in held), self.seeds))


def sweep_config(cfg: PlanConfig, bench: str, targets: tuple[float, ...], seeds: tuple[int, ...]) -> SweepConfig:
    return SweepConfig(benches=(bench,), alphas=targets, Vs=cfg.Vs, cs=cfg.cs, ks=(cfg.k,), seeds=seeds,
                       methods=("messplus",), cost=cfg.cost, v_unit=cfg.v_unit, encoder=cfg.encoder,
                       calib_frac=cfg.calib_frac)  # fmt: skip


def outcomes(scfg: SweepConfig, b: Bench, by: int, every: int | None, progress=None) -> pl.DataFrame:
    """One row per MESS+ run: its target, V, c, whether running satisfaction met alpha at `by` (and every
    `every`-th request after), and its cost per request over the whole stream. Runs are consumed chunk by chunk."""
    trained = mess.train(scfg, {b.name: b}, progress)[b.name]
    rows = []
    for block in mess.blocks(scfg, b, *trained):
        o = block.outcome
        S = o.sat.shape[1]
        running = np.cumsum(o.sat, axis=1) / np.arange(1, S + 1)  # [R, S]
        at = np.arange(by - 1, S, every) if every else np.array([by - 1])
        rows.append(pl.DataFrame({
            "alpha_target": block.alpha, "V": block.config["V"], "c": block.config["c"],
            "running": running[:, at].min(1), "cost": o.cost.mean(1),
        }))  # fmt: skip
    return pl.concat(rows)


def choose(runs: pl.DataFrame, alpha: float, confidence: float) -> tuple[pl.DataFrame, dict | None]:
    """Per setting (target, V, c): share of seeds that met alpha and mean cost; the cheapest that meets."""
    table = (
        runs.with_columns(met=pl.col("running") >= alpha - 1e-12)
        .group_by("alpha_target", "V", "c")
        .agg(pl.col("met").mean().alias("p_meet"), pl.col("cost").mean().alias("cost_per_request"))
        .sort("cost_per_request")
    )
    ok = table.filter(pl.col("p_meet") >= confidence)
    return table, (ok.row(0, named=True) if ok.height else None)


def plan_bench(cfg: PlanConfig, trace, name: str, progress=None) -> tuple[dict, pl.DataFrame]:
    """The plan row of one bench and every candidate setting (for the risk figure)."""
    acc = to_arrays(trace, name).satisfied.mean(0)
    alpha = resolve_alphas(acc, (cfg.alpha,))[0]
    targets = tuple(sorted({min(alpha + m, float(acc.max())) for m in cfg.margins}))
    scfg = sweep_config(cfg, name, targets, cfg.planning())
    validate(scfg)
    b = load(scfg, trace, name, progress=progress)
    S = b.n_stream
    by = cfg.by or S // 2
    if by > S:
        raise UserError(f"bench {name}: --by {by} lies past the scored stream ({S} requests)")
    table, best = choose(outcomes(scfg, b, by, cfg.every, progress), alpha, cfg.confidence)
    row = {"bench": name, "alpha": alpha, "by": by, "every": cfg.every, "confidence": cfg.confidence,
           "seeds": cfg.seeds, "v_unit": cfg.v_unit, "k": cfg.k, "validate_seeds": len(cfg.validation())}  # fmt: skip
    if best is None:  # report the most reliable candidate instead, marked as not meeting the confidence
        return row | {
            "found": False,
            **table.sort("p_meet", "cost_per_request", descending=[True, False]).row(0, named=True),
        }, table
    row["found"] = True
    same = table.filter(pl.col("alpha_target") == targets[0], pl.col("V") == best["V"], pl.col("c") == best["c"])
    row |= {**best, "cost_per_request_unplanned": same["cost_per_request"][0], "p_meet_unplanned": same["p_meet"][0],
            "margin": best["alpha_target"] - alpha,
            "margin_theorem": best["V"] / mess.cost_unit(scfg, b) * accuracy_price(acc, b.E.mean(0), alpha) / by}  # fmt: skip
    if cfg.validation():
        vcfg = replace(scfg, alphas=(best["alpha_target"],), Vs=(best["V"],), cs=(best["c"],), seeds=cfg.validation())
        fresh = load(vcfg, trace, name, Inputs(b.X, b.encoder, b.family))
        row["p_meet_validated"] = float((outcomes(vcfg, fresh, by, cfg.every)["running"] >= alpha - 1e-12).mean())
    return row, table


def run_plan(cfg: PlanConfig, traces: Path, progress=None) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """plan [one row per bench] (PLAN_SCHEMA) and, per bench, every candidate setting."""
    validate(cfg)
    found = load_benches(traces, cfg.benches or None)
    rows, tables = [], {}
    for name, trace in found.items():
        row, tables[name] = plan_bench(cfg, trace, name, progress)
        rows.append(row)
    return pl.DataFrame([{k: r.get(k) for k in PLAN_SCHEMA} for r in rows], schema=PLAN_SCHEMA), tables


def write_plan(table: pl.DataFrame, cfg: PlanConfig, traces: Path, out: Path) -> Path:
    """plan.parquet, with the options and version in its metadata as for a sweep's results."""
    meta = {"results_version": VERSION, "messplus_version": version("messplus"), "options": options(cfg, traces)}
    return write_parquet(table, out / "plan.parquet", {KEY: meta})


def risk_figure(candidates: pl.DataFrame, row: dict, out: Path) -> Path:
    """The risk curve: share of orders that met the SLA by the deadline against cost per request, every candidate
    setting a point (colour: V, marker: c), the plan ringed."""
    import matplotlib.pyplot as plt

    from messplus.analysis.plots import COLORS, MARKERS, save

    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    Vs, cs = sorted(candidates["V"].unique()), sorted(candidates["c"].unique())
    for (V, c), g in candidates.group_by("V", "c"):
        g = g.sort("cost_per_request")
        ax.plot(g["cost_per_request"], g["p_meet"], marker=MARKERS[cs.index(c) % len(MARKERS)], ls=":", lw=0.8,
                color=COLORS[Vs.index(V) % len(COLORS)], label=f"V={V:g}, c={c:g}")  # fmt: skip
    ax.axhline(row["confidence"], color="grey", ls="--", lw=0.8)
    if row.get("V") is not None:
        ax.scatter([row["cost_per_request"]], [row["p_meet"]], s=180, facecolors="none", edgecolors="k", zorder=4,
                   label=f"plan: alpha handed {row['alpha_target']:.3f}")  # fmt: skip
    ax.set_xlabel("cost per request (mean over orders)")
    ax.set_ylabel(f"P(running satisfaction >= {row['alpha']:.3f} at t = {row['by']})")
    ax.set_title(f"{row['bench']}: risk against cost over {row['seeds']} orders (points along a line: margins)")
    ax.legend(fontsize=7)
    return save(fig, out, f"risk_{row['bench']}")
