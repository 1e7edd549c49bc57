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

from messplus.sim.engine import _first_argmin
from messplus.sim.online import observe, queue_step, runs
from messplus.sim.routers import Split, register


def beta_sample(n: np.ndarray, ones: np.ndarray, z: np.ndarray) -> np.ndarray:
    """[M] mean + sd * z of Beta(1 + ones, 1 + n - ones): the posterior's Gaussian-approximated sample."""
    a, b = ones + 1.0, n - ones + 1.0
    return a / (a + b) + np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0))) * z


def spec(stream: Split, alpha: float, V: float, noise: np.ndarray) -> np.ndarray:
    """The policy one request at a time, in plain numpy: chosen [S]."""
    S, M = stream.S.shape
    n, ones, spent, q = np.zeros(M), np.zeros(M), np.zeros(M), 0.0
    chosen = np.empty(S, dtype=np.int64)
    for t in range(S):
        score = lambda: V * (spent / n) + q * (alpha - beta_sample(n, ones, noise[t]))  # noqa: B023, E731
        m = t if t < M else int(np.argmin(score()))  # warm-up: each model once, cheapest first
        s, c = stream.S[t, m], stream.E[t, m]
        n[m], ones[m], spent[m], q = n[m] + 1, ones[m] + s, spent[m] + c, max(0.0, q + (alpha - s))
        chosen[t] = m
    return chosen


@njit(cache=True)
def _kernel(S, E, alpha, V, noise, chosen) -> None:
    T, M = S.shape
    n, ones, spent, sampled, cost = np.zeros(M), np.zeros(M), np.zeros(M), np.zeros(M), np.zeros(M)
    q = 0.0
    for t in range(T):
        m = t
        if t >= M:
            for k in range(M):
                a, b = ones[k] + 1.0, n[k] - ones[k] + 1.0
                sampled[k] = a / (a + b) + np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0))) * noise[t, k]
                cost[k] = spent[k] / n[k]
            m = _first_argmin(sampled, cost, alpha, V, q)
        observe(n, ones, spent, m, S[t, m], E[t, m])
        q = queue_step(q, alpha, S[t, m])
        chosen[t] = m


@register("ts-queue", "policy", "online rival: Thompson sampling on each model's Beta posterior of satisfaction, "
          "decided by MESS+'s queue rule (V * cost + Q * (alpha - sampled)); bandit feedback only (the chosen "
          "model's outcome and cost); knows nothing in advance")  # fmt: skip
class ThompsonQueue:
    def fit(self, calib: Split, bench: Split) -> None:
        pass

    def run(self, stream: Split, alpha: float, V: float, noise: np.ndarray) -> np.ndarray:
        return runs(_kernel, stream, np.array([alpha]), np.array([V]), np.ascontiguousarray(noise))[0]
