"""primal-dual: a bandit with a satisfaction floor held by a Lagrange multiplier, in place of MESS+'s queue.

The bandits-with-knapsacks family (Badanidiyuru, Kleinberg and Slivkins, FOCS 2013; Agrawal and Devanur, EC 2014,
for concave constraints) and budgeted routers such as PILOT keep each constraint's price as a multiplier, learned
online by a projected gradient step, and pick the arm with the best reward less priced resource use. Adapted to a
floor on satisfaction: the model minimising V * cost_m - lambda * ucb_m serves, ucb_m its mean satisfaction so far
plus sqrt(2 ln t / n_m) (UCB1: Auer, Cesa-Bianchi and Fischer, 2002), and lambda <- max(0, lambda + eta_t (alpha -
s_t)) with eta_t = 1 / sqrt(t): a step that shrinks, where MESS+'s queue (the same update with eta = 1) never
settles. Bandit feedback only; costs are each model's running mean of what it cost when it served.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from messplus.sim.online import observe, runs
from messplus.sim.routers import Split, register


def spec(stream: Split, alpha: float, V: float, noise: np.ndarray) -> np.ndarray:
    """The policy one request at a time, in plain numpy: chosen [S]."""
    S, M = stream.S.shape
    n, ones, spent, lam = np.zeros(M), np.zeros(M), np.zeros(M), 0.0
    chosen = np.empty(S, dtype=np.int64)
    for t in range(S):
        ucb = lambda: ones / n + np.sqrt(2.0 * np.log(t + 1.0) / n)  # noqa: B023, E731
        m = t if t < M else int(np.argmin(V * (spent / n) - lam * ucb()))  # warm-up: each model once
        s, c = stream.S[t, m], stream.E[t, m]
        n[m], ones[m], spent[m] = n[m] + 1, ones[m] + s, spent[m] + c
        lam = max(0.0, lam + (alpha - s) / np.sqrt(t + 1.0))
        chosen[t] = m
    return chosen


@njit(cache=True)
def _kernel(S, E, alpha, V, chosen) -> None:
    T, M = S.shape
    n, ones, spent = np.zeros(M), np.zeros(M), np.zeros(M)
    lam = 0.0
    for t in range(T):
        m = t
        if t >= M:
            best = np.inf
            for k in range(M):
                score = V * (spent[k] / n[k]) - lam * (ones[k] / n[k] + np.sqrt(2.0 * np.log(t + 1.0) / n[k]))
                if score < best:
                    best, m = score, k
        observe(n, ones, spent, m, S[t, m], E[t, m])
        lam = max(0.0, lam + (alpha - S[t, m]) / np.sqrt(t + 1.0))
        chosen[t] = m


@register("primal-dual", "policy", "online rival: UCB1 satisfaction estimates, the satisfaction floor held by a "
          "Lagrange multiplier (projected gradient steps 1 / sqrt(t)) in place of MESS+'s queue, deciding V * cost "
          "- multiplier * ucb; bandit feedback only; knows nothing in advance")  # fmt: skip
class PrimalDual:
    def fit(self, calib: Split, bench: Split) -> None:
        pass

    def run(self, stream: Split, alpha: float, V: float, noise: np.ndarray) -> np.ndarray:
        return runs(_kernel, stream, np.array([alpha]), np.array([V]))[0]
