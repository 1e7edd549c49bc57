"""`sim plan`: the cheapest MESS+ setting that keeps an SLA by a deadline, with a stated confidence.

MESS+ approaches alpha from below: the queue rests near V x (price of accuracy), and the shortfall after T requests
is about that over T (the paper's Theorem 1). To keep "running satisfaction >= A at request T0" the planner hands
MESS+ a higher target (A + margin), or a smaller V, or more exploration, and picks the cheapest combination that
met the SLA on at least a share P of N seed orders of the trace. The guarantee is empirical, over orders of this
trace: a future stream with another mix of requests is not covered.

Only the requests up to the deadline (the last checkpoint with --every) are simulated: a MESS+ run's first T
decisions depend on nothing after them, so the SLA is judged exactly, and the cost compared is the cost of those
requests. Where nothing searched meets, exploration is raised (c doubles) up to exploring every request before the
deadline, whose answers come from the best model so far; the row also says how often always serving the most
accurate model would have met the SLA, which tells an SLA out of reach from one MESS+ cannot keep.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from statistics import NormalDist
from typing import Literal

import numpy as np
import polars as pl

from messplus.common import UserError
from messplus.common.options import opt, validate
from messplus.sim import mess
from messplus.sim.bench import Bench, alpha_rules, check_alphas, load, resolve_alphas
from messplus.sim.config import ALPHA_HELP, Alpha, Cost, SweepConfig
from messplus.sim.inputs import Inputs
from messplus.sim.results import KEY, VERSION, options
from messplus.sim.routers.bounds import accuracy_price
from messplus.traces.dense import to_arrays
from messplus.traces.io import load_benches, write_parquet

log = logging.getLogger(__name__)

PLAN_SCHEMA = {
    "bench": pl.String, "found": pl.Boolean, "verdict": pl.String, "alpha": pl.Float64, "by": pl.Int64,
    "every": pl.Int64, "horizon": pl.Int64, "confidence": pl.Float64, "assurance": pl.Float64, "seeds": pl.Int64,
    "alpha_target": pl.Float64, "V": pl.Float64, "v_unit": pl.String, "c": pl.Float64, "k": pl.Float64,
    "p_meet": pl.Float64, "p_meet_lower": pl.Float64, "tolerance_bound": pl.Float64, "cost_per_request": pl.Float64,
    "cost_per_request_unplanned": pl.Float64, "p_meet_unplanned": pl.Float64, "margin": pl.Float64,
    "margin_theorem": pl.Float64, "best_model": pl.String, "p_meet_best_model": pl.Float64,
    "p_meet_lower_best_model": pl.Float64, "cost_per_request_best_model": pl.Float64, "validate_seeds": pl.Int64,
    "p_meet_validated": pl.Float64, "cost_per_request_validated": pl.Float64,
}  # fmt: skip
MET, UNMET, INFEASIBLE = "met", "unmet", "infeasible"  # verdicts: a plan; none searched; out of any router's reach
TOL = 1e-12  # running satisfaction within this of alpha counts as meeting it (float rounding of k / T)


@dataclass(frozen=True)
class PlanConfig:
    """What the operator promises (alpha by a deadline, with a confidence) and the settings searched."""

    # fmt: off
    benches: tuple[str, ...] = opt((), "Benches to plan (default: every bench in the trace).", flag="--bench",
                                   empty_ok=True)
    alpha: tuple[Alpha | tuple[str, Alpha], ...] = opt(
        ("mid",), "The SLA, the running satisfaction promised, one per bench. " + ALPHA_HELP, lo=0, hi=1,
        lo_open=True, keyed=True)
    by: int | None = opt(None, "Deadline T0: the stream position (t in steps.parquet) at which the SLA is "
                         "measured (default: half the scored stream).", lo=1)
    every: int | None = opt(None, "Also require the SLA at every K-th request after T0.", lo=1)
    confidence: float = opt(0.95, "Share of seed orders that must meet the SLA (below 1: no finite sample bounds "
                            "a share of 1).", lo=0, hi=1, lo_open=True, hi_open=True)
    assurance: float = opt(0.9, "How sure the planner must be, from its --seeds orders, that the share of all "
                           "orders meeting the SLA is at least --confidence: a binomial lower bound on that share, "
                           "and a tolerance bound on the running satisfaction at the deadline (normal, its tail "
                           "stretched for skew), must both keep the promise.", lo=0.5, hi=1, hi_open=True)
    seeds: int = opt(100, "Seed orders of the trace to plan on (the bounds need at least 32 for --confidence 0.95 "
                     "at --assurance 0.9, 161 for 0.99).", lo=3)
    validate_seeds: str = opt("", "Fresh seeds to check the plan on: FIRST-LAST (e.g. 1000-1199) or a comma list; "
                              "the planning seeds never overlap them.")
    margins: tuple[float, ...] = opt((0.0, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1),
                                     "Margins searched: MESS+ is handed alpha + margin (capped at the best model's "
                                     "accuracy).", lo=0, hi=1)
    Vs: tuple[float, ...] = opt((1e-2, 1e-3, 1e-4, 1e-5), "Cost weights V searched (unit: see --v-unit).",
                                flag="--V", lo=0)
    v_unit: Literal["raw", "largest"] = opt("raw", "What V multiplies (as in `sim sweep`).")
    cs: tuple[float, ...] = opt((0.1, 0.5), "Exploration scales c searched.", flag="--c", lo=0, lo_open=True)
    max_c: float | None = opt(None, "Where nothing in --c meets, c doubles from the largest in --c up to this "
                              "(default: T^k, exploring every request up to the deadline; give the largest --c to "
                              "search --c only).", lo=0, lo_open=True)
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

    def check_seeds(self) -> None:
        """Before any work: enough planning orders that the bounds could keep the promise at all."""
        need = max(seeds_needed(self.confidence, self.assurance), 3)
        while math.isinf(tolerance_factor(need, self.confidence, self.assurance)):  # too few for any sd estimate
            need += 1
        if self.seeds < need:
            raise UserError(f"--seeds {self.seeds} is too few for --confidence {self.confidence:g} at --assurance "
                            f"{self.assurance:g}: even if every order met, the bounds could not keep the promise; "
                            f"give at least {need}")  # fmt: skip

    def planning(self) -> tuple[int, ...]:
        """The first `seeds` non-negative seeds outside the validation set."""
        held = set(self.validation())
        return tuple(itertools.islice((s for s in itertools.count() if s not in held), self.seeds))


def sweep_config(cfg: PlanConfig, bench: str, targets: tuple[float, ...], seeds: tuple[int, ...]) -> SweepConfig:
    return SweepConfig(benches=(bench,), alphas=targets, Vs=cfg.Vs, cs=cfg.cs, ks=(cfg.k,), seeds=seeds,
                       methods=("messplus",), cost=cfg.cost, v_unit=cfg.v_unit, encoder=cfg.encoder,
                       calib_frac=cfg.calib_frac)  # fmt: skip


def checkpoints(by: int, S: int, every: int | None) -> np.ndarray:
    """[n] the stream positions (1-based, as t in steps.parquet) where the SLA is measured."""
    return np.arange(by, S + 1, every) if every else np.array([by])


def up_to(b: Bench, H: int) -> Bench:
    """The bench with every seed's stream cut after its first H requests. A run's decisions, predictions and
    explorations up to H depend on nothing after it (the explore probability of position t is c / t^k, the
    predictor at t has seen only what came before), so they are exactly those of the whole stream."""
    cut = {s: replace(d, order=d.order[: d.n_calib + H], explore_u=d.explore_u[:H], feedback_u=d.feedback_u[:H],
                      choice_u=d.choice_u[:H]) for s, d in b.draws.items()}  # fmt: skip
    return replace(b, draws=cut)


def outcomes(scfg: SweepConfig, b: Bench, at: np.ndarray, progress=None) -> pl.DataFrame:
    """One row per MESS+ run: its target, V, c, its lowest running satisfaction at the checkpoints `at` (1-based
    positions) and its cost per request over the stream it ran (b cut with up_to: the requests up to the last
    checkpoint). Runs are consumed chunk by chunk."""
    trained = mess.train(scfg, {b.name: b}, progress, decisions_only=True)[b.name]
    rows = []
    for block in mess.blocks(scfg, b, *trained):
        o = block.outcome
        running = np.cumsum(o.sat, axis=1)[:, at - 1] / at  # [R, n checkpoints]
        rows.append(pl.DataFrame({
            "alpha_target": block.alpha, "V": block.config["V"], "c": block.config["c"],
            "running": running.min(1), "cost": o.cost.mean(1),
        }))  # fmt: skip
    return pl.concat(rows)


def screened(scfg: SweepConfig, b: Bench, at: np.ndarray, alpha: float, confidence: float, progress=None,
             level: float = 0.01) -> pl.DataFrame:  # fmt: skip
    """outcomes() in two stages: every c of scfg on the first quarter of the seeds, then only the c values with a
    setting that could still meet on the rest. A c is dropped when each of its settings failed on so many of the
    first seeds that, were its share of all orders >= confidence, so many failures would happen with probability
    < level (a one-sided binomial test): a setting that can meet survives with probability > 1 - level."""
    n1 = math.ceil(len(scfg.seeds) / 4)
    first = outcomes(replace(scfg, seeds=scfg.seeds[:n1]), b, at, progress)
    fewest = first.group_by("alpha_target", "V", "c").agg(fails=(pl.col("running") < alpha - TOL).sum())
    fewest = fewest.group_by("c").agg(pl.col("fails").min())
    keep = tuple(c for c, f in fewest.iter_rows() if binomial_tail(f, n1, 1 - confidence) >= level)
    if not keep or n1 == len(scfg.seeds):
        return first
    return pl.concat([first, outcomes(replace(scfg, cs=tuple(sorted(keep)), seeds=scfg.seeds[n1:]), b, at, progress)])


def binomial_pmf(n: int, p: float) -> np.ndarray:
    """[n + 1] P(X = i) for X ~ Binomial(n, p), in log space: math.comb(n, i) overflows a float from n = 1030."""
    i = np.arange(n + 1)
    if p <= 0 or p >= 1:
        return (i == (n if p >= 1 else 0)).astype(float)
    log_comb = math.lgamma(n + 1) - np.array([math.lgamma(j + 1) + math.lgamma(n - j + 1) for j in i])
    return np.exp(log_comb + i * math.log(p) + (n - i) * math.log1p(-p))


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return float(binomial_pmf(n, p)[max(k, 0) :].sum())


@functools.cache
def share_lower(met: int, n: int, assurance: float) -> float:
    """The lower confidence bound, at `assurance`, on the share of all orders that meet, from `met` of n (mid-p
    binomial: the largest miss rate q with P(X < misses) + P(X = misses) / 2 >= 1 - assurance, X ~ Bin(n, q);
    less conservative than Clopper-Pearson, close to its nominal level). Needs no shape of the running
    satisfaction: it catches a few orders that go badly wrong, which a normal bound does not see."""
    misses = n - met

    def mid_p(q: float) -> float:
        pmf = binomial_pmf(n, q)
        return float(pmf[:misses].sum() + pmf[misses] / 2)

    lo, hi = 0.0, 1.0  # mid_p falls as q rises: bisect for mid_p(q) = 1 - assurance
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid_p(mid) > 1 - assurance else (lo, mid)
    return 1 - hi


def seeds_needed(confidence: float, assurance: float) -> int:
    """The fewest orders whose lower bound (share_lower) can reach `confidence` at all, when every one meets:
    with no miss the bound is (2 (1 - assurance))^(1/n)."""
    return math.ceil(math.log(2 * (1 - assurance)) / math.log(confidence))


def tolerance_factor(n: int, share: float, assurance: float, skew: float = 0.0) -> float:
    """k of the one-sided tolerance bound mean - k sd (both estimated from n samples): with probability
    `assurance`, at least `share` of the population lies above it. For a normal population, Natrella's
    approximation: within about 1% of the exact noncentral-t value from n = 10 on (n = 100, 95% / 95%: 1.923
    against 1.927), larger below; inf where n is too small for any bound. A skewed population's lower quantile is
    taken by Cornish-Fisher, z - (z^2 - 1) skew / 6 with the skew clamped to [-1, 1] (one outlier among 100 orders
    gives -4, past where the expansion holds; the binomial bound already sees it), where that lies further out than
    the normal one (never closer): a long left tail (skew -0.9, LogiQA on the demo zoo) puts its 5% quantile 1.90
    sd below the mean, not 1.645."""
    zp, zg = NormalDist().inv_cdf(share), NormalDist().inv_cdf(assurance)
    zp = max(zp, zp - (zp**2 - 1) * max(min(skew, 1.0), -1.0) / 6)  # the one-term expansion holds for |skew| <= 1
    a = 1 - zg**2 / (2 * (n - 1))
    b = zp**2 - zg**2 / n
    return (zp + math.sqrt(zp**2 - a * b)) / a if a > 0 and zp**2 >= a * b else math.inf


def tolerance_bound(x: np.ndarray, share: float, assurance: float) -> float:
    """The running satisfaction that, with probability `assurance`, at least `share` of all orders reach, from the
    sample x [n] of orders: mean - k sd, k from tolerance_factor with the sample's skewness."""
    mean, sd = float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0
    skew = float(((x - mean) ** 3).mean() / x.std() ** 3) if sd > 0 else 0.0
    return mean - tolerance_factor(len(x), share, assurance, skew) * sd if sd > 0 else mean


def judged(x: np.ndarray, alpha: float, confidence: float, assurance: float) -> dict:
    """What the planner says of one setting from its running satisfactions x [n] over orders: the share that met
    alpha (p_meet), its lower confidence bound (p_meet_lower), the tolerance bound of the running satisfaction, and
    whether, at `assurance`, both bounds keep the promise (meets: p_meet_lower >= confidence and tolerance_bound >=
    alpha). The bounds guard against the luck of the planning seeds: the cheapest of many settings that met on
    exactly a share P of them meets on fewer of all orders."""
    met = int((x >= alpha - TOL).sum())
    lower, bound = share_lower(met, len(x), assurance), tolerance_bound(x, confidence, assurance)
    return {"p_meet": met / len(x), "p_meet_lower": lower, "tolerance_bound": bound,
            "meets": lower >= confidence and bound >= alpha - TOL}  # fmt: skip


def choose(runs: pl.DataFrame, alpha: float, confidence: float, assurance: float) -> tuple[pl.DataFrame, dict | None]:
    """Per setting (target, V, c): the mean cost and what judged() says of it; the plan is the cheapest that
    meets."""
    per_setting = [
        pl.col("cost").mean().alias("cost_per_request"),
        pl.col("running").alias("values"),
        pl.len().alias("n"),
    ]
    table = runs.group_by("alpha_target", "V", "c").agg(per_setting).sort("cost_per_request", "alpha_target", "V", "c")
    verdicts = pl.DataFrame([judged(np.asarray(v), alpha, confidence, assurance) for v in table["values"]],
                            schema={"p_meet": pl.Float64, "p_meet_lower": pl.Float64, "tolerance_bound": pl.Float64,
                                    "meets": pl.Boolean})  # fmt: skip
    table = pl.concat([table.drop("values"), verdicts], how="horizontal")
    ok = table.filter(pl.col("meets"))
    return table, (ok.row(0, named=True) if ok.height else None)


def best_model(b: Bench, alpha: float, at: np.ndarray, seeds: tuple[int, ...]) -> tuple[int, np.ndarray, float]:
    """The most accurate model on the trace, its lowest running satisfaction at the checkpoints of each seed's
    order [seeds], and its cost per request up to the last checkpoint: what serving it alone would do."""
    m = int(np.argmax(b.arrays.satisfied.mean(0)))
    rows = np.stack([b.draws[s].stream[: at[-1]] for s in seeds])  # [seeds, H]
    running = np.cumsum(b.arrays.satisfied[rows, m], axis=1)[:, at - 1] / at
    return m, running.min(1), float(b.E[rows, m].mean())


def plan_bench(cfg: PlanConfig, trace, name: str, progress=None) -> tuple[dict, pl.DataFrame]:
    """The plan row of one bench and every candidate setting (for the risk figure)."""
    began = time.perf_counter()
    acc = to_arrays(trace, name).satisfied.mean(0)
    alpha = resolve_alphas(acc, cfg.alpha, name)[0]
    targets = tuple(sorted({min(alpha + m, float(acc.max())) for m in cfg.margins}))
    seeds = cfg.planning()
    scfg = sweep_config(cfg, name, targets, seeds)
    validate(scfg)
    full = load(scfg, trace, name, progress=progress)
    S = full.n_stream
    by = cfg.by or S // 2
    if by > S:
        raise UserError(f"bench {name}: --by {by} lies past the scored stream ({S} requests)")
    at = checkpoints(by, S, cfg.every)
    H = int(at[-1])
    b = up_to(full, H)
    runs = screened(scfg, b, at, alpha, cfg.confidence, progress)
    table, best = choose(runs, alpha, cfg.confidence, cfg.assurance)
    c, top = max(cfg.cs), cfg.max_c if cfg.max_c is not None else H**cfg.k  # c >= H^k explores every request
    while best is None and c < top:  # more exploration: explored requests get the best model so far's answer
        log.info("bench %s: no setting with c <= %g meets; trying c = %g", name, c, min(2 * c, top))
        c = min(2 * c, top)
        runs = pl.concat([runs, screened(replace(scfg, cs=(c,)), b, at, alpha, cfg.confidence, progress)])
        table, best = choose(runs, alpha, cfg.confidence, cfg.assurance)
    m, solo, solo_cost = best_model(b, alpha, at, seeds)
    alone = judged(solo, alpha, cfg.confidence, cfg.assurance)
    row = {"bench": name, "alpha": alpha, "by": by, "every": cfg.every, "horizon": H, "confidence": cfg.confidence,
           "assurance": cfg.assurance, "seeds": cfg.seeds, "v_unit": cfg.v_unit, "k": cfg.k,
           "validate_seeds": len(cfg.validation()), "best_model": full.models[m],
           "p_meet_best_model": alone["p_meet"], "p_meet_lower_best_model": alone["p_meet_lower"],
           "cost_per_request_best_model": solo_cost}  # fmt: skip
    shown = best or table.sort(
        "p_meet_lower", "tolerance_bound", "cost_per_request", descending=[True, True, False]
    ).row(0, named=True)  # where none meets: the most reliable setting, marked as not meeting
    row |= {key: shown[key] for key in ("alpha_target", "V", "c", "p_meet", "p_meet_lower", "tolerance_bound",
                                        "cost_per_request")}  # fmt: skip
    row["margin"] = shown["alpha_target"] - alpha
    row["margin_theorem"] = shown["V"] / mess.cost_unit(scfg, b) * accuracy_price(acc, b.E.mean(0), alpha) / by
    same = table.filter(pl.col("alpha_target") == targets[0], pl.col("V") == shown["V"], pl.col("c") == shown["c"])
    row |= {"cost_per_request_unplanned": same["cost_per_request"][0], "p_meet_unplanned": same["p_meet"][0]}
    row["found"] = best is not None
    row["verdict"] = MET if best is not None else UNMET if alone["meets"] else INFEASIBLE
    planned = time.perf_counter()
    explain(row, c)
    if cfg.validation():
        vcfg = replace(scfg, alphas=(shown["alpha_target"],), Vs=(shown["V"],), cs=(shown["c"],),
                       seeds=cfg.validation())  # fmt: skip
        fresh = up_to(load(vcfg, trace, name, Inputs(full.X, full.encoder, full.family)), H)
        check = outcomes(vcfg, fresh, at)
        row["p_meet_validated"] = float((check["running"] >= alpha - TOL).mean())
        row["cost_per_request_validated"] = float(check["cost"].mean())
    log.info("bench %s: planned in %.1f s (%d settings on %d orders)%s", name, planned - began, table.height,
             len(seeds), f", validated in {time.perf_counter() - planned:.1f} s" if cfg.validation() else "")  # fmt: skip
    return row, table


def explain(row: dict, c_searched: float) -> None:
    """Say why no plan was found (or why the one found is a poor deal), beside the table's numbers."""
    where = f"bench {row['bench']}: alpha {row['alpha']:.3f} by t = {row['by']}"
    promise = f"{row['confidence']:.0%} of orders at {row['assurance']:.0%} assurance"
    solo = (f"always serving the most accurate model ({row['best_model']}) meets it on "
            f"{row['p_meet_best_model']:.0%} of orders (lower bound {row['p_meet_lower_best_model']:.0%}) at "
            f"{row['cost_per_request_best_model']:.4g} per request")  # fmt: skip
    if row["verdict"] == INFEASIBLE:
        log.warning("%s is out of reach on this trace: %s, which does not keep it on %s; promise less or set a "
                    "later deadline", where, solo, promise)  # fmt: skip
    elif row["verdict"] == UNMET:
        log.warning("%s: no MESS+ setting searched (c up to %g) keeps it on %s (the most reliable: %.0f%%, lower "
                    "bound %.0f%%), but %s: the predictor picks worse models than that", where, c_searched, promise,
                    100 * row["p_meet"], 100 * row["p_meet_lower"], solo)  # fmt: skip
    elif row["cost_per_request"] > row["cost_per_request_best_model"]:
        log.warning("%s: the plan costs %.4g per request, more than %s", where, row["cost_per_request"], solo)


def run_plan(cfg: PlanConfig, traces: Path, progress=None) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """plan [one row per bench] (PLAN_SCHEMA) and, per bench, every candidate setting."""
    validate(cfg)
    cfg.check_seeds()
    found = load_benches(traces, cfg.benches or None)
    check_alphas(cfg.alpha, tuple(found))
    several = [b for b in found if len(alpha_rules(cfg.alpha, b)) > 1]
    if several:
        raise UserError(f"--alpha gives bench {several[0]} more than one value; a plan keeps one SLA per bench")
    rows, tables = [], {}
    with one_thread():
        for name, trace in found.items():
            row, tables[name] = plan_bench(cfg, trace, name, progress)
            rows.append(row)
    return pl.DataFrame([{k: r.get(k) for k in PLAN_SCHEMA} for r in rows], schema=PLAN_SCHEMA), tables


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread while planning. The predictor's products are many and small (a window of positions at a
    time), and threads that wait for each other on them cost more than they gain on a busy machine: Qwen2 LogiQA
    took 21.6 s on two threads against 13.6 s on one with the other core busy, and 15% less on two when idle. The
    results are the same."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_plan(table: pl.DataFrame, cfg: PlanConfig, traces: Path, out: Path) -> Path:
    """plan.parquet, with the options and version in its metadata as for a sweep's results."""
    meta = {"results_version": VERSION, "messplus_version": version("messplus"), "options": options(cfg, traces)}
    return write_parquet(table, out / "plan.parquet", {KEY: meta})


def risk_figure(candidates: pl.DataFrame, row: dict, out: Path) -> Path:
    """The risk curve: share of orders that met the SLA by the deadline against cost per request, every candidate
    setting a point (colour: V, marker: c), the plan ringed, and always serving the most accurate model a star."""
    import matplotlib.pyplot as plt

    from messplus.analysis.plots import COLORS, MARKERS, save

    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    Vs, cs = sorted(candidates["V"].unique()), sorted(candidates["c"].unique())
    for (V, c), g in candidates.group_by("V", "c"):
        g = g.sort("cost_per_request")
        ax.plot(g["cost_per_request"], g["p_meet"], marker=MARKERS[cs.index(c) % len(MARKERS)], ls=":", lw=0.8,
                color=COLORS[Vs.index(V) % len(COLORS)], label=f"V={V:g}, c={c:g}")  # fmt: skip
    ax.axhline(row["confidence"], color="grey", ls="--", lw=0.8,
               label=f"confidence {row['confidence']:g} (bounds at assurance {row['assurance']:g})")  # fmt: skip
    if row.get("cost_per_request_best_model") is not None:
        ax.scatter([row["cost_per_request_best_model"]], [row["p_meet_best_model"]], marker="*", s=120, color="k",
                   zorder=4, label=f"always {row['best_model']}")  # fmt: skip
    if row.get("V") is not None:
        what = "plan" if row["found"] else "most reliable (not met)"
        ax.scatter([row["cost_per_request"]], [row["p_meet"]], s=180, facecolors="none", edgecolors="k", zorder=4,
                   label=f"{what}: alpha handed {row['alpha_target']:.3f}")  # fmt: skip
    ax.set_xlabel(f"cost per request over t = 1..{row['horizon']} (mean over orders)")
    ax.set_ylabel(f"P(running satisfaction >= {row['alpha']:.3f} at t = {row['by']})")
    ax.set_title(f"{row['bench']}: risk against cost over {row['seeds']} orders (points along a line: margins)")
    ax.legend(fontsize=7)
    return save(fig, out, f"risk_{row['bench']}")
