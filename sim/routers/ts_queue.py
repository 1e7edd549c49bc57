"""ts-queue: Thompson sampling on each model's satisfaction, decided by MESS+'s virtual-queue rule.

Each model's chance of satisfying a request has a Beta(1 + successes, 1 + failures) posterior from the requests it
served (Thompson, 1933; Agrawal and Goyal, COLT 2012, for its regret). Per request, a satisfaction is sampled per
model and the model minimising V * cost_m + Q * (alpha - sampled_m) serves (the drift-plus-penalty rule of Neely,
2010, that MESS+ uses with its predictor); Q grows by alpha minus the satisfaction delivered. The sample is the
posterior's mean plus its standard deviation times the seed's standard normal (a Gaussian approximation of the
Beta draw, so the spec and the compiled kernel read the same numbers). Bandit feedback only: no exploration sends
a request to every model. Costs are each model's running mean of what it cost when it served.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from messplus.sim.draws import Draws
from messplus.sim.engine import _first_argmin
from messplus.sim.online import observe, queues_step, run
from messplus.sim.routers import Served, Split, register


def beta_sample(n: np.ndarray, ones: np.ndarray, z: np.ndarray) -> np.ndarray:
    """[M] mean + sd * z of Beta(1 + ones, 1 + n - ones): the posterior's Gaussian-approximated sample."""
    a, b = ones + 1.0, n - ones + 1.0
    return a / (a + b) + np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0))) * z


def spec(stream: Split, alpha: float, V: float, noise: np.ndarray, latency_sla: float | None = None) -> np.ndarray:
    """The policy one request at a time, in plain numpy: chosen [S]. With a latency SLA, a second queue Z adds
    Z * (mean latency_m - sla) to each model's score."""
    S, M = stream.S.shape
    n, ones, spent, waited, q, z = np.zeros(M), np.zeros(M), np.zeros(M), np.zeros(M), 0.0, 0.0
    chosen = np.empty(S, dtype=np.int64)
    for t in range(S):
        if t < M:  # warm-up: each model once, cheapest first
            m = t
        else:
            score = V * (spent / n) + q * (alpha - beta_sample(n, ones, noise[t]))
            if latency_sla is not None:
                score = score + z * (waited / n - latency_sla)
            m = int(np.argmin(score))
        s, c = stream.S[t, m], stream.E[t, m]
        took = stream.latency[t, m] if latency_sla is not None else 0.0
        n[m], ones[m], spent[m], waited[m] = n[m] + 1, ones[m] + s, spent[m] + c, waited[m] + took
        q = max(0.0, q + (alpha - s))
        z = max(0.0, z + (took - latency_sla)) if latency_sla is not None else 0.0
        chosen[t] = m
    return chosen


@njit(cache=True)
def _kernel(S, E, lat, sla, two, alpha, V, noise, chosen) -> None:
    T, M = S.shape
    n, ones, spent, waited = np.zeros(M), np.zeros(M), np.zeros(M), np.zeros(M)
    sampled, cost, slow = np.zeros(M), np.zeros(M), np.zeros(M)
    q, z = 0.0, 0.0
    for t in range(T):
        m = t
        if t >= M:
            for k in range(M):
                a, b = ones[k] + 1.0, n[k] - ones[k] + 1.0
                sampled[k] = a / (a + b) + np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0))) * noise[t, k]
                cost[k] = spent[k] / n[k]
                slow[k] = waited[k] / n[k]
            m = _first_argmin(sampled, cost, alpha, V, q, slow, sla, z, two)
        took = lat[t, m] if two else 0.0
        observe(n, ones, spent, waited, m, S[t, m], E[t, m], took)
        q, z = queues_step(q, z, alpha, S[t, m], took, sla, two)
        chosen[t] = m


@register("ts-queue", "policy", "online rival: Thompson sampling on each model's Beta posterior of satisfaction, "
          "decided by MESS+'s queue rule (V * cost + Q * (alpha - sampled)); bandit feedback only (the chosen "
          "model's outcome and cost); knows nothing in advance")  # fmt: skip
class ThompsonQueue:
    def fit(self, calib: Split, bench: Split) -> None:
        pass

    def run(self, stream: Split, alpha: float, V: float, draws: Draws, latency_sla: float | None = None) -> Served:
        return run(_kernel, stream, alpha, V, latency_sla, np.ascontiguousarray(draws.noise))
