"""The paper's educated guessing (Appendix B): a random model per request, from whole-benchmark accuracies."""

from __future__ import annotations

import numpy as np

from messplus.sim.routers import Split, register


def educated_probs(acc: np.ndarray, alpha: float, iters: int = 5000) -> np.ndarray:
    """[M] the paper's heuristic: start uniform; while the mixture's accuracy is below alpha, scale up (x1.01) every
    model more accurate than the mixture and down (x0.99) the rest, then renormalise. Costs play no part. If that
    has not met alpha after `iters` rounds, fall back as the reference code does: from the most accurate model
    down, each takes 80% of what is left in proportion to its accuracy above the worst model's, and the worst
    takes the rest."""
    p = np.full(len(acc), 1.0 / len(acc))
    for _ in range(iters):
        if p @ acc >= alpha - 1e-6:
            return p
        p = np.where(acc > p @ acc, p * 1.01, p * 0.99)
        p /= p.sum()
    worst, best = acc.min(), acc.max()
    p = np.full(len(acc), 1e-10)
    left = 1.0 - p.sum()
    for i in np.argsort(-acc, kind="stable")[:-1]:
        share = left * 0.8 * ((acc[i] - worst) / (best - worst) if best > worst else 0.0)
        p[i] += share
        left -= share
    p[np.argmin(acc)] += left
    return p / p.sum()


def draw_models(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """[S] one model per request from probabilities p [M], by the seed's uniforms u [S]."""
    return np.minimum(np.searchsorted(np.cumsum(p), u, side="right"), len(p) - 1)


@register("educated", "policy", "the paper's educated guessing (Appendix B heuristic): a random model per "
          "request; knows every model's accuracy on the whole benchmark in advance", deployable=False)  # fmt: skip
class Educated:
    def fit(self, calib: Split, bench: Split) -> None:
        self.acc = bench.S.mean(0)  # whole-benchmark accuracies, as the paper takes them

    def route(self, stream: Split, alpha: float, u: np.ndarray) -> np.ndarray:
        return draw_models(educated_probs(self.acc, alpha), u)
