"""The MESS+ decision rule and virtual queues for many runs at once.

Predictions and exploration draws are shared by every run of a group (bench x seed x c x k), so the only
per-run work is the queue recurrence, advanced for all runs together: one step is a handful of [R, M] array ops.
"""

from __future__ import annotations

import numpy as np
from messplus.sim.config import COST_ESTIMATES
from messplus.sim.metrics import lindley


def cost_estimates(E: np.ndarray, explored: np.ndarray, mode: str) -> np.ndarray:
    """[S, M] the costs the router believes at each position, from E [S, M] and explored [S].

    mean / last: running mean / last of the costs seen on earlier explorations, and 1 for every model before the
    first (the reference code's convention). oracle: the request's own realised costs, which no deployed router
    knows before it answers.
    """
    if mode == "oracle":
        return E
    if mode not in COST_ESTIMATES:
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


def replay_queues(
    shat: np.ndarray,
    ehat: np.ndarray,
    sat: np.ndarray,
    explored: np.ndarray,
    has_feedback: np.ndarray,
    alpha: np.ndarray,
    V: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run R MESS+ runs over S positions.

    shat, ehat, sat: [R, S, M]; explored, has_feedback: [R, S] bool; alpha, V: [R].
    Returns chosen [R, S] (int64), q [R, S] decision queue and q_full [R, S] full-information queue, both after
    each step's update.
    """
    shat, ehat, sat = (a.transpose(1, 0, 2) for a in (shat, ehat, sat))  # time-major for the loop
    explored, has_feedback = explored.T, has_feedback.T
    S, R, M = sat.shape
    rows = np.arange(R)
    chosen = np.empty((S, R), dtype=np.int64)
    slack = np.empty((S, R))  # alpha - s_chosen
    q_hist = np.empty((S, R))
    q = np.zeros(R)
    cost = V[:, None] * ehat  # [S, R, M], the part of the score that does not depend on the queue
    gap = alpha[:, None] - shat
    for t in range(S):
        ch = np.argmin(cost[t] + q[:, None] * gap[t], axis=1)  # first minimum: cheaper model wins ties
        ch[explored[t]] = M - 1
        slack[t] = alpha - sat[t, rows, ch]
        q = np.where(has_feedback[t], np.maximum(0.0, q + slack[t]), q)
        chosen[t], q_hist[t] = ch, q
    return chosen.T, q_hist.T, lindley(slack.T)  # the full-information queue sees every step: closed form
