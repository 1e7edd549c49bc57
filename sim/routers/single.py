"""Each zoo model alone."""

from __future__ import annotations

import numpy as np

from messplus.sim.routers import Split, register


@register("single", "policy", "each zoo model alone (single:<model>)", per_model=True)
class Single:
    def __init__(self, model: int) -> None:
        self.model = model

    def fit(self, calib: Split, bench: Split) -> None:
        pass

    def route(self, stream: Split, alpha: float, u: np.ndarray) -> np.ndarray:
        return np.full(len(stream.S), self.model)
