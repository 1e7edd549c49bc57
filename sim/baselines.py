"""The paper's baselines and the bounds every method is judged against.

Routers that learn (RouteLLM-, RouterDC-style) see only the calibration split unless their name says otherwise;
every method is scored on the same stream. Shapes: S stream requests, n calibration requests, h inputs, M models
(cost order).
"""

from __future__ import annotations

import numpy as np
import torch


def mix_lp(acc: np.ndarray, cost: np.ndarray, alpha: float) -> np.ndarray:
    """[M] probabilities minimising expected cost s.t. expected accuracy >= alpha (exact).

    A linear program with two constraints has an optimal vertex with at most two non-zeros, so the optimum is the
    best single model that meets alpha or the best two-model mix that meets it with equality. If no model reaches
    alpha, the most accurate one is returned.
    """
    M = len(acc)
    best, best_cost = None, np.inf
    for i in range(M):
        if acc[i] >= alpha and cost[i] < best_cost:
            best, best_cost = np.eye(M)[i], cost[i]
        for j in range(M):
            if acc[i] < alpha < acc[j]:
                w = (alpha - acc[i]) / (acc[j] - acc[i])
                c = (1 - w) * cost[i] + w * cost[j]
                if c < best_cost:
                    best, best_cost = (1 - w) * np.eye(M)[i] + w * np.eye(M)[j], c
    return best if best is not None else np.eye(M)[int(np.argmax(acc))]


def educated_probs(acc: np.ndarray, alpha: float, iters: int = 5000) -> np.ndarray:
    """[M] the paper's educated guessing (Appendix B): start uniform; while the mixture's accuracy is below alpha,
    scale up (x1.01) every model more accurate than the mixture and down (x0.99) the rest, then renormalise.
    Costs play no part. If that has not met alpha after `iters` rounds, fall back as the reference code does:
    from the most accurate model down, each takes 80% of what is left in proportion to its accuracy above the
    worst model's, and the worst takes the rest."""
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


def fit_logistic(X: np.ndarray, Y: np.ndarray, l2: float = 1e-2, iters: int = 100):
    """L2-regularised logistic regression, Y [n, K] in {0, 1}; returns a function X -> [., K] probabilities."""
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


def weak_ok_scores(X_cal, S_cal, X) -> tuple[np.ndarray, np.ndarray]:
    """RouteLLM-style scores that the weak (cheapest) model suffices: out-of-fold on the calibration split [n]
    (in-sample scores of an overfit classifier would promise more than it delivers), and on the stream [S]."""
    weak_ok = (S_cal[:, 0] >= S_cal[:, -1]).astype(float)[:, None]
    return out_of_fold(X_cal, weak_ok)[:, 0], fit_logistic(X_cal, weak_ok)(X)[:, 0]


def routellm(p_cal: np.ndarray, S_cal: np.ndarray, p: np.ndarray, alpha: float) -> np.ndarray:
    """[S] weak (0) or strong (M-1) per stream score `p`: the threshold is the lowest that still meets alpha on the
    calibration scores `p_cal` (from weak_ok_scores; only this step depends on alpha)."""
    order = np.argsort(-p_cal, kind="stable")  # most confident "weak suffices" first
    gain = (S_cal[order, 0] - S_cal[order, -1]).cumsum()  # satisfaction change of sending the top-k to weak
    sat_k = (S_cal[:, -1].sum() + np.concatenate([[0.0], gain])) / len(p_cal)  # k = 0..n
    ok = np.flatnonzero(sat_k >= alpha)
    k = int(ok.max()) if len(ok) else 0
    threshold = p_cal[order[k - 1]] if k > 0 else np.inf
    return np.where(p >= threshold, 0, S_cal.shape[1] - 1)


THRESHOLDS = np.round(np.arange(0.9, 0.05, -0.1), 1)  # the paper's sweep, cheapest first


def routellm_on_stream(p: np.ndarray, S: np.ndarray, alpha: float) -> np.ndarray:
    """[S] weak (0) or strong (M-1) as the paper tuned RouteLLM: the strong model serves when its score 1 - p
    reaches the threshold; thresholds 0.9, 0.8, ..., 0.1 are tried on the scored stream itself and the first
    (cheapest) whose satisfaction there meets alpha is kept (else 0.1). In-sample: it knows the stream's outcomes."""
    M = S.shape[1]
    for threshold in THRESHOLDS:
        chosen = np.where(1 - p >= threshold, M - 1, 0)
        if S[np.arange(len(S)), chosen].mean() >= alpha:
            break
    return chosen


def routerdc(X_cal, S_cal, X) -> np.ndarray:
    """[S] the model with the highest predicted success (first, i.e. cheapest, on ties)."""
    return np.argmax(fit_logistic(X_cal, S_cal)(X), axis=1)


def oracle(S: np.ndarray, E: np.ndarray) -> np.ndarray:
    """[S] per request the cheapest model that satisfies it, else the cheapest model."""
    return np.argmin(np.where(S > 0, E, E + E.max() * 2 + 1), axis=1)


def mix_bound(S: np.ndarray, E: np.ndarray, alpha: float) -> tuple[float, float]:
    """The best stationary policy: a fixed random mix of models that knows each model's mean satisfaction and cost
    on this stream (S, E [S, M]). Returns its (satisfaction, cost per request); cost inf if no mix reaches alpha."""
    acc, cost = S.mean(0), E.mean(0)
    p = mix_lp(acc, cost, alpha)
    sat = float(p @ acc)
    return sat, float(p @ cost) if sat >= alpha - 1e-12 else float("inf")


def opt_cost(S: np.ndarray, E: np.ndarray, alpha: float) -> float:
    """E_OPT: minimum mean cost with mean satisfaction >= alpha, one (fractional) model per request; inf if
    infeasible. Exact: start every request at its cheapest model, then upgrade the requests whose cheapest
    satisfying model costs the least extra, fractionally for the last one."""
    n = len(S)
    base = np.argmin(E, axis=1)
    rows = np.arange(n)
    cost0 = E[rows, base]
    sat0 = S[rows, base]
    o = oracle(S, E)
    upgradable = (sat0 == 0) & (S[rows, o] > 0)
    need = alpha * n - sat0.sum()
    if need <= 0:
        return float(cost0.mean())
    extra = np.sort(E[rows, o][upgradable] - cost0[upgradable])
    if need > len(extra) + 1e-9:
        return float("inf")
    whole = int(np.floor(need))
    total = cost0.sum() + extra[:whole].sum() + (need - whole) * (extra[whole] if whole < len(extra) else 0.0)
    return float(total / n)
