"""A stationary random mix of models, the cheapest whose accuracy meets alpha, estimated on the calibration split.

What an operator can run without any router: measure each model on a sample of the traffic, then send each
request to a model drawn from fixed shares. It is the deployable version of the `mix` bound, which knows the scored
stream's own accuracies and costs; `sim plan` hands it alpha plus a margin to cover the estimate's error.
"""

from __future__ import annotations

import numpy as np

from messplus.sim.routers import Split, register
from messplus.sim.routers.bounds import mix_lp
from messplus.sim.routers.educated import draw_models


@register("calibrated-mix", "policy", "the cheapest fixed random mix of models whose accuracy meets alpha, each "
          "model's accuracy and mean cost measured on the calibration split; one random model per request",
          needs_calib=True)  # fmt: skip
class CalibratedMix:
    def fit(self, calib: Split, bench: Split) -> None:
        self.acc, self.cost = calib.S.mean(0), calib.E.mean(0)

    def route(self, stream: Split, alpha: float, u: np.ndarray) -> np.ndarray:
        return draw_models(mix_lp(self.acc, self.cost, alpha), u)
