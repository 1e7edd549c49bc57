"""The bounds every method is judged against: E_OPT (the offline optimum) and the best stationary mix."""

from __future__ import annotations

import numpy as np

from messplus.sim.routers import Split, register
from messplus.sim.routers.oracle import oracle


def mix_lp(acc: np.ndarray, cost: np.ndarray, alpha: float) -> np.ndarray:
    """[M] probabilities minimising expected cost s.t. expected accuracy >= alpha (exact).

    A linear program with two constraints has an optimal vertex with at most two non-zeros, so the optimum is the
    best single model that meets alpha or the best two-model mix that meets it with equality. If no model reaches
    alpha, the most accurate one is returned.
    """
    M = len(acc)
    best, best_cost = None, np.inf
    for i in range(M):
        if acc[i] >= alpha and cost[i] < best_cost:
            best, best_cost = np.eye(M)[i], cost[i]
        for j in range(M):
            if acc[i] < alpha < acc[j]:
                w = (alpha - acc[i]) / (acc[j] - acc[i])
                c = (1 - w) * cost[i] + w * cost[j]
                if c < best_cost:
                    best, best_cost = (1 - w) * np.eye(M)[i] + w * np.eye(M)[j], c
    return best if best is not None else np.eye(M)[int(np.argmax(acc))]


def accuracy_price(acc: np.ndarray, cost: np.ndarray, alpha: float) -> float:
    """The multiplier of the accuracy constraint in `mix_lp`: extra cost per unit of accuracy at alpha, the slope
    of the cheapest mix's cost against its accuracy (0 when a model beats alpha for free, inf past the best)."""
    p = mix_lp(acc, cost, alpha)
    used = np.flatnonzero(p > 0)
    if p @ acc < alpha - 1e-12:
        return float("inf")
    if len(used) == 2:
        i, j = used
        return float((cost[j] - cost[i]) / (acc[j] - acc[i]))
    return 0.0


def mix_bound(S: np.ndarray, E: np.ndarray, alpha: float) -> tuple[float, float]:
    """The best fixed random mix of models, knowing each model's mean satisfaction and cost on this stream (S, E
    [S, M]): its (satisfaction, cost per request), cost inf if no mix reaches alpha."""
    acc, cost = S.mean(0), E.mean(0)
    p = mix_lp(acc, cost, alpha)
    sat = float(p @ acc)
    return sat, float(p @ cost) if sat >= alpha - 1e-12 else float("inf")


def opt_cost(S: np.ndarray, E: np.ndarray, alpha: float) -> float:
    """E_OPT: minimum mean cost with mean satisfaction >= alpha, one (fractional) model per request; inf if
    infeasible. Exact: start every request at its cheapest model, then upgrade the requests whose cheapest
    satisfying model costs the least extra, fractionally for the last one."""
    n = len(S)
    base = np.argmin(E, axis=1)
    rows = np.arange(n)
    cost0 = E[rows, base]
    sat0 = S[rows, base]
    o = oracle(S, E)
    upgradable = (sat0 == 0) & (S[rows, o] > 0)
    need = alpha * n - sat0.sum()
    if need <= 0:
        return float(cost0.mean())
    extra = np.sort(E[rows, o][upgradable] - cost0[upgradable])
    if need > len(extra) + 1e-9:
        return float("inf")
    whole = int(np.floor(need))
    total = cost0.sum() + extra[:whole].sum() + (need - whole) * (extra[whole] if whole < len(extra) else 0.0)
    return float(total / n)


@register("mix", "bound", "bound: the best fixed random mix of models, knowing each model's mean accuracy and "
          "cost on the stream")  # fmt: skip
class Mix:
    def bound(self, stream: Split, alpha: float) -> tuple[float, float]:
        return mix_bound(stream.S, stream.E, alpha)


@register("opt", "bound", "bound: E_OPT, the offline optimum of the paper's problem on the stream (exact LP "
          "relaxation)")  # fmt: skip
class Opt:
    def bound(self, stream: Split, alpha: float) -> tuple[float, float]:
        return alpha, opt_cost(stream.S, stream.E, alpha)
