"""`sim plan`: the cheapest policy, of any family, that keeps an SLA by a deadline with a stated confidence.

An operator asks one question: what should I run so that alpha holds by T0, with probability P, at the least cost?
The candidates are every MESS+ setting searched (the alpha handed to it, V, c), every single model, and every other
deployable policy registered in sim.routers (a stationary mix estimated on the calibration split, the RouteLLM- and
RouterDC-style routers, ...), each handed alpha plus a margin where it takes an alpha. All are replayed on the same
N seed orders of the trace and judged by the same two bounds at the same assurance; the plan is the cheapest that
keeps the promise. Methods that know more than a deployed router could (the scored stream's outcomes, whole-bench
accuracies) are never candidates.

MESS+ approaches alpha from below: the queue rests near V x (price of accuracy), and the shortfall after T requests
is about that over T (the paper's Theorem 1), so the planner hands it a higher target (A + margin), a smaller V or
more exploration. The guarantee is empirical, over orders of this trace: a future stream with another mix of
requests is not covered.

Only the requests up to the deadline (the last checkpoint with --every) are simulated while searching: a run's
first T decisions depend on nothing after them, so the SLA is judged exactly, and the cost compared is that of
every request up to the deadline, an exploration at the whole zoo's cost. The pick is then replayed over the whole
scored stream, for its cost there. Where nothing of any family meets, MESS+'s exploration is raised (c doubles) up
to exploring every request before the deadline, whose answers come from the best model so far.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from statistics import NormalDist
from typing import Literal

import numpy as np
import polars as pl

from messplus.common import UserError, atomic_folder, check_out_folder, recover_folder
from messplus.common.options import opt, validate
from messplus.sim import mess
from messplus.sim.bench import Bench, alpha_rules, check_alphas, load, resolve_alphas
from messplus.sim.config import ALPHA_HELP, MAX_C, MAX_K, MAX_V, Alpha, Cost, SweepConfig
from messplus.sim.inputs import Inputs
from messplus.sim.metrics import outcome
from messplus.sim.results import CHECKSUMS, KEY, VERSION, options, write_checksums
from messplus.sim.routers import MESSPLUS, registry
from messplus.sim.routers.bounds import accuracy_price
from messplus.sim.sweep import routes
from messplus.traces.dense import to_arrays
from messplus.traces.io import load_benches, write_parquet

log = logging.getLogger(__name__)

PLAN_SCHEMA = {
    "bench": pl.String, "family": pl.String, "method": pl.String, "pick": pl.Boolean, "meets": pl.Boolean,
    "verdict": pl.String, "alpha": pl.Float64, "by": pl.Int64, "every": pl.Int64, "horizon": pl.Int64,
    "confidence": pl.Float64, "assurance": pl.Float64, "seeds": pl.Int64, "alpha_target": pl.Float64,
    "V": pl.Float64, "v_unit": pl.String, "c": pl.Float64, "k": pl.Float64, "p_meet": pl.Float64,
    "p_meet_lower": pl.Float64, "tolerance_bound": pl.Float64, "cost_per_request": pl.Float64,
    "cost_per_request_stream": pl.Float64, "cheapest_single": pl.String, "cost_per_request_single": pl.Float64,
    "saving_vs_single": pl.Float64, "margin": pl.Float64, "margin_theorem": pl.Float64,
    "validate_seeds": pl.Int64, "p_meet_validated": pl.Float64, "cost_per_request_validated": pl.Float64,
}  # fmt: skip
MET, INFEASIBLE = "met", "infeasible"  # verdicts: a plan; no candidate of any family keeps the promise
KEYS = ["family", "method", "alpha_target", "V", "c"]  # one candidate setting
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
    seeds: str = opt("0-99", "Seeds whose orders of the trace to plan on: FIRST-LAST or a comma list, as `sim "
                     "sweep --seeds` names seeds (the bounds need at least 32 orders for --confidence 0.95 at "
                     "--assurance 0.9, 161 for 0.99).")
    validate_seeds: str = opt("", "Fresh seeds to check the plan on: FIRST-LAST (e.g. 1000-1199) or a comma list, "
                              "none of them in --seeds.")
    margins: tuple[float, ...] = opt((0.0, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1),
                                     "Margins searched: MESS+ is handed alpha + margin (capped at the best model's "
                                     "accuracy).", lo=0, hi=1)
    Vs: tuple[float, ...] = opt((1e-2, 1e-3, 1e-4, 1e-5), "Cost weights V searched (unit: see --v-unit; at most "
                                "1e12, as in `sim sweep`).", flag="--V", lo=0, hi=MAX_V)
    v_unit: Literal["raw", "largest"] = opt("raw", "What V multiplies (as in `sim sweep`).")
    cs: tuple[float, ...] = opt((0.1, 0.5), "Exploration scales c searched (at most 1e9, as in `sim sweep`).",
                                flag="--c", lo=0, lo_open=True, hi=MAX_C)
    max_c: float | None = opt(None, "Where nothing in --c meets, c doubles from the largest in --c up to this "
                              "(default: T^k, exploring every request up to the deadline; give the largest --c to "
                              "search --c only; at most 1e9).", lo=0, lo_open=True, hi=MAX_C)
    k: float = opt(0.25, "Exploration decay k (at most 10, as in `sim sweep`).", lo=0, hi=MAX_K)
    cost: Cost = opt("energy_j", "Cost minimised (as in `sim sweep`).")
    encoder: str = opt("auto", "Predictor input (as in `sim sweep`).")
    calib_frac: float = opt(0.2, "Leading share of each order held out (as in `sim sweep`; T0 counts after it); "
                            "the routers that are candidates fit on it.", lo=0, hi=0.9)
    cache_dir: str | None = opt(None, "Embedding cache (as in `sim sweep`: the same folder reuses its embeddings).")
    # fmt: on

    def planning(self) -> tuple[int, ...]:
        return seed_list(self.seeds, "--seeds")

    def validation(self) -> tuple[int, ...]:
        return seed_list(self.validate_seeds, "--validate-seeds") if self.validate_seeds.strip() else ()

    def check_seeds(self) -> None:
        """Before any work: seed lists well formed and apart, and enough planning orders that the bounds could keep
        the promise at all."""
        seeds, fresh = self.planning(), self.validation()
        shared = sorted(set(seeds) & set(fresh))
        if shared:
            raise UserError(f"--validate-seeds shares seed {shared[0]} with --seeds ({len(shared)} in all); fresh "
                            "orders must be new ones")  # fmt: skip
        need = max(seeds_needed(self.confidence, self.assurance), 3)
        while math.isinf(tolerance_factor(need, self.confidence, self.assurance)):  # too few for any sd estimate
            need += 1
        if len(seeds) < need:
            raise UserError(f"--seeds {self.seeds} names {len(seeds)} order{'s' * (len(seeds) != 1)}, too few for --confidence "
                            f"{self.confidence:g} at --assurance {self.assurance:g}: even if every order met, the "
                            f"bounds could not keep the promise; give at least {need}")  # fmt: skip


MAX_SEEDS = 100_000  # orders in one seed list: each is one more run of every candidate


def seed_list(text: str, flag: str) -> tuple[int, ...]:
    """Seeds from FIRST-LAST or a comma list of non-negative integers: non-empty, no repeats, at most MAX_SEEDS (a
    range is counted before it is built: 0-1000000000 is refused, not listed)."""
    text = text.strip()
    span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", text)
    if span:
        first, last = map(int, span.groups())
        if first > last:
            raise UserError(f"{flag} {text}: FIRST is above LAST, which names no seeds")
        if last - first + 1 > MAX_SEEDS:
            raise UserError(f"{flag} {text}: {last - first + 1} seeds, at most {MAX_SEEDS}")
        return tuple(range(first, last + 1))
    parts = [x.strip() for x in text.split(",") if x.strip()]
    if not all(x.isdigit() for x in parts):
        raise UserError(f"{flag}: expected FIRST-LAST or a comma list of seeds (whole numbers >= 0), got {text!r}")
    seeds = tuple(int(x) for x in parts)
    if not seeds:
        raise UserError(f"{flag} {text!r} names no seeds")
    if len(set(seeds)) < len(seeds):
        raise UserError(f"{flag}: values repeat ({text})")
    if len(seeds) > MAX_SEEDS:
        raise UserError(f"{flag}: {len(seeds)} seeds, at most {MAX_SEEDS}")
    return seeds


def sweep_config(cfg: PlanConfig, bench: str, targets: tuple[float, ...], seeds: tuple[int, ...]) -> SweepConfig:
    return SweepConfig(benches=(bench,), alphas=targets, Vs=cfg.Vs, cs=cfg.cs, ks=(cfg.k,), seeds=seeds,
                       methods=("messplus",), cost=cfg.cost, v_unit=cfg.v_unit, encoder=cfg.encoder,
                       calib_frac=cfg.calib_frac, cache_dir=cfg.cache_dir)  # fmt: skip


def checkpoints(by: int, S: int, every: int | None) -> np.ndarray:
    """[n] the stream positions (1-based, as t in steps.parquet) where the SLA is measured."""
    return np.arange(by, S + 1, every) if every else np.array([by])


def up_to(b: Bench, H: int) -> Bench:
    """The bench with every seed's stream cut after its first H requests. A run's decisions, predictions and
    explorations up to H depend on nothing after it (the explore probability of position t is c / t^k, the
    predictor at t has seen only what came before), so they are exactly those of the whole stream."""
    cut = {s: replace(d, order=d.order[: d.n_calib + H], explore_u=d.explore_u[:H], feedback_u=d.feedback_u[:H],
                      choice_u=d.choice_u[:H], noise=d.noise[:H]) for s, d in b.draws.items()}  # fmt: skip
    return replace(b, draws=cut)


def judged_runs(sat: np.ndarray, cost: np.ndarray, at: np.ndarray) -> dict[str, np.ndarray]:
    """What the planner reads of R runs, each [R, S'] per request (S' >= the last checkpoint): the lowest running
    satisfaction at the checkpoints `at` (1-based), the cost per request up to the last checkpoint, and over all
    S' requests run."""
    running = np.cumsum(sat, axis=1)[:, at - 1] / at  # [R, n checkpoints]
    return {"running": running.min(1), "cost": cost[:, : at[-1]].mean(1), "cost_stream": cost.mean(1)}


def outcomes(scfg: SweepConfig, b: Bench, at: np.ndarray, progress=None) -> pl.DataFrame:
    """One row per MESS+ run: its family, method, target, V, c and judged_runs() figures over the stream it ran (b
    cut with up_to: the requests up to the last checkpoint; whole: the scored stream). Runs are consumed chunk by
    chunk."""
    trained = mess.train(scfg, {b.name: b}, progress, decisions_only=True)[b.name]
    rows = []
    for block in mess.blocks(scfg, b, *trained):
        R = len(block.alpha)
        rows.append(pl.DataFrame({
            "family": [MESSPLUS] * R, "method": [MESSPLUS] * R, "alpha_target": block.alpha, "V": block.config["V"],
            "c": block.config["c"], **judged_runs(block.outcome.sat, block.outcome.cost, at),
        }))  # fmt: skip
    return pl.concat(rows)


def router_outcomes(scfg: SweepConfig, b: Bench, at: np.ndarray, only: str | None = None) -> pl.DataFrame:
    """One row per (seed, router setting) of every deployable policy in sim.routers (or the run name `only`), as
    `sim sweep` routes them (sim.sweep.routes): fitted on the seed's calibration split, then routing its stream,
    handed each of b's alphas, and each V for an online policy; a per-model method, which reads no alpha, once,
    with no alpha_target."""
    methods = registry()
    deployable = tuple(m.name for m in methods.values() if m.deployable and m.replayed)
    cfg = replace(scfg, methods=deployable if only is None else (only.split(":")[0],))
    rows = []
    for seed in scfg.seeds:
        seen, stream = set(), b.split(b.draws[seed].stream)
        for name, _, alpha, V, served in routes(cfg, b, seed):
            per_model = methods[name.split(":")[0]].per_model
            if (only is not None and name != only) or (per_model and name in seen):
                continue
            seen.add(name)
            o = outcome(served.chosen[None], served.exploring[None], stream.S[None], stream.E[None], np.zeros(1))
            rows.append({"family": name.split(":")[0], "method": name, "alpha_target": None if per_model else alpha,
                         "V": V, "c": None, **{k: v[0] for k, v in judged_runs(o.sat, o.cost, at).items()}})  # fmt: skip
    schema = {"family": pl.String, "method": pl.String, "alpha_target": pl.Float64, "V": pl.Float64,
              "c": pl.Float64, "running": pl.Float64, "cost": pl.Float64, "cost_stream": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


@dataclass(frozen=True)
class Replays:
    """Where plan_bench replays its candidates: `mess` as outcomes() and `routers` as router_outcomes(), the same rows
    in the same order wherever they run. In this process by default; sim.distributed spreads them over a Ray
    cluster."""

    mess: Callable[..., pl.DataFrame] = outcomes
    routers: Callable[..., pl.DataFrame] = router_outcomes


HERE = Replays()


def screened(scfg: SweepConfig, b: Bench, at: np.ndarray, alpha: float, confidence: float, progress=None,
             level: float = 0.01, replays: Replays = HERE) -> pl.DataFrame:  # fmt: skip
    """outcomes() in two stages: every c of scfg on the first quarter of the seeds, then only the c values with a
    setting that could still meet on the rest. A c is dropped when each of its settings failed on so many of the
    first seeds that, were its share of all orders >= confidence, so many failures would happen with probability
    < level (a one-sided binomial test): a setting that can meet survives with probability > 1 - level."""
    n1 = math.ceil(len(scfg.seeds) / 4)
    first = replays.mess(replace(scfg, seeds=scfg.seeds[:n1]), b, at, progress)
    fewest = first.group_by(KEYS).agg(fails=(pl.col("running") < alpha - TOL).sum())
    fewest = fewest.group_by("c").agg(pl.col("fails").min())
    keep = tuple(c for c, f in fewest.iter_rows() if binomial_tail(f, n1, 1 - confidence) >= level)
    if not keep or n1 == len(scfg.seeds):
        return first
    rest = replays.mess(replace(scfg, cs=tuple(sorted(keep)), seeds=scfg.seeds[n1:]), b, at, progress)
    return pl.concat([first, rest])


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
    """Per candidate (family, method, target, V, c): the mean costs and what judged() says of it; the plan is the
    cheapest that meets."""
    per_setting = [
        pl.col("cost").mean().alias("cost_per_request"),
        pl.col("cost_stream").mean().alias("cost_per_request_stream"),
        pl.col("running").alias("values"),
        pl.len().alias("n"),
    ]
    table = runs.group_by(KEYS).agg(per_setting).sort("cost_per_request", *KEYS, nulls_last=True)
    verdicts = pl.DataFrame([judged(np.asarray(v), alpha, confidence, assurance) for v in table["values"]],
                            schema={"p_meet": pl.Float64, "p_meet_lower": pl.Float64, "tolerance_bound": pl.Float64,
                                    "meets": pl.Boolean})  # fmt: skip
    table = pl.concat([table.drop("values"), verdicts], how="horizontal")
    ok = table.filter(pl.col("meets"))
    return table, (ok.row(0, named=True) if ok.height else None)


def family_bests(table: pl.DataFrame) -> list[dict]:
    """Each family's cheapest candidate that meets, else its most reliable (the highest bounds), in table order of
    the families' first appearance: MESS+ first."""
    out = []
    for _, g in table.group_by("family", maintain_order=True):
        ok = g.filter(pl.col("meets"))
        most_reliable = g.sort("p_meet_lower", "tolerance_bound", "cost_per_request", descending=[True, True, False])
        out.append((ok if ok.height else most_reliable).row(0, named=True))
    return sorted(out, key=lambda r: r["family"] != MESSPLUS)


def plan_bench(
    cfg: PlanConfig, trace, name: str, progress=None, replays: Replays = HERE
) -> tuple[list[dict], pl.DataFrame]:
    """The plan rows of one bench (each family's best, the pick among them) and every candidate (for the risk
    figure)."""
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
    runs = pl.concat([screened(scfg, b, at, alpha, cfg.confidence, progress, replays=replays),
                      replays.routers(scfg, b, at)])  # fmt: skip
    table, pick = choose(runs, alpha, cfg.confidence, cfg.assurance)
    c, top = max(cfg.cs), cfg.max_c if cfg.max_c is not None else H**cfg.k  # c >= H^k explores every request
    while pick is None and c < top:  # more exploration: explored requests get the best model so far's answer
        log.info("bench %s: no candidate meets; trying MESS+ with c = %g", name, min(2 * c, top))
        c = min(2 * c, top)
        more = screened(replace(scfg, cs=(c,)), b, at, alpha, cfg.confidence, progress, replays=replays)
        runs = pl.concat([runs, more])
        table, pick = choose(runs, alpha, cfg.confidence, cfg.assurance)
    planned = time.perf_counter()
    bench = {"bench": name, "alpha": alpha, "by": by, "every": cfg.every, "horizon": H, "confidence": cfg.confidence,
             "assurance": cfg.assurance, "seeds": len(seeds), "v_unit": cfg.v_unit, "k": cfg.k,
             "verdict": MET if pick is not None else INFEASIBLE, "validate_seeds": len(cfg.validation())}  # fmt: skip
    singles = table.filter(pl.col("family") == "single", pl.col("meets"))
    if singles.height:
        bench |= {"cheapest_single": singles["method"][0], "cost_per_request_single": singles["cost_per_request"][0]}
    rows = []
    for best in family_bests(table):
        row = bench | {k: best[k] for k in (*KEYS, "meets", "p_meet", "p_meet_lower", "tolerance_bound",
                                            "cost_per_request")}  # fmt: skip
        row["pick"] = pick is not None and all(best[k] == pick[k] for k in KEYS)
        if best["family"] == MESSPLUS:
            row["margin"] = best["alpha_target"] - alpha
            price = accuracy_price(acc, b.E.mean(0), alpha)
            row["margin_theorem"] = best["V"] / mess.cost_unit(scfg, b) * price / by
        if row["pick"]:
            row |= replayed(cfg, trace, full, best, at, alpha, replays)
            if "cost_per_request_single" in bench:
                row["saving_vs_single"] = 1 - best["cost_per_request"] / bench["cost_per_request_single"]
        rows.append(row)
    explain(rows)
    log.info("bench %s: planned in %.1f s (%d candidates on %d orders), pick replayed in %.1f s", name,
             planned - began, table.height, len(seeds), time.perf_counter() - planned)  # fmt: skip
    return rows, table


def replayed(cfg: PlanConfig, trace, full: Bench, pick: dict, at: np.ndarray, alpha: float,
             replays: Replays = HERE) -> dict:  # fmt: skip
    """The pick replayed over the whole scored stream: its cost per request there (on the validation seeds, else
    the planning ones) and, with --validate-seeds, the share of those fresh orders that met the SLA and its cost
    up to the deadline. Means over one chunk: a float column's mean follows its chunks, which depend on where the
    rows were made."""
    fresh = cfg.validation()
    seeds = fresh or cfg.planning()
    targets = (alpha,) if pick["alpha_target"] is None else (pick["alpha_target"],)
    vcfg = sweep_config(cfg, full.name, targets, seeds)
    if pick["V"] is not None:  # MESS+ or an online policy: the pick's V alone
        vcfg = replace(vcfg, Vs=(pick["V"],))
    b = load(vcfg, trace, full.name, Inputs(full.X, full.encoder, full.family))
    if pick["family"] == MESSPLUS:
        check = replays.mess(replace(vcfg, cs=(pick["c"],)), b, at)
    else:
        check = replays.routers(vcfg, b, at, only=pick["method"])
    check = check.rechunk()
    out = {"cost_per_request_stream": float(check["cost_stream"].mean())}
    if fresh:
        out |= {"p_meet_validated": float((check["running"] >= alpha - TOL).mean()),
                "cost_per_request_validated": float(check["cost"].mean())}  # fmt: skip
    return out


def explain(rows: list[dict]) -> None:
    """Say what the plan is against the other families, or why there is none."""
    r = rows[0]
    where = f"bench {r['bench']}: alpha {r['alpha']:.3f} by t = {r['by']}"
    promise = f"{r['confidence']:.0%} of orders at {r['assurance']:.0%} assurance"
    if r["verdict"] == INFEASIBLE:
        best = max(rows, key=lambda x: (x["p_meet_lower"], x["tolerance_bound"]))
        log.warning("%s is out of reach on this trace: no candidate of any family keeps it on %s (the most "
                    "reliable, %s, met it on %.0f%% of orders, lower bound %.0f%%); promise less or set a later "
                    "deadline", where, promise, best["method"], 100 * best["p_meet"], 100 * best["p_meet_lower"])  # fmt: skip
        return
    pick = next(x for x in rows if x["pick"])
    mess_best = next((x for x in rows if x["family"] == MESSPLUS), None)
    if pick["family"] != MESSPLUS and mess_best is not None:
        how = (f"its cheapest setting that keeps it costs {mess_best['cost_per_request']:.4g} per request"
               if mess_best["meets"] else "no MESS+ setting searched keeps it")  # fmt: skip
        log.warning("%s: the plan is %s at %.4g per request, not MESS+: %s", where, pick["method"],
                    pick["cost_per_request"], how)  # fmt: skip


def run_plan(
    cfg: PlanConfig, traces: Path, progress=None, replays: Replays = HERE
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """plan [one row per bench and family: its best candidate, `pick` marking the plan] (PLAN_SCHEMA) and, per
    bench, every candidate. replays: where the candidates are replayed (this process by default)."""
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
            bench_rows, tables[name] = plan_bench(cfg, trace, name, progress, replays)
            rows += bench_rows
    return pl.DataFrame([{k: r.get(k) for k in PLAN_SCHEMA} for r in rows], schema=PLAN_SCHEMA), tables


@contextmanager
def one_thread() -> Iterator[None]:
    """torch and numpy's BLAS on one thread while planning. The predictor's products and the routers' fits are many
    and small, and threads that wait for each other on them cost more than they gain on a busy machine: Qwen2
    LogiQA took 21.6 s on two threads against 13.6 s on one with the other core busy, and 15% less on two when
    idle; a router's [654, 384] x [384, 4] product took 2.1 ms on two busy threads, 0.18 ms on one. The results
    are the same."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


PLAN_FILE = "plan.parquet"


def check_plan_out(out: Path, traces: Path) -> None:
    """Before any work: --out is a folder we may replace with a plan set (absent, empty, or a plan set already),
    never the trace folder, a sweep's results or any other folder, in a writable place."""
    recover_folder(out)
    check_out_folder(out)
    if traces.is_dir() and out.resolve() == traces.resolve():
        raise UserError(f"--out {out}: is the trace folder; plan.parquet there would be read as a trace next time")
    ours = lambda name: name in (PLAN_FILE, CHECKSUMS) or name.startswith("risk_")  # noqa: E731
    foreign = sorted(p.name for p in out.iterdir() if not ours(p.name)) if out.is_dir() else []
    if foreign:
        raise UserError(f"--out {out}: holds {foreign[0]!r}, so it is not a plan folder; choose another --out")


def write_plan(table: pl.DataFrame, cfg: PlanConfig, traces: Path, out: Path, figures) -> list[Path]:
    """The plan set, atomically (temporary folder, then rename over `out`, as a sweep's results): plan.parquet,
    with the options and version in its metadata, each figure figures(folder) draws, and their checksums. A kill
    leaves the old set whole; a replan of one bench leaves no other bench's stale figure behind."""
    meta = {"results_version": VERSION, "messplus_version": version("messplus"), "options": options(cfg, traces)}
    try:
        with atomic_folder(out) as new:
            written = [write_parquet(table, new / PLAN_FILE, {KEY: meta}), *figures(new)]
            write_checksums(new)
    except OSError as e:
        raise UserError(f"--out {out}: could not write the plan ({e.strerror or e})") from None
    return [out / p.name for p in written]


def risk_figure(candidates: pl.DataFrame, rows: list[dict], unit: str, out: Path) -> Path:
    """The risk curve of one bench: share of orders that met the SLA by the deadline against cost per request up
    to it, every candidate a point. MESS+ settings on lines by (V, c) (points along a line: margins; colour V,
    marker c), each single model a labelled star, every other family its own marker (points: margins); each
    family's best ringed, the plan ringed thick."""
    import matplotlib.pyplot as plt

    from messplus.analysis.plots import COLORS, MARKERS, save

    r = rows[0]
    fig, ax = plt.subplots(figsize=(7.4, 4.8))
    mess_runs = candidates.filter(pl.col("family") == MESSPLUS)
    Vs, cs = sorted(mess_runs["V"].unique()), sorted(mess_runs["c"].unique())
    for (V, c), g in mess_runs.group_by("V", "c", maintain_order=True):
        g = g.sort("cost_per_request")
        ax.plot(g["cost_per_request"], g["p_meet"], marker=MARKERS[cs.index(c) % len(MARKERS)], ls=":", lw=0.8,
                ms=4, color=COLORS[Vs.index(V) % len(COLORS)], label=f"MESS+ V={V:g}, c={c:g}")  # fmt: skip
    others = candidates.filter(pl.col("family") != MESSPLUS)
    for i, ((family,), g) in enumerate(others.group_by("family", maintain_order=True)):
        if family == "single":
            ax.scatter(g["cost_per_request"], g["p_meet"], marker="*", s=90, color="k", zorder=3, label="single models")
            for m, x, y in g.select("method", "cost_per_request", "p_meet").iter_rows():
                ax.annotate(m.removeprefix("single:"), (x, y), fontsize=6, xytext=(3, -8), textcoords="offset points")
        else:
            ax.scatter(g["cost_per_request"], g["p_meet"], marker=MARKERS[(i + 3) % len(MARKERS)], s=22,
                       color=COLORS[(len(Vs) + i) % len(COLORS)], zorder=3, label=family)  # fmt: skip
    ax.axhline(r["confidence"], color="grey", ls="--", lw=0.8,
               label=f"confidence {r['confidence']:g} (bounds at assurance {r['assurance']:g})")  # fmt: skip
    for best in rows:
        ax.scatter([best["cost_per_request"]], [best["p_meet"]], s=320 if best["pick"] else 160, facecolors="none",
                   edgecolors="k", linewidths=2.2 if best["pick"] else 0.8, zorder=4)  # fmt: skip
        what = "plan: " if best["pick"] else ""
        ax.annotate(f"{what}{best['method']}", (best["cost_per_request"], best["p_meet"]), fontsize=7,
                    xytext=(6, 6), textcoords="offset points", weight="bold" if best["pick"] else "normal")  # fmt: skip
    ax.set_xlabel(f"cost per request over t = 1..{r['horizon']} ({unit}; explorations at the whole zoo's cost)")
    ax.set_ylabel(f"P(running satisfaction >= {r['alpha']:.3f} at t = {r['by']})")
    verdict = "no candidate keeps it" if r["verdict"] == INFEASIBLE else "ringed: each family's best"
    ax.set_title(f"{r['bench']}: risk against cost over {r['seeds']} orders ({verdict})", fontsize=10)
    ax.legend(fontsize=6, loc="lower right", ncol=2)
    return save(fig, out, f"risk_{r['bench']}")
