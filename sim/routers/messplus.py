"""MESS+ (Woisetschläger et al., NeurIPS 2025) as an online policy like any other: its per-request spec
(sim.reference.simulate_reference) on one stream. Sweeps and plans run it batched instead, every trajectory at once
(sim.mess, sim.engine), which tests/test_online.py holds equal to this, decision by decision."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from messplus.sim.config import PredictorConfig, RunConfig
from messplus.sim.draws import Draws
from messplus.sim.reference import simulate_reference
from messplus.sim.routers import MESSPLUS, Served, Split, register


@register(MESSPLUS, "policy", "MESS+: an online predictor of each model's satisfaction, trained on its own "
          "explorations (every model answers one, at the whole zoo's cost), and a virtual queue deciding V * cost "
          "+ queue * (alpha - predicted satisfaction); knows nothing in advance", batched=True)  # fmt: skip
class MessPlus:
    def __init__(self, pred: PredictorConfig, **run) -> None:
        """pred: the predictor's settings (a bench's resolved preset, sim.bench.Bench.pred); run: RunConfig's
        settings besides alpha, V, seed and latency_sla (c, and optionally k, feedback, cost_estimate,
        explore_serve, learn)."""
        self.pred, self.run_settings = pred, run

    def fit(self, calib: Split, bench: Split) -> None:
        pass

    def run(self, stream: Split, alpha: float, V: float, draws: Draws, latency_sla: float | None = None) -> Served:
        cfg = RunConfig(alpha=alpha, V=V, seed=draws.seed, latency_sla=latency_sla, **self.run_settings)
        on_stream = replace(draws, order=np.arange(len(stream.S)), n_calib=0)  # stream row i arrives i-th
        steps = simulate_reference(stream.X, stream.S, stream.E, on_stream, cfg, self.pred, L=stream.latency)
        return Served(steps.chosen, steps.explored)
