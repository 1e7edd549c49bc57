"""RouterDC-style routing: per-model success classifiers, the likeliest model wins."""

from __future__ import annotations

import numpy as np

from messplus.sim.routers import Split, register
from messplus.sim.routers.logistic import fit_logistic


@register("routerdc", "policy", "RouterDC-style: per-model logistic classifiers on the calibration split, the "
          "likeliest model wins", needs_calib=True)  # fmt: skip
class RouterDC:
    def fit(self, calib: Split, bench: Split) -> None:
        self.score = fit_logistic(calib.X, calib.S)

    def route(self, stream: Split, alpha: float, u: np.ndarray) -> np.ndarray:
        return np.argmax(self.score(stream.X), axis=1)  # first (cheapest) on ties
