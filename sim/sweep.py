"""`sim sweep`: replay one trace under a grid of configurations, for MESS+ and every registered router and bound.

Flow: resolve the configuration -> load each bench (sim.bench) -> train every MESS+ predictor trajectory at once
and replay each run's queue on it (sim.mess, sim.engine) -> route each seed's stream with every router, and
compute the bounds (sim.routers) -> turn all of it into the three tables (sim.results).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
import polars as pl

from messplus.common import UserError, pick_device
from messplus.common.options import validate
from messplus.sim import mess, streams
from messplus.sim.bench import Bench, check_alphas, load, stage
from messplus.sim.config import SweepConfig
from messplus.sim.inputs import Inputs, distinct_warnings
from messplus.sim.metrics import outcome, predictor_quality
from messplus.sim.results import VERSION, Block, Results, frames, options
from messplus.sim.routers import MESSPLUS, Served, Split, registry
from messplus.traces.io import load_benches

Progress = Callable[[str, int], Callable[[int], None]]
Tables = Callable[[SweepConfig, dict[str, Bench], Progress | None], tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]]


def resolve(cfg: SweepConfig, benches: tuple[str, ...]) -> SweepConfig:
    """The configuration as run: valid, benches found, `all` methods spelled out; checked before any work."""
    validate(cfg)
    pick_device(cfg.device)  # cuda without a GPU is refused here, before any work
    methods = registry()
    chosen = tuple(methods) if "all" in cfg.methods else cfg.methods
    calibrated = [m for m in chosen if methods[m].needs_calib]
    if cfg.calib_frac == 0 and calibrated:
        raise UserError(f"{', '.join(calibrated)} need a calibration split: set --calib-frac > 0 or drop them")
    check_alphas(cfg.alphas, benches)
    if cfg.latency_sla is not None and "feedback" in cfg.learns and MESSPLUS in chosen:
        raise UserError("--latency-sla with --learn feedback is not built yet: MESS+ keeps the second queue when it "
                        "learns from explorations (--learn explored)")  # fmt: skip
    return replace(cfg, benches=benches, methods=chosen)


def run_sweep(
    cfg: SweepConfig,
    traces: Path,
    progress: Progress | None = None,
    inputs: dict[str, Inputs] | None = None,
    tables: Tables | None = None,
) -> Results:
    """progress(label, total) returns an advance(n) callback; None runs silently.
    inputs: optional per-bench predictor inputs used instead of cfg.encoder.
    tables: what replays the loaded benches into the runs, steps and predictions tables: `replay`, in this process,
    by default; sim.distributed's spreads the same work over a Ray cluster and returns the same tables."""
    validate(cfg)
    asked = options(cfg, traces)
    cfg, found, stream = open_streams(cfg, traces)
    staged = {n: stage(cfg, found[n], n, stream) for n in cfg.benches}  # every bench checked before any embedding
    benches = {n: load(cfg, staged[n], n, (inputs or {}).get(n), progress) for n in cfg.benches}
    runs, steps, predictions = (tables or replay)(cfg, benches, progress)
    warnings = reach_warnings(benches) + [w for b in benches.values() for w in distinct_warnings(b.name, b.X)]
    warnings += mess.predictor_warnings(predictor_quality(runs))
    warnings += mess.cost_balance_warnings(cfg, benches) if MESSPLUS in cfg.methods else []
    meta = metadata(cfg, asked, benches, warnings)
    meta["sweep_id"] = hashlib.sha256(
        json.dumps(meta, sort_keys=True).encode() + runs.hash_rows().to_numpy().tobytes()
    ).hexdigest()[:16]
    return Results(runs, steps, predictions, meta)


def replay(
    cfg: SweepConfig, benches: dict[str, Bench], progress: Progress | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The runs, steps and predictions tables of the loaded benches, in this process: every MESS+ predictor trained
    in one batch, then each bench's runs (bench_blocks), numbered in that order."""
    with_mess = MESSPLUS in cfg.methods
    trained = mess.train(cfg, benches, progress) if with_mess else {name: ([], [], []) for name in benches}
    blocks = itertools.chain.from_iterable(bench_blocks(cfg, b, trained[b.name]) for b in benches.values())
    models = next(iter(benches.values())).models
    return *frames(blocks, len(models), cfg.steps_every), mess.prediction_table(benches, trained)


def open_streams(cfg: SweepConfig, traces: Path) -> tuple[SweepConfig, dict, streams.Stream | None]:
    """The configuration as run, the trace of each bench, and the combined stream (None: each bench its own)."""
    found = load_benches(traces, cfg.benches or None)
    stream = streams.parse(cfg.stream, tuple(found))
    if not stream.combined:
        return resolve(cfg, tuple(found)), found, None
    return resolve(cfg, (stream.name,)), {stream.name: streams.combine(stream, found)}, stream


def metadata(cfg: SweepConfig, asked: dict, benches: dict[str, Bench], warnings: list[str]) -> dict:
    """What every results file carries: versions, the options asked and the configuration run, models, encoders,
    alphas, warnings, and a drift stream's block boundaries (stream positions of the first seed)."""
    drift = {n: streams.boundaries(b.parts[b.draws[cfg.seeds[0]].stream]) for n, b in benches.items()
             if b.parts is not None and streams.parse(cfg.stream, b.part_names).in_blocks}  # fmt: skip
    return {
        "results_version": VERSION,
        "messplus_version": version("messplus"),
        "options": asked,
        "config": {k: v for k, v in asdict(cfg).items() if k != "cache_dir"},  # as run; no machine-local paths
        "models": list(next(iter(benches.values())).models),
        "encoders": {n: b.encoder for n, b in benches.items()},
        "alphas": {n: list(b.alphas) for n, b in benches.items()},
        "warnings": warnings,
        "boundaries": drift,
    }


def bench_blocks(cfg: SweepConfig, b: Bench, trained: tuple[list, list, list]) -> Iterator[Block]:
    """Every run of one bench, lazily: MESS+ in chunks, then the routers seed by seed, then the bounds."""
    if MESSPLUS in cfg.methods:
        yield from mess.blocks(cfg, b, *trained)
    for seed in cfg.seeds:
        yield from router_blocks(cfg, b, seed)
    yield from bound_blocks(cfg, b)


def routes(cfg: SweepConfig, b: Bench, seed: int) -> Iterator[tuple[str, str, float, float | None, Served]]:
    """(run name, kind, alpha, V, what it served) of each chosen router replayed request by request, fitted on this
    seed's calibration split, for every alpha (and every V, for an online policy; None for the others)."""
    methods, d = registry(), b.draws[seed]
    chosen = [m for m in cfg.methods if methods[m].replayed]
    if not chosen:  # the splits copy the inputs: not for nothing on a million-request stream
        return
    calib, stream, whole = b.split(d.calib), b.split(d.stream), Split(b.X, b.arrays.satisfied, b.E)
    scale = mess.cost_unit(cfg, b)
    for m in chosen:
        kind = methods[m].kind
        for name, router in methods[m].variants(b.models):
            router.fit(calib, whole)
            if methods[m].online:
                for a, V in itertools.product(b.alphas, cfg.Vs):
                    yield name, kind, a, V, router.run(stream, a, V / scale, d, cfg.latency_sla)
            else:
                yield from ((name, kind, a, None, Served(router.route(stream, a, d.choice_u))) for a in b.alphas)


def router_blocks(cfg: SweepConfig, b: Bench, seed: int) -> Iterator[Block]:
    """One block of every router run on this seed's stream (none if no router was chosen)."""
    found = list(routes(cfg, b, seed))
    if not found:
        return
    names, kinds, alphas, Vs, served = zip(*found, strict=True)
    alpha, chosen, explored = (
        np.array(alphas),
        np.stack([s.chosen for s in served]),
        np.stack([s.exploring for s in served]),
    )
    stream, R = b.split(b.draws[seed].stream), len(found)
    S, E = (np.broadcast_to(a, (R, *a.shape)) for a in (stream.S, stream.E))  # [R, S, M]
    lat = None if stream.latency is None else np.broadcast_to(stream.latency, (R, *stream.latency.shape))
    config, reference = b.columns(np.full(R, seed), alpha)
    config |= {"method": list(names), "kind": list(kinds), "cost": [cfg.cost] * R}
    if any(V is not None for V in Vs):
        config |= {"V": np.array([np.nan if V is None else V for V in Vs]), "v_unit": [cfg.v_unit] * R}
    if cfg.latency_sla is not None:
        config["latency_sla"] = np.full(R, cfg.latency_sla)
    o = outcome(chosen, explored, S, E, alpha, lat=lat)
    parts = b.stream_parts(np.broadcast_to(b.draws[seed].stream, (R, len(stream.S))))
    yield Block(b.name, config, alpha, reference, len(stream.S), outcome=o, parts=parts, part_names=b.part_names)


def bound_blocks(cfg: SweepConfig, b: Bench) -> Iterator[Block]:
    """Each chosen bound that does not route, per (seed, alpha): its satisfaction and cost, null where nothing in its class meets alpha."""
    methods = registry()
    keys = list(itertools.product(cfg.seeds, b.alphas))
    seed, alpha = np.array([s for s, _ in keys]), np.array([a for _, a in keys])
    n = b.n_stream
    chosen = [m for m in cfg.methods if not methods[m].routes]
    streams = {s: b.split(b.draws[s].stream) for s in cfg.seeds} if chosen else {}
    for m in chosen:
        bound = methods[m].make()
        sat, cpr = np.array([bound.bound(streams[s], a) for s, a in keys]).T
        ok = np.isfinite(cpr)
        figures = {"satisfaction": np.where(ok, sat, np.nan), "sla_met": ok, "total_cost": cpr * n,
                   "cost_per_request": cpr}  # fmt: skip
        config, reference = b.columns(seed, alpha)
        config |= {"method": [m] * len(keys), "kind": ["bound"] * len(keys), "cost": [cfg.cost] * len(keys)}
        yield Block(b.name, config, alpha, reference, n, figures=figures)


def reach_warnings(benches: dict[str, Bench]) -> list[str]:
    """An alpha above what the per-request oracle reaches on some seed's stream cannot be met by any method."""
    out = []
    for name, b in benches.items():
        worst = min(b.arrays.satisfied[d.stream].max(1).mean() for d in b.draws.values())
        out += [
            f"bench {name}: alpha {a:.4f} is above what even the per-request oracle reaches ({worst:.4f}); no method "
            "can meet it"
            for a in b.alphas
            if a > worst
        ]
    return out
