"""What MESS+'s online rivals share (sim/routers/ts_queue.py, linucb_queue.py, primal_dual.py): the warm-up, the
per-model running estimates from bandit feedback, and the virtual queue, each written once for the compiled kernels
and read by the per-request specs.

Every rival routes a stream [S] of a seed with a setting (alpha, V); it observes the outcome and cost of the model
it chose only. The first M requests go to each model in turn, cheapest first, so every estimate starts from one
observation of its own; that is part of the policy, and counted in its cost and satisfaction like any request.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def observe(n, ones, spent, m, s, c) -> None:
    """Model m answered with satisfaction s at cost c: its count, successes and total cost grow (arrays [M])."""
    n[m] += 1.0
    ones[m] += s
    spent[m] += c


@njit(cache=True)
def queue_step(q: float, alpha: float, s: float) -> float:
    """The virtual queue after a request of satisfaction s: max(0, q + alpha - s), as MESS+'s."""
    x = q + (alpha - s)
    return 0.0 if x < 0.0 else x


def runs(kernel, stream, alphas: np.ndarray, Vs: np.ndarray, *extra) -> np.ndarray:
    """chosen [R, S]: the compiled kernel(S, E, alpha, V, *extra, out) run once per (alpha, V) pair [R]."""
    out = np.empty((len(alphas), len(stream.S)), dtype=np.int64)
    S, E = np.ascontiguousarray(stream.S, dtype=np.float64), np.ascontiguousarray(stream.E, dtype=np.float64)
    for r, (alpha, V) in enumerate(zip(alphas, Vs, strict=True)):
        kernel(S, E, float(alpha), float(V), *extra, out[r])
    return out
