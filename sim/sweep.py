"""`sim sweep`: replay one trace under a grid of configurations, for MESS+ and every baseline, into two tables.

Flow: load each bench -> draw each seed's randomness -> train every predictor trajectory at once
(sim.predictor) -> advance every MESS+ run's queue together per bench (sim.engine) -> baselines -> tables.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
import polars as pl
import torch
from messplus.common import UserError
from messplus.sim import baselines
from messplus.sim.config import COST_ESTIMATES, METHODS, RESULTS_KEY, RESULTS_VERSION, PredictorConfig, SweepConfig
from messplus.sim.draws import Draws, draw, explore_prob
from messplus.sim.engine import cost_estimates, replay_queues
from messplus.sim.inputs import Inputs, request_inputs
from messplus.sim.metrics import auc_z, bce, nan_to_none, outcome, predictor_quality, ranks_agree, steps, summary
from messplus.sim.predictor import Group, Trained, predict_groups
from messplus.sim.presets import FAMILIES
from messplus.traces.dense import BenchArrays, to_arrays
from messplus.traces.io import Trace, load_benches, write_parquet

CALIBRATED = ("routellm", "routellm-paper", "routerdc")


@dataclass(frozen=True)
class Bench:
    arrays: BenchArrays
    X: np.ndarray  # [T, h] predictor inputs
    encoder: str
    pred: PredictorConfig  # the predictor settings for this bench
    family: str  # the preset table they came from
    E: np.ndarray  # [T, M] the minimised cost
    alphas: tuple[float, ...]
    draws: dict[int, Draws]


@dataclass(frozen=True)
class Results:
    runs: pl.DataFrame
    steps: pl.DataFrame
    predictions: pl.DataFrame
    warnings: list[str]
    meta: dict
    quality: pl.DataFrame  # sim.metrics.predictor_quality of the MESS+ runs (printed, not written: runs holds it)

    def write(self, out: Path) -> list[Path]:
        tables = {"runs": self.runs, "steps": self.steps, "predictions": self.predictions}
        return [write_parquet(df, out / f"{name}.parquet", {RESULTS_KEY: self.meta}) for name, df in tables.items()]


def check(cfg: SweepConfig) -> None:
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r} (choose from {', '.join(METHODS)})")
    bad = [m for m in cfg.cost_estimates if m not in COST_ESTIMATES]
    if bad:
        raise UserError(f"unknown --cost-estimate {bad[0]!r} (choose from {', '.join(COST_ESTIMATES)})")
    for name, values, lo, hi in (("--feedback", cfg.feedbacks, 0.0, 1.0), ("--calib-frac", [cfg.calib_frac], 0.0, 0.9)):
        if any(not lo <= v <= hi for v in values):
            raise UserError(f"{name} must lie in [{lo}, {hi}]")
    if any(isinstance(a, float) and not 0 < a <= 1 for a in cfg.alphas):
        raise UserError("--alpha must lie in (0, 1] or be 'mid'")
    if any(c <= 0 for c in cfg.cs) or any(k < 0 for k in cfg.ks) or any(v < 0 for v in cfg.Vs):
        raise UserError("--c must be > 0, --k and --V >= 0")
    if cfg.preset not in ("auto", *FAMILIES):
        raise UserError(f"--preset must be one of auto, {', '.join(FAMILIES)}, not {cfg.preset!r}")
    if cfg.epochs is not None and cfg.epochs < 1:
        raise UserError("--epochs must be >= 1")
    if cfg.input_dropout is not None and not 0 <= cfg.input_dropout < 1:
        raise UserError("--input-dropout must lie in [0, 1)")
    if cfg.clip_norm is not None and not cfg.clip_norm >= 0:
        raise UserError("--clip-norm must be >= 0 (0: off)")
    if cfg.calib_frac == 0 and set(cfg.methods) & set(CALIBRATED):
        raise UserError(f"{', '.join(CALIBRATED)} need a calibration split: set --calib-frac > 0 or drop them")


def load(cfg: SweepConfig, trace: Trace, bench: str, given: Inputs | None = None, progress=None) -> Bench:
    arrays = to_arrays(trace, bench)
    inputs = given if given is not None else request_inputs(arrays, cfg, progress)
    X, pred = inputs.X, cfg.predictor(bench, inputs.family)
    if X.shape[0] != arrays.shape[0]:
        raise UserError(f"bench {bench}: {X.shape[0]} input rows for {arrays.shape[0]} requests")
    acc = arrays.satisfied.mean(0)
    alphas = tuple(float((acc[0] + acc.max()) / 2) if a == "mid" else float(a) for a in cfg.alphas)
    T, M = arrays.shape
    n_calib = round(cfg.calib_frac * T)
    if T - n_calib < 2:
        raise UserError(f"bench {bench}: {T} requests leave no stream after a {cfg.calib_frac} calibration split")
    draws = {s: draw(s, T, n_calib, X.shape[1], M, pred.epochs, pred.dropout, pred.input_dropout) for s in cfg.seeds}
    return Bench(arrays, X, inputs.encoder, pred, inputs.family, arrays.cost(cfg.cost), alphas, draws)


def mess_groups(cfg: SweepConfig, b: Bench, dtype: torch.dtype) -> tuple[list[tuple], list[Group]]:
    """One predictor trajectory per (seed, c, k): the keys and the groups to train.

    Training inputs and masks are made once per seed for every position any (c, k) explores; with input dropout
    each epoch has its own input, so each step is its own unit (predictor.Group)."""
    dev, pred, (h, E) = cfg.device, b.pred, (b.X.shape[1], b.pred.epochs)
    tensor = lambda v: torch.as_tensor(v, dtype=dtype, device=dev)  # noqa: E731
    X = tensor(b.X)
    keys, groups = [], []
    for seed in cfg.seeds:
        d = b.draws[seed]
        W1 = tensor(d.W1)
        P0 = X[torch.as_tensor(d.stream, device=dev)] @ W1.T  # [S, h]
        flags = {(c, k): d.explore_u < explore_prob(len(d.stream), c, k) for c, k in itertools.product(cfg.cs, cfg.ks)}
        ever = np.flatnonzero(np.any(list(flags.values()), axis=0))  # positions any (c, k) trains on
        hidden, inputs = d.keep_masks(ever)  # [n_ever, E, h] each
        x = X[torch.as_tensor(d.stream[ever], device=dev)]  # [n_ever, h]
        if pred.input_dropout > 0:  # [n_ever, E, h]: a unit per step
            xu = x[:, None] * tensor(inputs) / (1.0 - pred.input_dropout)
            p0u, keep = xu @ W1.T, hidden.reshape(len(ever), E, 1, h)
        else:  # [n_ever, 1, h]: a unit per explored request
            xu, p0u, keep = x[:, None], P0[torch.as_tensor(ever, device=dev)][:, None], hidden[:, None]
        per = xu.shape[1]  # units per exploration
        for (c, k), explored in flags.items():
            sel = np.searchsorted(ever, np.flatnonzero(explored))
            ix = torch.as_tensor(sel, device=dev)
            g = Group(
                X, P0, b.arrays.satisfied, d.stream, explored,
                unit_pos=np.repeat(ever[sel], per),
                Xu=xu[ix].reshape(-1, h), P0u=p0u[ix].reshape(-1, h),
                keep=keep[sel].reshape(-1, E // per, h), b1=d.b1, W2=d.W2, b2=d.b2, cfg=pred,
            )  # fmt: skip
            keys.append((seed, c, k))
            groups.append(g)
    return keys, groups


PREDICTION_SCHEMA = {
    "bench": pl.String, "seed": pl.Int64, "c": pl.Float64, "k": pl.Float64, "t": pl.Int64, "explored": pl.Boolean,
    "explore_cost": pl.Float64, "shat": pl.List(pl.Float32), "label": pl.List(pl.Int8),
}  # fmt: skip


def prediction_table(benches: dict[str, Bench], keyed: dict, trained: dict) -> pl.DataFrame:
    """One row per (bench, seed, c, k) predictor and stream position: what it predicted before that request's own
    update, the true labels, and what exploring cost (for learning curves)."""
    frames = []
    for name, (keys, groups) in keyed.items():
        b = benches[name]
        for (seed, c, k), g, tr in zip(keys, groups, trained[name], strict=True):
            shat = tr.shat
            n, M = shat.shape
            cols = {
                "bench": [name] * n, "seed": np.full(n, seed), "c": np.full(n, c), "k": np.full(n, k),
                "t": np.arange(1, n + 1), "explored": g.explored,
                "explore_cost": np.where(g.explored, b.E[g.stream].sum(1), 0.0),
                "shat": pl.Series(shat.astype(np.float32), dtype=pl.Array(pl.Float32, M)).arr.to_list(),
                "label": pl.Series(b.arrays.satisfied[g.stream].astype(np.int8), dtype=pl.Array(pl.Int8, M)).arr.to_list(),
            }  # fmt: skip
            frames.append(pl.DataFrame(cols, schema=PREDICTION_SCHEMA))
    return pl.concat(frames) if frames else pl.DataFrame(schema=PREDICTION_SCHEMA)


def diagnose(tr: Trained, y: np.ndarray, explored: np.ndarray) -> dict:
    """What a run records of its predictor: per model, the AUC of the pre-update predictions on the second half of
    the stream and its z against chance (None: that model's outcome never varies there); whether the mean
    predictions there rank the models as their accuracies on the explored requests do; the share of dead ReLUs."""
    half = len(y) // 2
    aucs, zs = zip(*(auc_z(tr.shat[half:, m], y[half:, m]) for m in range(y.shape[1])), strict=True)
    return {
        "predictor_auc": nan_to_none(aucs),
        "predictor_auc_z": nan_to_none(zs),
        "predictor_rank_ok": ranks_agree(tr.shat[half:].mean(0), y[explored]),
        "predictor_dead": None if np.isnan(tr.dead) else tr.dead,
    }


def mess_runs(
    cfg: SweepConfig, b: Bench, keys: list[tuple], groups: list[Group], trained: list[Trained], chunk: int = 1024
):
    """Every MESS+ run of one bench, advanced together `chunk` runs at a time so memory stays bounded whatever the
    grid. Yields (config rows, Outcome, alpha [R]) per chunk."""
    grid = list(itertools.product(range(len(keys)), cfg.cost_estimates, b.alphas, cfg.Vs, cfg.feedbacks))
    ehat = {
        (g, m): cost_estimates(b.E[groups[g].stream], groups[g].explored, m)
        for g in range(len(keys))
        for m in cfg.cost_estimates
    }
    quality = [diagnose(tr, b.arrays.satisfied[g.stream], g.explored) for g, tr in zip(groups, trained, strict=True)]
    for lo in range(0, len(grid), chunk):
        part = grid[lo : lo + chunk]
        gi = np.array([g for g, *_ in part])
        alpha = np.array([a for _, _, a, _, _ in part])
        V = np.array([v for *_, v, _ in part])
        S_runs = np.stack([b.arrays.satisfied[groups[g].stream] for g in gi])  # [R, S, M]
        E_runs = np.stack([b.E[groups[g].stream] for g in gi])
        explored = np.stack([groups[g].explored for g in gi])  # [R, S]
        fb = np.stack([b.draws[keys[g][0]].feedback_u < f for g, *_, f in part])
        shat = np.stack([trained[g].shat for g in gi])
        ehats = np.stack([ehat[g, m] for g, m, *_ in part])
        chosen, q, q_full = replay_queues(shat, ehats, S_runs, explored, fb, alpha, V)
        rows = [
            {"method": "messplus", "seed": keys[g][0], "c": keys[g][1], "k": keys[g][2], "cost_estimate": m, "V": v,
             "feedback": f, **quality[g]}
            for g, m, _, v, f in part
        ]  # fmt: skip
        yield rows, outcome(chosen, explored, S_runs, E_runs, alpha, q, q_full, bce(shat, S_runs)), alpha


def baseline_runs(cfg: SweepConfig, b: Bench, seed: int):
    """Every baseline on one seed's stream, for each alpha. Yields (config rows, Outcome, alpha [R])."""
    d = b.draws[seed]
    S, E, X = b.arrays.satisfied, b.E, b.X
    Ss, Es, Xs = S[d.stream], E[d.stream], X[d.stream]
    Sc, Xc = S[d.calib], X[d.calib]
    rows, choices, alphas = [], [], []

    def add(method: str, alpha: float, chosen: np.ndarray) -> None:
        rows.append({"method": method, "seed": seed})
        choices.append(chosen)
        alphas.append(alpha)

    dc = baselines.routerdc(Xc, Sc, Xs) if "routerdc" in cfg.methods else None
    wants_rl = {"routellm", "routellm-paper"} & set(cfg.methods)
    rl = baselines.weak_ok_scores(Xc, Sc, Xs) if wants_rl else None  # fitted once, thresholded per alpha
    acc = S.mean(0)  # whole-benchmark accuracies: what the paper's educated guessing knows
    for alpha in b.alphas:
        if "single" in cfg.methods:
            for m, name in enumerate(b.arrays.models):
                add(f"single:{name}", alpha, np.full(len(Ss), m))
        if "educated" in cfg.methods:
            add("educated", alpha, baselines.draw_models(baselines.educated_probs(acc, alpha), d.choice_u))
        if "routellm" in cfg.methods:
            add("routellm", alpha, baselines.routellm(rl[0], Sc, rl[1], alpha))
        if "routellm-paper" in cfg.methods:
            add("routellm-paper", alpha, baselines.routellm_on_stream(rl[1], Ss, alpha))
        if dc is not None:
            add("routerdc", alpha, dc)
        if "oracle" in cfg.methods:
            add("oracle", alpha, baselines.oracle(Ss, Es))
    if not rows:
        return [], None, None
    chosen = np.stack(choices)
    R = len(rows)
    alpha = np.array(alphas)
    o = outcome(
        chosen,
        np.zeros_like(chosen, dtype=bool),
        np.broadcast_to(Ss, (R, *Ss.shape)),
        np.broadcast_to(Es, (R, *Es.shape)),
        alpha,
    )
    return rows, o, alpha


def run_sweep(
    cfg: SweepConfig,
    traces: Path,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    inputs: dict[str, tuple[np.ndarray, str]] | None = None,
) -> Results:
    """progress(label, total) returns an advance(n) callback; None runs silently.
    inputs: optional per-bench ([T, h] predictor inputs, their id) used instead of cfg.encoder."""
    check(cfg)
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
    found = load_benches(traces, cfg.benches or None)
    cfg = replace(cfg, benches=tuple(found))  # the resolved list is what the metadata records
    benches = {name: load(cfg, found[name], name, (inputs or {}).get(name), progress) for name in cfg.benches}
    keyed = {name: mess_groups(cfg, b, dtype) if "messplus" in cfg.methods else ([], []) for name, b in benches.items()}
    all_groups = [g for _, groups in keyed.values() for g in groups]
    flat = iter(predict_groups(all_groups, cfg.device, dtype, progress))
    trained = {name: [next(flat) for _ in groups] for name, (_, groups) in keyed.items()}

    predictions = prediction_table(benches, keyed, trained)
    run_rows, step_cols, warnings = [], [], []
    for name, b in benches.items():
        M = len(b.arrays.models)
        mess = mess_runs(cfg, b, *keyed[name], trained[name]) if "messplus" in cfg.methods else ()
        parts = itertools.chain(mess, (baseline_runs(cfg, b, seed) for seed in cfg.seeds))  # lazily: bounded memory
        opt, mix = {}, {}  # per (seed, alpha): E_OPT, and the best stationary mix's (satisfaction, cost)
        for s, a in itertools.product(cfg.seeds, b.alphas):
            Ss, Es = b.arrays.satisfied[b.draws[s].stream], b.E[b.draws[s].stream]
            opt[s, a], mix[s, a] = baselines.opt_cost(Ss, Es, a), baselines.mix_bound(Ss, Es, a)
        worst = min(b.arrays.satisfied[b.draws[s].stream].max(1).mean() for s in cfg.seeds)  # oracle's reach
        for a in b.alphas:
            if a > worst:
                warnings.append(
                    f"bench {name}: alpha {a:.4f} is above what even the per-request oracle reaches ({worst:.4f}); no method can meet it"
                )
        for rows, o, alpha in parts:
            if not rows:
                continue
            base = len(run_rows)
            ids = np.arange(base, base + len(rows))
            figures = summary(o, alpha, M)
            for i, row in enumerate(rows):
                e_opt = opt[row["seed"], alpha[i]]
                run_rows.append(
                    {
                        "run_id": int(ids[i]),
                        "bench": name,
                        **row,
                        "alpha": float(alpha[i]),
                        **{key: val[i] for key, val in figures.items()},
                        "opt_cost_per_request": e_opt,
                        "mix_cost_per_request": mix[row["seed"], alpha[i]][1],
                        "n_requests": o.sat.shape[1],
                    }
                )
            step_cols.append(steps(o, ids, cfg.steps_every))
        for (s, a), e_opt in opt.items():
            n = len(b.draws[s].stream)
            bounds = {"opt": (a, e_opt), "mix": mix[s, a]}
            for method, (sat, cpr) in bounds.items():
                if method not in cfg.methods:
                    continue
                feasible = np.isfinite(cpr)
                run_rows.append(
                    {"run_id": len(run_rows), "bench": name, "method": method, "seed": s, "alpha": a,
                     "satisfaction": sat if feasible else None, "sla_met": feasible,
                     "total_cost": cpr * n if feasible else None, "cost_per_request": cpr if feasible else None,
                     "opt_cost_per_request": e_opt, "mix_cost_per_request": mix[s, a][1], "n_requests": n}
                )  # fmt: skip
    runs = finish_runs(run_rows, cfg, benches)
    quality = predictor_quality(runs)
    warnings += predictor_warnings(quality)
    columns = {k: np.concatenate([c[k] for c in step_cols]) for k in STEP_SCHEMA} if step_cols else None
    steps_df = pl.DataFrame(columns, schema=STEP_SCHEMA).with_columns(pl.col("loss").fill_nan(None))
    meta = {
        "results_version": RESULTS_VERSION,
        "messplus_version": version("messplus"),
        "config": asdict(cfg),
        "traces": str(traces),
        "models": list(next(iter(benches.values())).arrays.models),
        "encoders": {n: b.encoder for n, b in benches.items()},
        "alphas": {n: list(b.alphas) for n, b in benches.items()},
        "warnings": warnings,
    }
    return Results(runs, steps_df, predictions, warnings, meta, quality)


def predictor_warnings(quality: pl.DataFrame) -> list[str]:
    """The predictor failures a user must see: requests not told apart, models ranked wrongly, dead ReLUs."""
    out = []
    for r in quality.iter_rows(named=True):
        where = f"bench {r['bench']}, c={r['c']:g}, k={r['k']:g}: the predictor"
        if all(z is None or z < 2 for z in r["z"]):
            out.append(
                f"{where} does not tell requests apart (no model's late AUC is 2 SE above chance); try a larger "
                "--c or another encoder"
            )
        if r["rank_wrong"]:
            out.append(
                f"{where} ranks the models against their accuracy on the explored requests on {r['rank_wrong']} of "
                f"{r['seeds']} seeds: it diverged, so MESS+ routes worse than base rates would; try --preset for "
                "this encoder, or a lower --lr and --momentum"
            )
        if r["dead"] is not None and r["dead"] >= 0.5:
            out.append(
                f"{where} ends with {100 * r['dead']:.0f}% dead ReLUs (never active on an explored request): its "
                "steps are too large for these inputs; lower --lr or --momentum"
            )
    return out


RUN_SCHEMA = {
    "run_id": pl.Int64, "bench": pl.String, "method": pl.String, "seed": pl.Int64, "alpha": pl.Float64,
    "V": pl.Float64, "c": pl.Float64, "k": pl.Float64, "feedback": pl.Float64, "cost_estimate": pl.String,
    "cost": pl.String, "encoder": pl.String, "preset": pl.String, "lr": pl.Float64, "momentum": pl.Float64,
    "epochs": pl.Int64, "input_dropout": pl.Float64, "clip_norm": pl.Float64,
    "n_requests": pl.Int64, "n_calib": pl.Int64,
    "satisfaction": pl.Float64, "sla_met": pl.Boolean, "total_cost": pl.Float64, "cost_per_request": pl.Float64,
    "opt_cost_per_request": pl.Float64, "cost_vs_opt": pl.Float64, "mix_cost_per_request": pl.Float64,
    "cost_vs_mix": pl.Float64, "call_ratio": pl.List(pl.Float64),
    "n_explore": pl.Int64, "sla_first_ok": pl.Int64, "q_final": pl.Float64, "q_full_final": pl.Float64,
    "predictor_auc": pl.List(pl.Float64), "predictor_auc_z": pl.List(pl.Float64), "predictor_rank_ok": pl.Boolean,
    "predictor_dead": pl.Float64,
}  # fmt: skip


STEP_SCHEMA = {
    "run_id": pl.Int64, "t": pl.Int64, "chosen": pl.Int16, "explored": pl.Boolean, "running_satisfaction": pl.Float64,
    "running_cost": pl.Float64, "q": pl.Float64, "q_full": pl.Float64, "loss": pl.Float64,
}  # fmt: skip


def finish_runs(rows: list[dict], cfg: SweepConfig, benches: dict[str, Bench]) -> pl.DataFrame:
    """Typed runs table: configuration columns, then results; NaN/inf never stand for missing."""
    for r in rows:
        b = benches[r["bench"]]
        mess = r["method"] == "messplus"
        r.update(cost=cfg.cost, encoder=b.encoder, n_calib=b.draws[r["seed"]].n_calib)
        if mess:
            p = b.pred
            r.update(preset=b.family, lr=p.lr, momentum=p.momentum, epochs=p.epochs, input_dropout=p.input_dropout,
                     clip_norm=p.clip_norm)  # fmt: skip
        if "call_ratio" in r:
            r["call_ratio"] = [float(x) for x in r["call_ratio"]]
        if r.get("sla_first_ok", 0) == -1:
            r["sla_first_ok"] = None
        e_opt, e_mix = r["opt_cost_per_request"], r["mix_cost_per_request"]
        r["opt_cost_per_request"] = e_opt if np.isfinite(e_opt) else None
        cpr = r.get("cost_per_request")
        r["cost_vs_opt"] = cpr / e_opt if cpr is not None and np.isfinite(e_opt) and e_opt > 0 else None
        r["mix_cost_per_request"] = e_mix if np.isfinite(e_mix) else None
        r["cost_vs_mix"] = cpr / e_mix if cpr is not None and np.isfinite(e_mix) and e_mix > 0 else None
    plain = lambda v: v.item() if isinstance(v, np.generic) else v  # noqa: E731
    return pl.DataFrame([{k: plain(r.get(k)) for k in RUN_SCHEMA} for r in rows], schema=RUN_SCHEMA)
