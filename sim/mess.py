"""MESS+ over a whole sweep: one predictor trajectory per (bench, seed, c, k), all trained at once (sim.predictor),
then every run's queue replayed on its trajectory's predictions (sim.engine), a chunk of runs at a time."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields

import numpy as np
import polars as pl
import torch

from messplus.common import UserError, check_memory, pick_device
from messplus.sim import base_rate
from messplus.sim.bench import Bench
from messplus.sim.config import SweepConfig
from messplus.sim.draws import explore_prob
from messplus.sim.engine import Latency, cost_estimates, explore_answers, replay_queues
from messplus.sim.head import subnormals_flushed
from messplus.sim.metrics import GAP_SLACK, auc_z, bce, lindley, nan_to_none, outcome, ranks_agree, z_critical
from messplus.sim.predictor import Group, Trained, initial_theta, memory_needed, predict_groups
from messplus.sim.results import PREDICTION_SCHEMA, Block
from messplus.sim.routers import MESSPLUS
from messplus.sim.routers.bounds import accuracy_price
from messplus.sim.training import layout, learn_from_feedback


def train(
    cfg: SweepConfig, benches: dict[str, Bench], progress=None, decisions_only: bool = False
) -> dict[str, tuple[list, list, list]]:
    """Per bench: the (seed, c, k) keys, their groups, and each trained trajectory; one batch over all benches.

    decisions_only (sim plan: the predictions serve the routing decisions alone, no diagnostics or predictions
    table): a trajectory that explores every position is not trained, since no decision reads its predictions (an
    explored request's answer comes from sim.engine.explore_answers); its predictions are NaN."""
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
    keyed = {name: groups(cfg, b, dtype) for name, b in benches.items()}
    idle = lambda g: decisions_only and bool(g.explored.all())  # noqa: E731
    todo = [g for _, gs in keyed.values() for g in gs if not idle(g)]
    if todo and pick_device(cfg.device) == "cpu":
        h = todo[0].X.shape[1]
        check_memory(memory_needed(todo, dtype), f"training {len(todo)} predictor trajectories on {h}-dim inputs",
                     "give fewer --seeds, --c or --k values or benches per sweep, or inputs of fewer dimensions")  # fmt: skip
    flat = iter(predict_groups(todo, pick_device(cfg.device), dtype, progress))
    unread = lambda g: Trained(np.full((len(g.stream), g.Y.shape[1]), np.nan), float("nan"))  # noqa: E731
    where = lambda name, key: f"bench {name}, seed {key[0]}, c={key[1]:g}, k={key[2]:g}"  # noqa: E731
    return {name: (keys, gs, [unread(g) if idle(g) else answer(g, finite(next(flat), where(name, key), g.cfg))
                              for key, g in zip(keys, gs, strict=True)])
            for name, (keys, gs) in keyed.items()}  # fmt: skip


def finite(tr: Trained, where: str, cfg) -> Trained:
    """A head whose predictions went NaN or infinite diverged: the run stops with one line naming the setting,
    rather than reporting numbers no predictor made."""
    if not np.isfinite(tr.own).all():
        raise UserError(f"{where}: the predictor's predictions went non-finite (lr {cfg.lr:g}, momentum "
                        f"{cfg.momentum:g}, epochs {cfg.epochs}, clip {cfg.clip_norm:g}): its steps diverge on these "
                        "inputs; lower --lr or --momentum, or clip with --clip-norm")  # fmt: skip
    return tr


def answer(g: Group, tr: Trained) -> Trained:
    """What the predictor answers: the residual head's predictions where they have earned it, else the counter's
    (sim.base_rate.gate); the paper head's as they are."""
    if g.prior is None:
        return tr
    y = g.Y[g.stream]
    return Trained(base_rate.gate(tr.shat, y, np.broadcast_to(g.explored[:, None], y.shape)), tr.dead, tr.shat)


def groups(cfg: SweepConfig, b: Bench, dtype: torch.dtype) -> tuple[list[tuple], list[Group]]:
    """One predictor trajectory per (seed, c, k): the keys and the groups to train.

    Training inputs and masks are made once per seed for every position any (c, k) explores; with input dropout
    each epoch has its own input, so each step is its own unit (predictor.Group)."""
    dev, pred, (h, L) = pick_device(cfg.device), b.pred, (b.X.shape[1], b.pred.epochs)
    tensor = lambda v: torch.as_tensor(v, dtype=dtype, device=dev)  # noqa: E731
    X = tensor(b.X)  # shares b.X's memory where the dtypes agree
    keys, groups = [], []
    for seed in cfg.seeds:
        d = b.draws[seed]
        W1 = tensor(d.W1)
        flags = {(c, k): d.explore_u < explore_prob(len(d.stream), c, k) for c, k in itertools.product(cfg.cs, cfg.ks)}
        ever = np.flatnonzero(np.any(list(flags.values()), axis=0))  # positions any (c, k) trains on
        hidden, inputs = d.keep_masks(ever)  # [n_ever, L, h] each (L = epochs)
        x = X[torch.as_tensor(d.stream[ever], device=dev)]  # [n_ever, h]
        if pred.input_dropout > 0:  # [n_ever, L, h]: a unit per step
            xu, keep = x[:, None] * tensor(inputs) / (1.0 - pred.input_dropout), hidden.reshape(len(ever), L, 1, h)
        else:  # [n_ever, 1, h]: a unit per explored request
            xu, keep = x[:, None], hidden[:, None]
        per = xu.shape[1]  # units per exploration
        W2, b2 = d.output_layer(pred.residual)
        for (c, k), explored in flags.items():
            sel = np.searchsorted(ever, np.flatnonzero(explored))
            g = Group(
                X, W1, b.arrays.satisfied, d.stream, explored,
                unit_pos=np.repeat(ever[sel], per), Xu=xu[torch.as_tensor(sel, device=dev)].reshape(-1, h),
                keep=keep[sel].reshape(-1, L // per, h), b1=d.b1, W2=W2, b2=b2, cfg=pred,
                prior=prior(b.arrays.satisfied[d.stream], explored) if pred.residual else None,
            )  # fmt: skip
            keys.append((seed, c, k))
            groups.append(g)
    return keys, groups


def prior(y: np.ndarray, explored: np.ndarray) -> np.ndarray:
    """[S, M] the residual head's logit offsets: the base rate's log-odds of the explored labels y [S, M] before
    each position (explored [S])."""
    return base_rate.log_odds(*base_rate.before(y, np.broadcast_to(explored[:, None], y.shape)))


def diagnose(tr: Trained, y: np.ndarray, explored: np.ndarray) -> dict:
    """What a run records of its predictor (tr [S, M] against labels y [S, M]), all on the second half of the
    stream: per model, the AUC of the head's own pre-update predictions (whether it tells requests apart) and its z
    against chance (None: that model's outcome never varies there); the BCE of what the predictor answered and of its head's own predictions, beside that of the
    counter of the explored labels (sim.base_rate); per model, how
    far the mean prediction lies from the model's accuracy on the explored requests, the counter's beside it
    (None without explorations); whether the mean predictions rank the models as those accuracies do; the share
    of dead ReLUs."""
    half = len(y) // 2
    aucs, zs = zip(*(auc_z(tr.own[half:, m], y[half:, m]) for m in range(y.shape[1])), strict=True)
    counter = base_rate.probability(*base_rate.before(y, np.broadcast_to(explored[:, None], y.shape)))
    acc = y[explored].mean(0) if explored.any() else None
    gap = lambda p: None if acc is None else np.abs(p[half:].mean(0) - acc).tolist()  # noqa: E731
    return {
        "predictor_auc": nan_to_none(aucs),
        "predictor_auc_z": nan_to_none(zs),
        "predictor_bce": float(bce(tr.shat[half:], y[half:]).mean()),
        "head_bce": float(bce(tr.own[half:], y[half:]).mean()),
        "base_rate_bce": float(bce(counter[half:], y[half:]).mean()),
        "predictor_gap": gap(tr.shat),
        "base_rate_gap": gap(counter),
        "predictor_rank_ok": ranks_agree(tr.shat[half:].mean(0), y[explored]),
        "predictor_dead": None if np.isnan(tr.dead) else tr.dead,
    }


def cost_unit(cfg: SweepConfig, b: Bench) -> float:
    """What one unit of V's cost is: the cost column's own unit, or the largest model's mean cost on the bench."""
    return float(b.E[:, -1].mean()) if cfg.v_unit == "largest" else 1.0


def cost_balance_warnings(cfg: SweepConfig, benches: dict[str, Bench]) -> list[str]:
    """Where V makes the cost term negligible or dominant. The queue comes to rest near q* = V x lambda, lambda
    being the price of accuracy at alpha (sim.routers.bounds.accuracy_price; Lyapunov theory: Q / V tends to the
    constraint's multiplier). Far below one request's effect on the queue, MESS+ flips between the cheapest model
    and the one predicted best; far above, the shortfall after S requests, about q* / S (Theorem 1), stays large."""
    out = []
    for name, b in benches.items():
        acc, cost, S = b.arrays.satisfied.mean(0), b.E.mean(0), b.n_stream
        for alpha, V in itertools.product(b.alphas, cfg.Vs):
            rest = V / cost_unit(cfg, b) * accuracy_price(acc, cost, alpha)
            where = f"bench {name}, alpha {alpha:.3f}, V={V:g} ({cfg.v_unit})"
            if 0 < rest < 0.1:
                hint = "raise V" + (", or give it unit-free with --v-unit largest" if cfg.v_unit == "raw" else "")
                out.append(f"{where}: the cost term is negligible (the queue rests near {rest:.2g}, below one "
                           f"request's effect): MESS+ flips between the cheapest model and the one predicted best; "
                           f"{hint}")  # fmt: skip
            elif rest > 0.01 * S:
                short = (
                    f"about {100 * rest / S:.1f} points below alpha after {S} requests"
                    if rest < S
                    else (f"far below alpha: {S} requests cannot build the queue that high")
                )
                out.append(f"{where}: the cost term dominates (the queue rests near {rest:.3g}, so MESS+ ends "
                           f"{short}); lower V")  # fmt: skip
    return out


@dataclass(frozen=True)
class Runs:
    """R MESS+ runs advanced together: which trajectory each replays, and its settings. Each setting field is the
    runs.parquet column of its name (columns()), so a new knob is one field here and one in RUN_SCHEMA."""

    traj: np.ndarray  # [R] index of the predictor trajectory (the (seed, c, k) key) each run replays
    learn: np.ndarray  # [R] what the predictor learns from: "explored" or "feedback" (one value per chunk)
    cost_estimate: np.ndarray  # [R] how the run believes costs (sim.engine.cost_estimates)
    alpha: np.ndarray  # [R] the SLA
    V: np.ndarray  # [R] the cost weight, in the trace's cost unit (cost_unit scales it for the queue)
    feedback: np.ndarray  # [R] probability a served request's outcome is seen

    @classmethod
    def grid(cls, cfg: SweepConfig, b: Bench, n_traj: int, chunk: int):
        """Every run of the sweep on one bench, `chunk` at a time; runs of one chunk share `learn`."""
        grid = list(itertools.product(range(n_traj), cfg.cost_estimates, b.alphas, cfg.Vs, cfg.feedbacks))
        for learn in cfg.learns:
            for lo in range(0, len(grid), chunk):
                part = grid[lo : lo + chunk]
                traj, est, alpha, V, fb = (np.array(col) for col in zip(*part, strict=True))
                yield cls(traj, np.full(len(part), learn), est, alpha, V, fb)

    def columns(self) -> dict[str, np.ndarray]:
        """The settings as runs.parquet columns (alpha has its own place there: Block.alpha)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("traj", "alpha")}


@dataclass(frozen=True)
class Decided:
    """What R runs decided on their streams, and what it was judged on. Shapes: R runs, S requests, M models."""

    satisfied: np.ndarray  # [R, S, M] outcomes of the run's stream
    explored: np.ndarray  # [R, S] explored positions
    chosen: np.ndarray  # [R, S] model served
    q: np.ndarray  # [R, S] the queue that decided each request
    q_full: np.ndarray  # [R, S] the queue had every request been judged (sim.metrics.outcome)
    loss: np.ndarray  # [R, S] the predictor's BCE per request
    latency: np.ndarray | None  # [R, S, M] seconds, where a latency SLA is set


def blocks(cfg: SweepConfig, b: Bench, keys: list[tuple], gs: list[Group], trained: list[Trained], chunk: int = 1024):
    """Every MESS+ run of one bench. Runs that learn from explorations only share their trajectory's predictions
    and are advanced together, `chunk` runs at a time so memory stays bounded whatever the grid; a run that also
    learns from feedback trains a predictor of its own (sim.training.learn_from_feedback). One Block per chunk."""
    ehat = {(g, m): cost_estimates(b.E[gs[g].stream], gs[g].explored, m) for g in range(len(keys))
            for m in cfg.cost_estimates}  # fmt: skip
    quality = [diagnose(tr, b.arrays.satisfied[g.stream], g.explored) for g, tr in zip(gs, trained, strict=True)]
    served = [explore_answers(b.arrays.satisfied[g.stream], g.explored, cfg.explore_serve) for g in gs]  # [S] each
    losses: dict[int, np.ndarray] = {}  # trajectory -> [S] predictor BCE, shared by the runs that only explore
    scale = cost_unit(cfg, b)
    for r in Runs.grid(cfg, b, len(keys), chunk):
        g = r.traj
        S_runs = np.stack([b.arrays.satisfied[gs[i].stream] for i in g])  # [R, S, M]
        explored = np.stack([gs[i].explored for i in g])  # [R, S]
        answer = np.stack([served[i] for i in g])  # [R, S] model serving an exploration, -1 elsewhere
        has_fb = np.stack([b.draws[keys[i][0]].feedback_u < f for i, f in zip(g, r.feedback, strict=True)])  # [R, S]
        ehats = np.stack([ehat[i, m] for i, m in zip(g, r.cost_estimate, strict=True)])  # [R, S, M]
        lat = None if b.latency is None else np.stack([b.latency[gs[i].stream] for i in g])  # [R, S, M]
        if r.learn[0] == "explored":
            shat = np.stack([trained[i].shat for i in g])  # [R, S, M]
            two = None if lat is None else latency_queue(lat, explored, r.cost_estimate, cfg.latency_sla)
            chosen, q, q_full = replay_queues(shat, ehats, S_runs, answer, has_fb, r.alpha, r.V / scale, two)
            seen = [quality[i] for i in g]
            labels = explored.sum(1) * S_runs.shape[2]
            for i in set(g.tolist()) - losses.keys():
                losses[i] = bce(trained[i].shat, b.arrays.satisfied[gs[i].stream])
            loss = np.stack([losses[i] for i in g])  # [R, S]
        else:
            out = [learn_run(cfg, b, gs[i], keys[i][0], *row) for i, row in
                   zip(g, zip(ehats, answer, has_fb, r.alpha, r.V / scale, strict=True), strict=True)]  # fmt: skip
            chosen, q, q_full, shat = (np.stack([run[j] for run in out]) for j in range(4))
            seen, labels, loss = [run[4] for run in out], [run[5] for run in out], bce(shat, S_runs)
        decided = Decided(S_runs, explored, chosen, q, q_full, loss, lat)
        yield _block(cfg, b, keys, gs, r, decided, seen, labels)


def latency_queue(lat: np.ndarray, explored: np.ndarray, est: np.ndarray, sla: float) -> Latency:
    """The second SLA of R runs: latencies believed as costs are (each run's --cost-estimate of the latencies seen
    on explorations), those realised (lat [R, S, M]), and the promise."""
    lhat = np.stack([cost_estimates(lt, ex, m) for lt, ex, m in zip(lat, explored, est, strict=True)])
    return Latency(lhat, lat, np.full(len(lat), sla))


@subnormals_flushed()
def learn_run(cfg: SweepConfig, b: Bench, g: Group, seed: int, ehat, answer, has_fb, alpha: float, V: float):
    """One run that learns from feedback too: its choices [S], queues [S], predictions [S, M], predictor
    diagnostics (diagnose) and the number of labels it trained on."""
    dtype, d, p = np.dtype(cfg.dtype), b.draws[seed], b.pred
    sat = b.arrays.satisfied[g.stream]  # [S, M]
    X = np.ascontiguousarray(b.X[g.stream], dtype=dtype)  # [S, h]
    hidden, inputs = d.keep_masks(np.arange(len(g.stream)))  # [S, epochs, h] each
    keep = hidden / dtype.type(1.0 - p.dropout)
    keep_in = inputs / dtype.type(1.0 - p.input_dropout) if p.input_dropout > 0 else np.ones_like(keep)
    W1, theta = d.W1.astype(dtype), initial_theta([g])[0].astype(dtype)
    hyper = np.array([p.lr, p.momentum, p.weight_decay, p.clip_norm or np.inf], dtype=dtype)
    S, M = sat.shape
    chosen, q, shat, head = np.empty(S, dtype=np.int64), np.empty(S), np.empty((S, M)), np.empty((S, M), dtype=dtype)
    labels = learn_from_feedback(X, sat.astype(dtype), answer, has_fb, ehat.astype(dtype), alpha, V,
                                 keep.astype(dtype), keep_in.astype(dtype), W1, theta, hyper, p.residual, chosen, q,
                                 shat, head)  # fmt: skip
    _, ln_w, ln_b, w2, _, _ = layout(*W1.shape[:1], sat.shape[1])
    hid = torch.nn.functional.layer_norm(torch.as_tensor(X[g.explored] @ W1.T + theta[:ln_w]), (len(W1),))
    hid = hid.numpy() * theta[ln_w:ln_b] + theta[ln_b:w2]
    dead = float((hid <= 0).all(0).mean()) if len(hid) else float("nan")
    where = f"bench {b.name}, seed {seed}, learning from feedback"
    quality = diagnose(finite(Trained(shat, dead, head.astype(np.float64)), where, p), sat, g.explored)
    return chosen, q, lindley((alpha - sat[np.arange(S), chosen])[None])[0], shat, quality, labels


def _block(cfg: SweepConfig, b: Bench, keys, gs, r: Runs, d: Decided, quality: list[dict], labels) -> Block:
    """The Block of MESS+ runs r, which decided d, with their predictors' diagnostics and labels seen [R]."""
    E_runs = np.stack([b.E[gs[i].stream] for i in r.traj])  # [R, S, M]
    seed, c, k = (np.array([keys[i][j] for i in r.traj]) for j in range(3))
    config, reference = b.columns(seed, r.alpha)
    R, p = len(r.traj), b.pred
    config |= {"method": [MESSPLUS] * R, "kind": ["policy"] * R, **r.columns(), "v_unit": [cfg.v_unit] * R,
               "explore_serve": [cfg.explore_serve] * R, "c": c, "k": k, "cost": [cfg.cost] * R,
               "preset": [b.family] * R, "head": [p.head] * R, "lr": np.full(R, p.lr),
               "momentum": np.full(R, p.momentum), "epochs": np.full(R, p.epochs),
               "input_dropout": np.full(R, p.input_dropout), "clip_norm": np.full(R, p.clip_norm),
               "labels_seen": np.asarray(labels)}  # fmt: skip
    config |= {col: [qual[col] for qual in quality] for col in quality[0]}
    o = outcome(d.chosen, d.explored, d.satisfied, E_runs, r.alpha, d.q, d.q_full, d.loss, d.latency)
    if cfg.latency_sla is not None:
        config["latency_sla"] = np.full(R, cfg.latency_sla)
    parts = b.stream_parts(np.stack([gs[i].stream for i in r.traj]))
    return Block(b.name, config, r.alpha, reference, d.satisfied.shape[1], outcome=o, parts=parts,
                 part_names=b.part_names)  # fmt: skip


def prediction_table(benches: dict[str, Bench], trained: dict[str, tuple[list, list, list]]) -> pl.DataFrame:
    """One row per (bench, seed, c, k) predictor and stream position: what it predicted before that request's own
    update, the true labels, and what exploring cost (for learning curves)."""
    frames = []
    for name, (keys, gs, trs) in trained.items():
        b = benches[name]
        for (seed, c, k), g, tr in zip(keys, gs, trs, strict=True):
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


def predictor_warnings(quality: pl.DataFrame) -> list[str]:
    """The predictor failures a user must see: requests not told apart, worse than counting, models ranked wrongly,
    dead ReLUs."""
    out = []
    for r in quality.iter_rows(named=True):
        learn = "" if r["learn"] == "explored" else f", learning from {r['learn']}"
        where = f"bench {r['bench']}, c={r['c']:g}, k={r['k']:g}{learn}: the predictor"
        z_crit = z_critical(len(r["z"]))
        if all(z is None or z < z_crit for z in r["z"]):
            out.append(
                f"{where} does not tell requests apart (no model's late AUC is {z_crit:.2f} SE above chance, the "
                f"one-sided 5% level corrected for {len(r['z'])} models); try a larger --c or another encoder"
            )
        if r["worse"]:
            hint = "lower --lr or --momentum" + (", or use --head residual" if r["head"] == "paper" else "")
            out.append(
                f"{where} did worse than counting (mean over {r['seeds']} seeds: its late BCE {r['bce']:.4f} against "
                f"the base rate's {r['base_bce']:.4f}, or a model's mean prediction more than {GAP_SLACK} further from "
                f"its explored accuracy than the base rate's); {hint}"
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
