"""linucb-queue: LinUCB on the request's inputs, decided by MESS+'s virtual-queue rule.

Each model's satisfaction is a ridge regression on the request's features, learned from the requests it served,
and read optimistically: its prediction plus BETA standard errors (LinUCB: Li, Chu, Langford and Schapire, WWW
2010, disjoint models). The model minimising V * cost_m + Q * (alpha - ucb_m) serves, Q growing by alpha minus
the satisfaction delivered, as in MESS+. The features are the predictor's inputs projected on their top DIMS
principal components, measured on the calibration split (what a deployed router has seen), scaled so that no
calibration request's norm exceeds 1, and a constant: LinUCB in 384 or 768 dimensions would learn nothing from a
few thousand requests, and cost h^2 a step. Bandit feedback only; costs are each model's running mean of what it
cost when it served.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from messplus.sim.draws import Draws
from messplus.sim.engine import _first_argmin
from messplus.sim.online import observe, queues_step, run
from messplus.sim.routers import Served, Split, register

DIMS = 8  # principal components kept (plus a constant): few enough to learn from a few hundred answers each
BETA = 1.0  # standard errors of optimism
RIDGE = 1.0  # the regression's L2 penalty (A starts at RIDGE I)


def projection(calib_X: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean [h], components [DIMS, h], scale) from the calibration inputs [n, h]."""
    mean = calib_X.mean(0)
    _, _, vt = np.linalg.svd(calib_X - mean, full_matrices=False)
    comps = vt[:DIMS]
    scale = float(np.linalg.norm((calib_X - mean) @ comps.T, axis=1).max()) or 1.0
    return mean, comps, scale


def features(X: np.ndarray, mean: np.ndarray, comps: np.ndarray, scale: float) -> np.ndarray:
    """[S, DIMS + 1] the projected, scaled inputs and a constant 1."""
    Z = (X - mean) @ comps.T / scale
    return np.ascontiguousarray(np.hstack([Z, np.ones((len(X), 1))]), dtype=np.float64)


def spec(stream: Split, alpha: float, V: float, Z: np.ndarray, latency_sla: float | None = None) -> np.ndarray:
    """The policy one request at a time, in plain numpy, on features Z [S, D]: chosen [S]. With a latency SLA, a
    second queue adds its Z_lat * (mean latency_m - sla) to each model's score."""
    S, M = stream.S.shape
    D = Z.shape[1]
    A_inv, b = np.stack([np.eye(D) / RIDGE] * M), np.zeros((M, D))
    n, spent, waited, q, z = np.zeros(M), np.zeros(M), np.zeros(M), 0.0, 0.0
    chosen = np.empty(S, dtype=np.int64)
    for t in range(S):
        x = Z[t]
        if t < M:  # warm-up: each model once, cheapest first
            m = t
        else:
            ucb = np.array([(A_inv[k] @ b[k]) @ x + BETA * np.sqrt(x @ A_inv[k] @ x) for k in range(M)])
            score = V * (spent / n) + q * (alpha - ucb)
            m = int(np.argmin(score if latency_sla is None else score + z * (waited / n - latency_sla)))
        s, c = stream.S[t, m], stream.E[t, m]
        took = stream.latency[t, m] if latency_sla is not None else 0.0
        Ax = A_inv[m] @ x
        A_inv[m] -= np.outer(Ax, Ax) / (1.0 + x @ Ax)  # Sherman-Morrison: A += x x^T
        b[m] += s * x
        n[m], spent[m], waited[m], q = n[m] + 1, spent[m] + c, waited[m] + took, max(0.0, q + (alpha - s))
        z = max(0.0, z + (took - latency_sla)) if latency_sla is not None else 0.0
        chosen[t] = m
    return chosen


@njit(cache=True)
def _kernel(S, E, lat, sla, two, alpha, V, Z, chosen) -> None:
    """The spec compiled: loops over D (a few), theta = A^-1 b kept per model and refreshed for the model that
    served (the only one whose A and b changed)."""
    T, M = S.shape
    D = Z.shape[1]
    A_inv, b, theta = np.zeros((M, D, D)), np.zeros((M, D)), np.zeros((M, D))
    for k in range(M):
        for i in range(D):
            A_inv[k, i, i] = 1.0 / RIDGE
    n, ones, spent, waited = np.zeros(M), np.zeros(M), np.zeros(M), np.zeros(M)
    ucb, cost, slow, Ax = np.zeros(M), np.zeros(M), np.zeros(M), np.zeros(D)
    q, zq = 0.0, 0.0
    for t in range(T):
        x = Z[t]
        m = t
        if t >= M:
            for k in range(M):
                mean, var = 0.0, 0.0
                for i in range(D):
                    mean += theta[k, i] * x[i]
                    row = 0.0
                    for j in range(D):
                        row += A_inv[k, i, j] * x[j]
                    var += x[i] * row
                ucb[k] = mean + BETA * np.sqrt(var)
                cost[k] = spent[k] / n[k]
                slow[k] = waited[k] / n[k]
            m = _first_argmin(ucb, cost, alpha, V, q, slow, sla, zq, two)
        denom = 1.0
        for i in range(D):
            Ax[i] = 0.0
            for j in range(D):
                Ax[i] += A_inv[m, i, j] * x[j]
            denom += x[i] * Ax[i]
        for i in range(D):
            for j in range(D):
                A_inv[m, i, j] -= Ax[i] * Ax[j] / denom
            b[m, i] += S[t, m] * x[i]
        for i in range(D):
            theta[m, i] = 0.0
            for j in range(D):
                theta[m, i] += A_inv[m, i, j] * b[m, j]
        took = lat[t, m] if two else 0.0
        observe(n, ones, spent, waited, m, S[t, m], E[t, m], took)
        q, zq = queues_step(q, zq, alpha, S[t, m], took, sla, two)
        chosen[t] = m


@register("linucb-queue", "policy", f"online rival: LinUCB (ridge regression per model on the inputs' top {DIMS} "
          "principal components, read at its upper confidence bound), decided by MESS+'s queue rule; bandit "
          "feedback only; knows the calibration split's inputs (for the components), not their outcomes",
          needs_calib=True)  # fmt: skip
class LinUCBQueue:
    def fit(self, calib: Split, bench: Split) -> None:
        self.basis = projection(calib.X.astype(np.float64))

    def run(self, stream: Split, alpha: float, V: float, draws: Draws, latency_sla: float | None = None) -> Served:
        if getattr(self, "last", (None,))[0] is not stream.X:  # one stream, many (alpha, V): projected once
            self.last = (stream.X, features(stream.X.astype(np.float64), *self.basis))
        return run(_kernel, stream, alpha, V, latency_sla, self.last[1])
