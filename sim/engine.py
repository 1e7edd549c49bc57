"""The MESS+ decision rule and virtual queues for many runs at once.

Predictions and exploration draws are shared by every run of a group (bench x seed x c x k), so the only
per-run work is the queue recurrence. Each step depends on the queue the last one left, so it is a sequential
walk: a compiled kernel (numba) takes each run through its stream, a few float operations per model and step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import get_args

import numpy as np
from numba import njit

from messplus.sim.config import CostEstimate
from messplus.sim.metrics import lindley


def cost_estimates(E: np.ndarray, explored: np.ndarray, mode: str) -> np.ndarray:
    """[S, M] the costs the router believes at each position, from E [S, M] and explored [S].

    mean / last: running mean / last of the costs seen on earlier explorations, and 1 for every model before the
    first (the reference code's convention). oracle: the request's own realised costs, which no deployed router
    knows before it answers.
    """
    if mode == "oracle":
        return E
    if mode not in get_args(CostEstimate):
        raise ValueError(f"unknown cost estimate {mode!r}")
    S, M = E.shape
    idx = np.arange(S)
    if mode == "last":
        last = np.maximum.accumulate(np.where(explored, idx, -1))  # last exploration at or before i
        before = np.concatenate([[-1], last[:-1]])
        return np.where(before[:, None] >= 0, E[np.maximum(before, 0)], 1.0)
    seen = np.cumsum(np.where(explored[:, None], E, 0.0), axis=0)
    count = np.cumsum(explored)
    seen = np.concatenate([np.zeros((1, M)), seen[:-1]])  # strictly before i
    count = np.concatenate([[0], count[:-1]])
    return np.where(count[:, None] > 0, seen / np.maximum(count, 1)[:, None], 1.0)


def explore_answers(S: np.ndarray, explored: np.ndarray, mode: str) -> np.ndarray:
    """[n] the model whose answer an explored request returns, -1 where the request is not explored (S [n, M],
    explored [n]). largest: the last model (the paper's). best: the most accurate on the explored requests strictly
    before, ties to the later (larger) model, so the last one before any exploration and whenever it leads."""
    M = S.shape[1]
    if mode == "largest":
        return np.where(explored, M - 1, -1)
    seen = np.cumsum(np.where(explored[:, None], S, 0.0), axis=0)
    seen = np.concatenate([np.zeros((1, M)), seen[:-1]])  # strictly before each request
    return np.where(explored, M - 1 - np.argmax(seen[:, ::-1], axis=1), -1)


@dataclass(frozen=True)
class Latency:
    """A second SLA, on mean latency, for R runs over S positions: lhat [R, S, M] the latencies believed at each
    decision (cost_estimates of the latencies), served [R, S, M] those realised, sla [R] the promised mean."""

    lhat: np.ndarray
    served: np.ndarray
    sla: np.ndarray


def replay_queues(
    shat: np.ndarray,
    ehat: np.ndarray,
    sat: np.ndarray,
    served: np.ndarray,
    has_feedback: np.ndarray,
    alpha: np.ndarray,
    V: np.ndarray,
    latency: Latency | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run R MESS+ runs over S positions.

    shat, ehat, sat: [R, S, M]; served: [R, S] int, the model answering an explored request, -1 where MESS+
    decides (explore_answers); has_feedback: [R, S] bool; alpha, V: [R]; latency: a second SLA, kept by a second
    queue Z (Z <- max(0, Z + latency served - sla), updated every request) that adds Z * (lhat - sla) to each
    model's score: drift-plus-penalty with two queues.
    Returns chosen [R, S] (int64), q [R, S] decision queue and q_full [R, S] full-information queue, both after
    each step's update.

    The queue makes each step depend on the last, so the walk over S is sequential; it runs compiled, one run at a
    time on the [R, S, M] layout. Inputs are cast to float64 / bool first so one compiled signature serves every
    call (and numpy's promotion of other dtypes is reproduced exactly).
    """
    f64, flags = partial(np.ascontiguousarray, dtype=np.float64), partial(np.ascontiguousarray, dtype=np.bool_)
    ints = partial(np.ascontiguousarray, dtype=np.int64)
    R, S, _ = sat.shape
    chosen = np.empty((R, S), dtype=np.int64)
    q = np.empty((R, S))
    slack = np.empty((R, S))  # alpha - s_chosen
    lat = latency or Latency(ehat, ehat, np.full(R, np.nan))  # off: a NaN sla, never read
    _replay_kernel(f64(shat), f64(ehat), f64(sat), ints(served), flags(has_feedback), f64(alpha), f64(V),
                   f64(lat.lhat), f64(lat.served), f64(lat.sla), latency is not None, chosen, q, slack)  # fmt: skip
    return chosen, q, lindley(slack)  # the full-information queue sees every step: closed form


@njit(cache=True)
def _first_argmin(shat_t, ehat_t, alpha: float, V: float, q: float, lhat_t, sla: float, z: float, two: bool) -> int:
    """First minimum over m of V * ehat + q * (alpha - shat) (+ z * (lhat - sla) with a latency SLA, two), as
    np.argmin picks it: the cheaper model wins ties, and a NaN score is taken at once (shat_t, ehat_t, lhat_t:
    [M])."""
    best, arg = V * ehat_t[0] + q * (alpha - shat_t[0]), 0
    if two:
        best += z * (lhat_t[0] - sla)
    for m in range(1, len(shat_t)):
        if np.isnan(best):
            break
        score = V * ehat_t[m] + q * (alpha - shat_t[m])
        if two:
            score += z * (lhat_t[m] - sla)
        if score < best or np.isnan(score):
            best, arg = score, m
    return arg


@njit(cache=True)
def _replay_kernel(shat, ehat, sat, served, has_feedback, alpha, V, lhat, lat, sla, two, chosen, q_hist, slack):
    """Fill chosen, q_hist and slack [R, S] in place. shat, ehat, sat, lhat, lat: [R, S, M] float64; served
    [R, S] int64; has_feedback: [R, S] bool; alpha, V, sla: [R] float64; two: whether the latency SLA is kept.
    Same float operations, in the same order, as a per-request loop."""
    R, S = served.shape
    for r in range(R):
        q, z = 0.0, 0.0
        for t in range(S):
            ch = served[r, t]
            if ch < 0:
                ch = _first_argmin(shat[r, t], ehat[r, t], alpha[r], V[r], q, lhat[r, t], sla[r], z, two)
            s = alpha[r] - sat[r, t, ch]
            if has_feedback[r, t]:
                x = q + s
                q = 0.0 if x < 0.0 else x  # np.maximum(0, x), NaN kept
            if two:
                y = z + (lat[r, t, ch] - sla[r])
                z = 0.0 if y < 0.0 else y
            chosen[r, t], q_hist[r, t], slack[r, t] = ch, q, s
