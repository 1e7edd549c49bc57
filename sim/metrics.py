"""From per-step choices to the runs and steps tables (shared by every method)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import polars as pl


@dataclass(frozen=True)
class Outcome:
    """R runs over S positions on one seed's stream. All arrays [R, S]."""

    chosen: np.ndarray  # int64 model index whose answer was returned
    explored: np.ndarray  # bool
    sat: np.ndarray  # float 0/1
    cost: np.ndarray  # float, the cost column's unit
    q: np.ndarray  # decision queue after the step
    q_full: np.ndarray  # full-information queue after the step
    loss: np.ndarray | None = None  # predictor BCE before the step's update (MESS+ only)
    latency: np.ndarray | None = None  # seconds the answer took (the served model's), where latencies are known


def log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Elementwise binary cross-entropy of probabilities p against labels y, log clamped at -100 as torch does."""
    with np.errstate(divide="ignore"):
        return -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))


def bce(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[..., M] -> [...] mean binary cross-entropy over the last axis (log_loss)."""
    return log_loss(p, y).mean(-1)


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (ties get average ranks); NaN when y holds one class only."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    _, start, counts = np.unique(sorted_score, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2  # average 1-based rank of each tie block
    ranks = np.empty(len(score))
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def nan_to_none(values) -> list[float | None]:
    """For Parquet and tables: a figure that does not exist is null, never NaN."""
    return [None if np.isnan(v) else float(v) for v in values]


def auc_z(score: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """AUC and how many standard errors it lies above 0.5, the SE being the AUC's own when the score is unrelated
    to y (Mann-Whitney under the null: sqrt((n0 + n1 + 1) / (12 n0 n1))). NaN, NaN when y holds one class only."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    a = auc(score, y)
    if np.isnan(a):
        return a, a
    return a, (a - 0.5) / np.sqrt((n0 + n1 + 1) / (12 * n0 * n1))


def z_critical(n_models: int, level: float = 0.05) -> float:
    """The z an AUC must exceed for "better than chance" when M models are each tested one-sided at once
    (Bonferroni): with 11 models at z = 2, one passes by chance about a quarter of the time."""
    return NormalDist().inv_cdf(1 - level / 2 / n_models)


def ranks_agree(mean_pred: np.ndarray, y_explored: np.ndarray) -> bool | None:
    """Do mean predictions [M] order the models as their accuracies on the explored requests (y [n, M]) do? Only
    pairs whose accuracies differ by more than 1/sqrt(n) (about 1.4 standard errors) are judged; None when no pair
    qualifies. A predictor that gets this wrong routes worse than one that knows only the base rates."""
    n = len(y_explored)
    if n == 0:
        return None
    acc = y_explored.mean(0)
    judged = acc[:, None] - acc[None, :] > 1 / np.sqrt(n)  # [M, M]: m clearly better than m'
    if not judged.any():
        return None
    return bool((mean_pred[:, None] > mean_pred[None, :])[judged].all())


GAP_SLACK = 0.02  # how much further than the counter's a model's mean prediction may lie from its accuracy


def never_worse(bce: float, counter_bce: float, gap: list[float] | None, counter_gap: list[float] | None) -> bool:
    """The predictor's promise, on the second half of a stream: a BCE at most the counter's, and every model's mean
    prediction no further from its accuracy on the explored requests than the counter's mean, plus GAP_SLACK."""
    pairs = zip(gap or [], counter_gap or [], strict=True)
    calibrated = all(g is None or c is None or g <= c + GAP_SLACK for g, c in pairs)
    return bce <= counter_bce and calibrated


def predictor_quality(runs: pl.DataFrame) -> pl.DataFrame:
    """Per bench and predictor setting (c, k, learn, head), over seeds: each model's late AUC and z, as lists in zoo order;
    the late BCE beside the counter's, and each model's calibration gap beside the counter's (sim.base_rate), means
    over seeds, and whether those means say the predictor did worse than counting (never_worse); on how many seeds it
    ranked the models wrongly; the share of dead ReLUs.

    Every MESS+ run of one (bench, seed, c, k) that learns from explorations only shares one predictor, so each
    counts once; a run that learns from feedback has its own, and the first of each seed stands for them."""
    keys = ["bench", "c", "k", "learn", "head"]
    per_seed = runs.filter(pl.col("method") == "messplus").unique([*keys, "seed"], keep="first", maintain_order=True)
    rows = []
    for key, g in per_seed.group_by(keys, maintain_order=True):
        M = len(g["predictor_auc"][0])
        aucs, zs, gaps, base_gaps = (
            np.array([[np.nan if v is None else v for v in (r or [None] * M)] for r in g[col].to_list()], dtype=float)
            for col in ("predictor_auc", "predictor_auc_z", "predictor_gap", "base_rate_gap")
        )  # [seeds, M] each; a null list (no exploration, no gap) as NaNs
        with warnings.catch_warnings():  # a model that always (or never) succeeds has no AUC: NaN, reported as null
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, sd, z = np.nanmean(aucs, 0), np.nanstd(aucs, 0), np.nanmean(zs, 0)
            gap, base_gap = np.nanmean(gaps, 0), np.nanmean(base_gaps, 0)
        stats = {"auc": nan_to_none(mean), "auc_sd": nan_to_none(sd), "z": nan_to_none(z)}
        stats |= {
            "bce": g["predictor_bce"].mean(),
            "head_bce": g["head_bce"].mean(),
            "base_bce": g["base_rate_bce"].mean(),
        }
        stats |= {"gap": nan_to_none(gap), "base_gap": nan_to_none(base_gap)}
        rank_wrong = int((g["predictor_rank_ok"] == False).sum())  # noqa: E712 (null: nothing to judge)
        rows.append(
            dict(
                zip(keys, key, strict=True),
                seeds=g.height,
                **stats,
                worse=not never_worse(stats["bce"], stats["base_bce"], stats["gap"], stats["base_gap"]),
                rank_wrong=rank_wrong,
                dead=g["predictor_dead"].mean(),
            )
        )
    schema = {"bench": pl.String, "c": pl.Float64, "k": pl.Float64, "learn": pl.String, "head": pl.String}
    schema |= {"seeds": pl.Int64}
    schema |= {col: pl.List(pl.Float64) for col in ("auc", "auc_sd", "z")}
    schema |= {
        "bce": pl.Float64,
        "head_bce": pl.Float64,
        "base_bce": pl.Float64,
        "gap": pl.List(pl.Float64),
        "base_gap": pl.List(pl.Float64),
    }
    schema |= {"worse": pl.Boolean, "rank_wrong": pl.Int64, "dead": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def lindley(x: np.ndarray) -> np.ndarray:
    """[R, S] Q_t = max(0, Q_{t-1} + x_t) from Q_0 = 0, in closed form (walk minus its running minimum)."""
    w = np.cumsum(x, axis=1)
    return w - np.minimum(np.minimum.accumulate(w, axis=1), 0.0)


def outcome(chosen, explored, S: np.ndarray, E: np.ndarray, alpha: np.ndarray, q=None, q_full=None, loss=None,
            lat: np.ndarray | None = None):  # fmt: skip
    """chosen/explored [R, S]; S/E (and lat, latencies where known) [R, S, M] each run's stream satisfaction and
    cost. Exploring costs every model; its answer, and so its latency, is the chosen (served) model's."""
    pick = lambda a: np.take_along_axis(a, chosen[..., None], axis=2)[..., 0]  # noqa: E731
    sat = pick(S)
    cost = np.where(explored, E.sum(2), pick(E))
    if q_full is None:
        q_full = lindley(alpha[:, None] - sat)
    latency = None if lat is None else pick(lat)
    return Outcome(chosen, explored, sat, cost, q if q is not None else q_full, q_full, loss, latency)


def summary(o: Outcome, alpha: np.ndarray, M: int) -> dict[str, np.ndarray]:
    """Per-run figures, each [R] (call_ratio [R, M]: share of requests answered by each model)."""
    S = o.sat.shape[1]
    t = np.arange(1, S + 1)
    running = np.cumsum(o.sat, axis=1) / t
    below = running < alpha[:, None] - 1e-12
    last_below = np.where(below.any(1), S - 1 - np.argmax(below[:, ::-1], axis=1), -1)
    first_ok = np.where(below[:, -1], np.nan, last_below + 2.0)  # 1-based; NaN: never settles above alpha
    calls = np.stack([(o.chosen == m).sum(1) for m in range(M)], axis=1) / S
    return {
        "satisfaction": running[:, -1],
        "sla_met": running[:, -1] >= alpha - 1e-12,
        "total_cost": o.cost.sum(1),
        "cost_per_request": o.cost.mean(1),
        "call_ratio": calls,
        "n_explore": o.explored.sum(1),
        "sla_first_ok": first_ok,
        "q_final": o.q[:, -1],
        "q_full_final": o.q_full[:, -1],
    } | ({} if o.latency is None else {"mean_latency_s": o.latency.mean(1)})


def steps(o: Outcome, run_ids: np.ndarray, every: int) -> dict[str, np.ndarray]:
    """Flattened per-step columns, keeping every `every`-th position and the last."""
    R, S = o.sat.shape
    t = np.arange(1, S + 1)
    keep = (t % every == 0) | (t == S)
    n = np.arange(1, S + 1)
    cols = {
        "run_id": np.repeat(run_ids, keep.sum()),
        "t": np.tile(t[keep], R),
        "chosen": o.chosen[:, keep].ravel().astype(np.int16),
        "explored": o.explored[:, keep].ravel(),
        "running_satisfaction": (np.cumsum(o.sat, 1) / n)[:, keep].ravel(),
        "running_cost": (np.cumsum(o.cost, 1) / n)[:, keep].ravel(),
        "q": o.q[:, keep].ravel(),
        "q_full": o.q_full[:, keep].ravel(),
        "loss": (o.loss[:, keep] if o.loss is not None else np.full((R, keep.sum()), np.nan)).ravel(),
    }
    return cols
