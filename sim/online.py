"""What MESS+'s online rivals share (sim/routers/ts_queue.py, linucb_queue.py, primal_dual.py): the warm-up, the
per-model running estimates from bandit feedback, and the virtual queues (satisfaction, and latency where a
latency SLA is set), each written once for the compiled kernels. The per-request specs write their own, so that a
spec and its kernel are two independent readings of the policy.

Every rival routes a stream [S] of a seed with a setting (alpha, V); it observes the outcome and cost of the model
it chose only. The first M requests go to each model in turn, cheapest first, so every estimate starts from one
observation of its own; that is part of the policy, and counted in its cost and satisfaction like any request.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from messplus.sim.routers import Served


@njit(cache=True)
def observe(n, ones, spent, waited, m, s, c, latency) -> None:
    """Model m answered with satisfaction s at cost c in `latency` seconds: its count, successes, total cost and
    total latency grow (arrays [M])."""
    n[m] += 1.0
    ones[m] += s
    spent[m] += c
    waited[m] += latency


@njit(cache=True)
def queues_step(q: float, z: float, alpha: float, s: float, took: float, sla: float, two: bool) -> tuple[float, float]:
    """MESS+'s virtual queues after a request of satisfaction s answered in `took` seconds: q <- max(0, q + alpha -
    s), and with a latency SLA (two) z <- max(0, z + took - sla)."""
    x = q + (alpha - s)
    q = 0.0 if x < 0.0 else x
    if two:
        x = z + (took - sla)
        z = 0.0 if x < 0.0 else x
    return q, z


def run(kernel, stream, alpha: float, V: float, latency_sla: float | None, *extra) -> Served:
    """The compiled kernel(S, E, lat, sla, two, alpha, V, *extra, out) over the stream: its choices, no request
    explored. With a latency SLA (two), the rival keeps a second queue, as MESS+ does (sim.engine.replay_queues);
    lat is the stream's latencies then, and its costs otherwise (never read)."""
    f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    S, E = f64(stream.S), f64(stream.E)
    two = latency_sla is not None
    lat = f64(stream.latency) if two else E
    out = np.empty(len(S), dtype=np.int64)
    kernel(S, E, lat, float(latency_sla) if two else np.nan, two, float(alpha), float(V), *extra, out)
    return Served(out)
