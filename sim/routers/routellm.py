"""RouteLLM-style weak/strong routing, with its threshold set two ways: on the calibration split, or on the
scored stream as the paper tuned it."""

from __future__ import annotations

import numpy as np

from messplus.sim.routers import Split, register
from messplus.sim.routers.logistic import fit_logistic, out_of_fold

THRESHOLDS = np.round(np.arange(0.9, 0.05, -0.1), 1)  # the paper's sweep, cheapest first


def weak_ok(S: np.ndarray) -> np.ndarray:
    """[n, 1] whether the weak (cheapest) model does as well as the strong (last) one."""
    return (S[:, 0] >= S[:, -1]).astype(float)[:, None]


def calibrated_threshold(p_cal: np.ndarray, S_cal: np.ndarray, alpha: float) -> float:
    """The lowest weak-score threshold that still meets alpha on the calibration split (scores p_cal [n])."""
    order = np.argsort(-p_cal, kind="stable")  # most confident "weak suffices" first
    gain = (S_cal[order, 0] - S_cal[order, -1]).cumsum()  # satisfaction change of sending the top-k to weak
    sat_k = (S_cal[:, -1].sum() + np.concatenate([[0.0], gain])) / len(p_cal)  # k = 0..n
    ok = np.flatnonzero(sat_k >= alpha)
    k = int(ok.max()) if len(ok) else 0
    return p_cal[order[k - 1]] if k > 0 else np.inf


@register("routellm", "policy", "RouteLLM-style weak/strong router: logistic classifier and threshold fitted on "
          "the calibration split", needs_calib=True)  # fmt: skip
class RouteLLM:
    def fit(self, calib: Split, bench: Split) -> None:
        # out-of-fold scores: in-sample scores of an overfit classifier would promise more than they deliver
        self.p_cal, self.S_cal = out_of_fold(calib.X, weak_ok(calib.S))[:, 0], calib.S
        self.score = fit_logistic(calib.X, weak_ok(calib.S))

    def route(self, stream: Split, alpha: float, u: np.ndarray) -> np.ndarray:
        p = self.score(stream.X)[:, 0]
        return np.where(p >= calibrated_threshold(self.p_cal, self.S_cal, alpha), 0, stream.S.shape[1] - 1)


@register("routellm-paper", "policy", "the same classifier with the threshold tuned as in the paper, on the scored "
          "stream itself (first of 0.9..0.1 that meets alpha): knows the stream's outcomes", needs_calib=True,
          deployable=False)  # fmt: skip
class RouteLLMPaper:
    def fit(self, calib: Split, bench: Split) -> None:
        self.score = fit_logistic(calib.X, weak_ok(calib.S))

    def route(self, stream: Split, alpha: float, u: np.ndarray) -> np.ndarray:
        """The strong model serves when its score 1 - p reaches the threshold; the first (cheapest) threshold whose
        satisfaction on the stream meets alpha is kept (else 0.1)."""
        p, M = self.score(stream.X)[:, 0], stream.S.shape[1]
        for threshold in THRESHOLDS:
            chosen = np.where(1 - p >= threshold, M - 1, 0)
            if stream.S[np.arange(len(p)), chosen].mean() >= alpha:
                break
        return chosen
