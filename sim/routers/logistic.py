"""L2-regularised logistic regression, the classifier the learned baselines share (not a router itself)."""

from __future__ import annotations

import numpy as np
import torch


def fit_logistic(X: np.ndarray, Y: np.ndarray, l2: float = 1e-2, iters: int = 100):
    """Fit on X [n, h], Y [n, K] in {0, 1}; returns a function X -> [., K] probabilities."""
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Xt = torch.tensor((X - mu) / sd, dtype=torch.float64)
    Yt = torch.tensor(Y, dtype=torch.float64)
    W = torch.zeros(X.shape[1], Y.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(Y.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(Xt @ W + b, Yt) + l2 * (W * W).sum() / 2
        loss.backward()
        return loss

    opt.step(closure)
    W_, b_ = W.detach().numpy(), b.detach().numpy()
    return lambda Z: 1.0 / (1.0 + np.exp(-(((Z - mu) / sd) @ W_ + b_)))


def out_of_fold(X: np.ndarray, Y: np.ndarray, folds: int = 5) -> np.ndarray:
    """[n, K] predictions for each row from a model that never saw it (calibration order is already random)."""
    fold = np.arange(len(X)) % folds
    out = np.empty(Y.shape)
    for f in range(folds):
        held = fold == f
        out[held] = fit_logistic(X[~held], Y[~held])(X[held])
    return out
