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

from messplus.sim.draws import Draws
from messplus.sim.online import observe, run
from messplus.sim.routers import Served, Split, register


def spec(stream: Split, alpha: float, V: float, noise: np.ndarray, latency_sla: float | None = None) -> np.ndarray:
    """The policy one request at a time, in plain numpy: chosen [S]. With a latency SLA, a second multiplier mu
    (the same steps, on latency - sla) adds mu * mean latency_m to each model's score."""
    S, M = stream.S.shape
    n, ones, spent, waited, lam, mu = np.zeros(M), np.zeros(M), np.zeros(M), np.zeros(M), 0.0, 0.0
    chosen = np.empty(S, dtype=np.int64)
    for t in range(S):
        if t < M:  # warm-up: each model once
            m = t
        else:
            score = V * (spent / n) - lam * (ones / n + np.sqrt(2.0 * np.log(t + 1.0) / n))
            if latency_sla is not None:
                score = score + mu * (waited / n)
            m = int(np.argmin(score))
        s, c = stream.S[t, m], stream.E[t, m]
        took = stream.latency[t, m] if latency_sla is not None else 0.0
        n[m], ones[m], spent[m], waited[m] = n[m] + 1, ones[m] + s, spent[m] + c, waited[m] + took
        lam = max(0.0, lam + (alpha - s) / np.sqrt(t + 1.0))
        mu = max(0.0, mu + (took - latency_sla) / np.sqrt(t + 1.0)) if latency_sla is not None else 0.0
        chosen[t] = m
    return chosen


@njit(cache=True)
def _kernel(S, E, lat, sla, two, alpha, V, chosen) -> None:
    T, M = S.shape
    n, ones, spent, waited = np.zeros(M), np.zeros(M), np.zeros(M), np.zeros(M)
    lam, mu = 0.0, 0.0
    for t in range(T):
        m = t
        if t >= M:
            best = np.inf
            for k in range(M):
                score = V * (spent[k] / n[k]) - lam * (ones[k] / n[k] + np.sqrt(2.0 * np.log(t + 1.0) / n[k]))
                if two:
                    score += mu * (waited[k] / n[k])
                if score < best:
                    best, m = score, k
        took = lat[t, m] if two else 0.0
        observe(n, ones, spent, waited, m, S[t, m], E[t, m], took)
        lam = max(0.0, lam + (alpha - S[t, m]) / np.sqrt(t + 1.0))
        if two:
            mu = max(0.0, mu + (took - sla) / np.sqrt(t + 1.0))
        chosen[t] = m


@register("primal-dual", "policy", "online rival: UCB1 satisfaction estimates, the satisfaction floor held by a "
          "Lagrange multiplier (projected gradient steps 1 / sqrt(t)) in place of MESS+'s queue, deciding V * cost "
          "- multiplier * ucb; bandit feedback only; knows nothing in advance")  # fmt: skip
class PrimalDual:
    def fit(self, calib: Split, bench: Split) -> None:
        pass

    def run(self, stream: Split, alpha: float, V: float, draws: Draws, latency_sla: float | None = None) -> Served:
        return run(_kernel, stream, alpha, V, latency_sla)
