"""L2-regularised logistic regression, the classifier the learned baselines share (not a router itself)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def fit_logistic(X: np.ndarray, Y: np.ndarray, l2: float = 1e-2) -> Scorer:
    """Fit on X [n, h], Y [n, K] in {0, 1}: K logistic regressions on the standardised inputs, the mean BCE plus
    l2 / 2 |W|^2 (the intercepts unpenalised), minimised to convergence by SciPy's L-BFGS-B. The objective is
    strictly convex, so the answer is its unique minimum whatever the solver's path."""
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z = (np.asarray(X, dtype=np.float64) - mu) / sd
    Yf = np.asarray(Y, dtype=np.float64)
    n, (h, K) = len(Z), (Z.shape[1], Yf.shape[1])

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = theta[: h * K].reshape(h, K), theta[h * K :]
        logits = Z @ W + b
        loss = np.logaddexp(0.0, logits) - Yf * logits  # BCE on logits, stable
        err = (1.0 / (1.0 + np.exp(-logits)) - Yf) / (n * K)
        grad = np.concatenate([(Z.T @ err + l2 * W).ravel(), err.sum(0)])
        return float(loss.mean() + l2 * (W * W).sum() / 2), grad

    opt = minimize(loss_grad, np.zeros(h * K + K), jac=True, method="L-BFGS-B",
                   options={"maxiter": 500})  # fmt: skip
    return Scorer(mu, sd, opt.x[: h * K].reshape(h, K), opt.x[h * K :])


class Scorer:
    """X [m, h] -> [m, K] probabilities of a fitted classifier. The last input's scores are kept (with the input
    itself, so its identity cannot be reused): a router asked for many alphas on one stream scores it once."""

    def __init__(self, mu: np.ndarray, sd: np.ndarray, W: np.ndarray, b: np.ndarray) -> None:
        self.mu, self.sd, self.W, self.b = mu, sd, W, b
        self.last: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if self.last is None or self.last[0] is not X:
            self.last = (X, 1.0 / (1.0 + np.exp(-(((X - self.mu) / self.sd) @ self.W + self.b))))
        return self.last[1]


def out_of_fold(X: np.ndarray, Y: np.ndarray, folds: int = 5) -> np.ndarray:
    """[n, K] predictions for each row from a model that never saw it (calibration order is already random)."""
    fold = np.arange(len(X)) % folds
    out = np.empty(Y.shape)
    for f in range(folds):
        held = fold == f
        out[held] = fit_logistic(X[~held], Y[~held])(X[held])
    return out
