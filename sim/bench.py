"""One bench of a sweep, loaded once: arrays, predictor inputs and settings, resolved alphas, each seed's draws,
and the bounds (E_OPT, best stationary mix) every run of a (seed, alpha) is judged against."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from messplus.common import UserError, check_memory
from messplus.sim import presets
from messplus.sim.config import PredictorConfig, SweepConfig
from messplus.sim.draws import Draws, draw
from messplus.sim.inputs import Inputs, request_inputs
from messplus.sim.routers import Split
from messplus.sim.routers.bounds import mix_bound, opt_cost
from messplus.sim.streams import Stream, part_of
from messplus.traces.dense import BenchArrays, to_arrays
from messplus.traces.io import Trace


@dataclass(frozen=True)
class Bench:
    name: str
    arrays: BenchArrays
    X: np.ndarray  # [T, h] predictor inputs
    encoder: str
    pred: PredictorConfig  # the predictor settings for this bench
    family: str  # the preset table they came from
    E: np.ndarray  # [T, M] the minimised cost
    latency: np.ndarray | None  # [T, M] seconds, where a latency SLA is set
    alphas: tuple[float, ...]
    draws: dict[int, Draws]
    bounds: dict[tuple[int, float], tuple[float, float, float]]  # (seed, alpha) -> E_OPT, mix sat, mix cost
    parts: np.ndarray | None = None  # [T] a combined stream's bench per request (index into part_names)
    part_names: tuple[str, ...] = ()

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.arrays.models)

    def split(self, rows: np.ndarray) -> Split:
        lat = None if self.latency is None else self.latency[rows]
        return Split(self.X[rows], self.arrays.satisfied[rows], self.E[rows], lat)

    @property
    def n_stream(self) -> int:
        """S, the scored requests of every seed (the calibration split has the same size on each)."""
        return len(self.arrays.satisfied) - next(iter(self.draws.values())).n_calib

    def stream_parts(self, rows: np.ndarray) -> np.ndarray | None:
        """[..., S] the part of each request in these rows [..., S] (None for a bench of its own)."""
        return None if self.parts is None else self.parts[rows]

    def columns(self, seed: np.ndarray, alpha: np.ndarray) -> tuple[dict, dict]:
        """For runs with these seeds and alphas [R]: the bench's configuration columns, and their references."""
        cfg = {"seed": seed, "encoder": [self.encoder] * len(seed), "n_calib": [self.draws[s].n_calib for s in seed]}
        ref = np.array([self.bounds[s, a] for s, a in zip(seed, alpha, strict=True)]).reshape(-1, 3)
        return cfg, {"opt_cost_per_request": ref[:, 0], "mix_cost_per_request": ref[:, 2]}


def alpha_rules(alphas, bench: str) -> list:
    """The --alpha entries that apply to one bench (those named BENCH=VALUE for it, and those for every bench), each
    a number or a rule; checked before any work: a bench left without one, or without a paper alpha, is an error."""
    rules = [a[1] if isinstance(a, tuple) else a for a in alphas if not isinstance(a, tuple) or a[0] == bench]
    if not rules:
        raise UserError(f"--alpha gives bench {bench} no value: add {bench}=VALUE, or a value for every bench")
    if "paper" in rules and presets.paper_alpha(bench) is None:
        known = ", ".join(presets.PAPER_ALPHA)
        raise UserError(f"--alpha paper: the paper sets no alpha for bench {bench} (it does for {known}); give "
                        f"{bench}=VALUE")  # fmt: skip
    return rules


def check_alphas(alphas, benches: tuple[str, ...]) -> None:
    """Before any work: every bench named in --alpha is one of the run's, and every bench gets an alpha."""
    unknown = [a[0] for a in alphas if isinstance(a, tuple) and a[0] not in benches]
    if unknown:
        raise UserError(f"--alpha names bench {unknown[0]!r}, which is not replayed here ({', '.join(benches)})")
    for bench in benches:
        alpha_rules(alphas, bench)


def resolve_alphas(acc: np.ndarray, alphas, bench: str) -> tuple[float, ...]:
    """The bench's alphas (acc [M]: its models' accuracies): 'mid' is halfway between the cheapest model's accuracy
    and the best one's, 'paper' the paper's alpha for the bench; repeats dropped."""
    rule = {"mid": lambda: float((acc[0] + acc.max()) / 2), "paper": lambda: presets.paper_alpha(bench)}
    return tuple(dict.fromkeys(rule[a]() if isinstance(a, str) else float(a) for a in alpha_rules(alphas, bench)))


@dataclass(frozen=True)
class Staged:
    """A bench checked and made dense, its inputs not yet read: every check that needs no predictor input, done for
    every bench before any is embedded. parts [T] a combined stream's bench per request (None: a bench of its own);
    blocks the same for a drift stream (its requests served block by block)."""

    name: str
    arrays: BenchArrays
    E: np.ndarray  # [T, M] the minimised cost
    latency: np.ndarray | None  # [T, M] seconds, where a latency SLA is set
    n_calib: int
    stream: Stream | None
    parts: np.ndarray | None
    blocks: np.ndarray | None


def memory_needed(cfg: SweepConfig, T: int, M: int, h: int) -> int:
    """Bytes one bench needs, about, before any result: each seed's draws (a first layer of h x h, float32, and two
    more while one is drawn) and, where MESS+ runs, each predictor trajectory's explicit first layer, its momentum
    buffer and their spare (4 h x h in the predictor's dtype; sim.predictor.memory_needed is the fuller count)."""
    draws = 4 * ((len(cfg.seeds) + 2) * h * h + len(cfg.seeds) * (M + 3) * h + 4 * T)
    trajectories = len(cfg.seeds) * len(cfg.cs) * len(cfg.ks) if "messplus" in cfg.methods else 0
    return draws + trajectories * 4 * h * h * (8 if cfg.dtype == "float64" else 4)


def stage(cfg: SweepConfig, trace: Trace, bench: str, stream: Stream | None = None) -> Staged:
    """The cheap half of `load`: arrays, the cost column, the calibration split, each checked."""
    arrays = to_arrays(trace, bench)
    parts = part_of(arrays.doc_ids, stream.parts) if stream is not None else None
    T = arrays.shape[0]
    n_calib = round(cfg.calib_frac * T)
    if T - n_calib < 2:
        raise UserError(f"bench {bench}: {T} requests leave no stream after a {cfg.calib_frac} calibration split")
    blocks = parts if stream is not None and stream.in_blocks else None
    if blocks is not None and n_calib >= (first := int((blocks == 0).sum())):
        raise UserError(f"--stream {bench}: the calibration split ({n_calib} requests, --calib-frac {cfg.calib_frac}) "
                        f"takes the whole first block ({stream.parts[0]}, {first} requests), so the scored stream "
                        "would not drift; lower --calib-frac")  # fmt: skip
    E = arrays.cost(cfg.cost)
    if cfg.v_unit == "largest" and not E[:, -1].mean() > 0:
        raise UserError(f"bench {bench}: --v-unit largest divides costs by the largest model's mean {cfg.cost}, "
                        "which is 0 here; use --v-unit raw")  # fmt: skip
    latency = None
    if cfg.latency_sla is not None:
        if "latency_s" not in arrays.costs:
            raise UserError(f"bench {bench}: --latency-sla needs each request's latency, and the trace's latency_s "
                            f"is empty or incomplete here")  # fmt: skip
        latency = arrays.costs["latency_s"]
    return Staged(bench, arrays, E, latency, n_calib, stream, parts, blocks)


def load(cfg: SweepConfig, trace: Trace | Staged, bench: str, given: Inputs | None = None, progress=None,
         stream: Stream | None = None) -> Bench:  # fmt: skip
    """stream: the combined stream this bench is (None: a bench of its own). trace may be the bench staged already."""
    st = trace if isinstance(trace, Staged) else stage(cfg, trace, bench, stream)
    arrays, T, M = st.arrays, *st.arrays.shape
    split = (st.parts, st.stream.parts) if st.stream is not None else None
    inputs = given if given is not None else request_inputs(arrays, cfg, progress, split)
    X, pred = inputs.X, cfg.predictor(bench, inputs.family)
    if X.shape[0] != T:
        raise UserError(f"bench {bench}: {X.shape[0]} input rows for {T} requests")
    alphas = resolve_alphas(arrays.satisfied.mean(0), cfg.alphas, bench)
    check_memory(memory_needed(cfg, T, M, X.shape[1]), f"bench {bench}: {len(cfg.seeds)} seed{'s' * (len(cfg.seeds) != 1)} on {X.shape[1]}-dim "
                 "inputs", "give fewer --seeds (or --c, --k values), or inputs of fewer dimensions")  # fmt: skip
    draws = {
        s: draw(s, T, st.n_calib, X.shape[1], M, pred.epochs, pred.dropout, pred.input_dropout, st.blocks)
        for s in cfg.seeds
    }
    bounds = {}
    for s, a in itertools.product(cfg.seeds, alphas):
        Ss, Es = arrays.satisfied[draws[s].stream], st.E[draws[s].stream]
        bounds[s, a] = (opt_cost(Ss, Es, a), *mix_bound(Ss, Es, a))
    names = st.stream.parts if st.stream is not None else ()
    return Bench(bench, arrays, X, inputs.encoder, pred, inputs.family, st.E, st.latency, alphas, draws, bounds,
                 st.parts, names)  # fmt: skip
