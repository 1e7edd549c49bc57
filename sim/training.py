"""The MESS+ head's online SGD steps, compiled: one window of units for every group of a batch.

A step is a few thousand floating-point operations on vectors of the input dimension, and the steps of one
trajectory form a strict sequence, so torch's per-operation dispatch (tens of microseconds a step) would dominate a
long stream. This kernel runs the window's units of each group in a compiled loop (numba), reading the
quantities sim.predictor prepares with matrix products (docs/predictor.md: eq. 12 and 14 for the pre-activation,
eq. 8-9 for clipping and the LayerNorm backward pass, eq. 1 for torch's SGD update, eq. 10 for the folds).

Shapes: G groups of the batch (the first `live` train in the window), F units per window, L steps per unit, h input
dim, M models, E = F / units per exploration + 1 heads per window, K = 3h + M h + M parameters besides W1, laid out
as `layout` says.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from messplus.sim.base_rate import EVIDENCE
from messplus.sim.engine import _first_argmin

LN_EPS = 1e-5  # nn.LayerNorm's default, as in sim.head


@njit(cache=True)
def layout(h: int, M: int) -> tuple[int, int, int, int, int, int]:
    """Where each of the head's parameters besides W1 lies in the flat theta every kernel and batch reads: the
    offsets of b1 [h], the LayerNorm's weight [h] and bias [h], W2 [M, h] (row-major) and b2 [M], then its
    length. The one statement of the layout."""
    return 0, h, 2 * h, 3 * h, 3 * h + M * h, 3 * h + M * h + M


FAST = {"reassoc", "nsz", "arcp", "contract"}  # sums may be reordered (vectorised): last bits differ; inf, NaN kept


@njit(cache=True, fastmath=FAST)
def layer_norm_backward(dzh: np.ndarray, zh: np.ndarray, rstd: float) -> np.ndarray:
    """Gradient wrt z of zh = LayerNorm(z) without affine (eq. 9): dzh, zh [h]; rstd = 1 / sqrt(var(z) + eps)."""
    h = len(zh)
    g1, g2 = 0.0, 0.0  # the means of dzh and of dzh * zh
    for o in range(h):
        g1 += dzh[o]
        g2 += dzh[o] * zh[o]
    out = np.empty_like(zh)
    for o in range(h):
        out[o] = rstd * (dzh[o] - g1 / h - zh[o] * (g2 / h))
    return out


@njit(cache=True, inline="always")
def _sgd(theta, buf, i, grad, lr, momentum, weight_decay) -> None:
    """torch's SGD update of parameter i, in place (eq. 1)."""
    buf[i] = momentum * buf[i] + (grad + weight_decay * theta[i])
    theta[i] -= lr * buf[i]


@njit(cache=True, fastmath=FAST)
def sgd_step(z, theta, buf, keep, y, offset, weight, xsq, lr, momentum, weight_decay, clip) -> np.ndarray:
    """One training step of the head on its pre-activation z = W1 x + b1 [h]: forward, backward by hand, clipping
    and torch's SGD update of theta and buf [K] in place. keep [h] hidden keep-mask (scaled), y [M] labels, offset
    [M] added to the logits (the residual head's base rate in log-odds; zeros for the paper's), weight
    [M] each output's weight in the loss (1 / M each: the mean BCE; one-hot: the masked BCE of one observed label),
    xsq |x|^2 (W1's gradient is delta x^T, so its norm is |delta| |x|; eq. 5, 8). Returns the clipped delta =
    dloss/dz [h]. Written as loops over h with a few work arrays: a step is a few microseconds, and numba's array
    expressions allocated a temporary per operation (numba's @ would need SciPy's BLAS)."""
    h, M = z.shape[0], y.shape[0]
    _, ln_w, ln_b, w2, b2, _ = layout(h, M)
    mean, var = 0.0, 0.0
    for o in range(h):
        mean += z[o]
    mean /= h
    for o in range(h):
        var += (z[o] - mean) ** 2
    rstd = 1.0 / np.sqrt(var / h + LN_EPS)
    zh, r, mask = np.empty_like(z), np.empty_like(z), np.empty_like(z)
    r_sq = 0.0
    for o in range(h):
        zh[o] = (z[o] - mean) * rstd
        hid = zh[o] * theta[ln_w + o] + theta[ln_b + o]
        mask[o] = keep[o] if hid > 0 else 0.0  # ReLU and dropout as one mask
        r[o] = hid * mask[o]
        r_sq += r[o] * r[o]
    dlogit = np.empty_like(y)
    dhid = np.zeros_like(z)
    for m in range(M):
        logit = theta[b2 + m] + offset[m]
        for o in range(h):
            logit += theta[w2 + m * h + o] * r[o]
        dlogit[m] = (1.0 / (1.0 + np.exp(-logit)) - y[m]) * weight[m]  # BCE on logits
        for o in range(h):
            dhid[o] += dlogit[m] * theta[w2 + m * h + o]
    dzh = np.empty_like(z)
    for o in range(h):
        dhid[o] *= mask[o]
        dzh[o] = dhid[o] * theta[ln_w + o]
    delta = layer_norm_backward(dzh, zh, rstd)
    sq, dl_sq = 0.0, 0.0  # the squared gradient norm, W1's part |delta|^2 |x|^2 included
    for o in range(h):
        sq += delta[o] * delta[o] * (1.0 + xsq) + (dhid[o] * zh[o]) ** 2 + dhid[o] * dhid[o]
    for m in range(M):
        dl_sq += dlogit[m] * dlogit[m]
    coef = min(clip / (np.sqrt(sq + dl_sq * r_sq + dl_sq) + 1e-6), 1.0)
    for o in range(h):
        _sgd(theta, buf, o, delta[o] * coef, lr, momentum, weight_decay)  # b1 first
        _sgd(theta, buf, ln_w + o, dhid[o] * zh[o] * coef, lr, momentum, weight_decay)
        _sgd(theta, buf, ln_b + o, dhid[o] * coef, lr, momentum, weight_decay)
        delta[o] *= coef
    for m in range(M):
        for o in range(h):
            _sgd(theta, buf, w2 + m * h + o, dlogit[m] * r[o] * coef, lr, momentum, weight_decay)
        _sgd(theta, buf, b2 + m, dlogit[m] * coef, lr, momentum, weight_decay)
    return delta


@njit(cache=True, fastmath=FAST)
def train_window(n_train, per, WX, VX, gram, keep, Yu, Ou, decay, fold, recent, hyper, theta, buf, folds, heads):
    """Trains group g's first n_train[g] units of the window, for g < live, in place.

    n_train [live] units each group trains here; per: units per exploration; WX, VX [live, F, h] the checkpoint's
    W1 and buffer times each unit's input (VX all zero while the buffer is); gram [live, F, F]; keep [live, F, L, h];
    Yu [live, F, M] labels, Ou [live, F, M] logit offsets (sgd_step); decay [live, L, F + 1, 4], fold [live, 2, L], recent [live, L, L] (sim.predictor._Plan);
    hyper [live, 4] lr, momentum, weight decay, clip (inf: off). Updates theta, buf [live, K]; writes the (P, Q) of
    each unit into folds [live, F, 2, h] and the head after each exploration into heads [live, E, K] (heads[:, 0]:
    the head the window starts with, set by the caller)."""
    live, L, h = len(n_train), keep.shape[2], WX.shape[2]
    mean = np.full(Yu.shape[2], 1.0 / Yu.shape[2], dtype=Yu.dtype)  # every label seen: the mean BCE
    z = np.empty(h, dtype=WX.dtype)
    deltas = np.empty((L, h), dtype=WX.dtype)
    for g in range(live):
        lr, mu, wd, clip = hyper[g, 0], hyper[g, 1], hyper[g, 2], hyper[g, 3]
        for k in range(n_train[g]):
            xsq = gram[g, k, k]
            for step in range(L):
                a, c = decay[g, step, k, 0], decay[g, step, k, 1]
                for o in range(h):  # (eq. 14) + b1
                    z[o] = a * WX[g, k, o] + c * VX[g, k, o] + theta[g, o]
                for j in range(k):  # the window's finished units (eq. 11, 12)
                    age = decay[g, step, k - 1 - j]
                    p, q = gram[g, k, j] * age[0], gram[g, k, j] * age[1]
                    for o in range(h):
                        z[o] += p * folds[g, j, 0, o] + q * folds[g, j, 1, o]
                for prior in range(step):  # this unit's earlier steps, on the same input (eq. 12, last term)
                    w = xsq * recent[g, step, prior]
                    for o in range(h):
                        z[o] += w * deltas[prior, o]
                deltas[step] = sgd_step(
                    z, theta[g], buf[g], keep[g, k, step], Yu[g, k], Ou[g, k], mean, xsq, lr, mu, wd, clip
                )
            for o in range(h):  # (eq. 10)
                P, Q = 0.0, 0.0
                for step in range(L):
                    P += fold[g, 0, step] * deltas[step, o]
                    Q += fold[g, 1, step] * deltas[step, o]
                folds[g, k, 0, o], folds[g, k, 1, o] = P, Q
            if (k + 1) % per == 0:  # an exploration ends: its head serves until the next
                heads[g, (k + 1) // per] = theta[g]


@njit(cache=True, fastmath=FAST)
def _pre_activation(W1, b1, x):
    """W1 x + b1 [h] by explicit loops (numba's @ needs SciPy's BLAS)."""
    z = np.empty(len(b1), dtype=x.dtype)
    for o in range(len(b1)):
        z[o] = (W1[o] * x).sum() + b1[o]
    return z


@njit(cache=True, fastmath=FAST)
def _probabilities(W1, theta, x, offset):
    """The eval-mode head's probabilities [M] on one input x [h], offset [M] added to its logits."""
    h = len(x)
    M = (len(theta) - 3 * h) // (h + 1)
    _, ln_w, ln_b, w2, b2_at, end = layout(h, M)
    z = _pre_activation(W1, theta[:h], x)
    mean = z.mean()
    zh = (z - mean) / np.sqrt(((z - mean) ** 2).mean() + LN_EPS)
    hid = zh * theta[ln_w:ln_b] + theta[ln_b:w2]
    r = np.maximum(hid, 0.0)
    W2, b2 = theta[w2:b2_at].reshape(M, h), theta[b2_at:end]
    prob = np.empty(M, dtype=x.dtype)
    for m in range(M):
        prob[m] = 1.0 / (1.0 + np.exp(-((W2[m] * r).sum() + b2[m] + offset[m])))
    return prob


@njit(cache=True)
def _log_loss(p: float, y: float) -> float:
    """sim.metrics.log_loss of one probability."""
    return -(y * max(np.log(p), -100.0) + (1.0 - y) * max(np.log1p(-p), -100.0))


@njit(cache=True, fastmath=FAST)
def learn_from_feedback(
    X, sat, served, has_fb, ehat, alpha, V, keep, keep_in, W1, theta, hyper, residual, chosen, q, shat, head
):
    """One MESS+ run whose predictor also learns from exploited requests (sim.reference with learn = feedback):
    predict, decide, update the queue, then train on what was seen: every label of an explored request, the chosen
    model's alone of an exploited one whose outcome came back. The predictor follows this run's own choices, so the
    run is its own trajectory, with W1 and its momentum buffer held explicitly.

    X [S, h] inputs in stream order; sat [S, M]; served [S] the model answering an exploration (-1: MESS+ decides,
    sim.engine.explore_answers); has_fb [S]; ehat [S, M] believed costs; alpha, V scalars; keep, keep_in
    [S, epochs, h] hidden and input keep-masks, scaled (input ones without input dropout); W1 [h, h], theta [K] the
    initial head, trained in place; hyper [4] (training.train_window); residual: whether the logits start from the
    base rate of the labels learned so far, the head answering only once it has earned it (sim.base_rate). Fills
    chosen [S], q [S] the decision queue after each step, shat [S, M] (float64) the predictions the decisions read
    and head [S, M] the head's own, each before its step's update. Returns the labels trained on."""
    S, M = sat.shape
    lr, mu, wd, clip = hyper[0], hyper[1], hyper[2], hyper[3]
    buf, V1 = np.zeros_like(theta), np.zeros_like(W1)  # momentum buffers of theta and of W1
    every, one = np.full(M, 1.0 / M, dtype=sat.dtype), np.zeros(M, dtype=sat.dtype)
    ones, learned = np.zeros(M), np.zeros(M)  # per model: labels learned from that were 1, and all of them
    offset, counter = np.zeros(M, dtype=sat.dtype), np.zeros(M)
    queue, labels, lead = 0.0, 0, 0.0  # lead: sim.base_rate.gate's, in nats
    for t in range(S):
        for m in range(M):  # sim.base_rate.log_odds and probability
            offset[m] = np.log1p(ones[m]) - np.log1p(learned[m] - ones[m]) if residual else 0.0
            counter[m] = (ones[m] + 1.0) / (learned[m] + 2.0)
        raw = _probabilities(W1, theta, X[t], offset)
        head[t] = raw
        need = EVIDENCE  # sim.base_rate.threshold
        for m in range(M):
            need += 0.5 * np.log1p(learned[m])
        if residual and not lead > need:
            shat[t] = counter
        else:
            shat[t] = raw
        explored = served[t] >= 0
        ch = served[t] if explored else _first_argmin(shat[t], ehat[t], alpha, V, queue, ehat[t], 0.0, 0.0, False)
        if has_fb[t]:  # as sim.engine's queue update, NaN kept
            x = queue + (alpha - sat[t, ch])
            queue = 0.0 if x < 0.0 else x
        chosen[t], q[t] = ch, queue
        if not (explored or has_fb[t]):
            continue
        weight = every
        if not explored:
            one[:] = 0.0
            one[ch] = 1.0
            weight = one
        labels += M if explored else 1
        for m in range(M):
            if weight[m] > 0:
                lead += _log_loss(counter[m], sat[t, m]) - _log_loss(raw[m], sat[t, m])  # sim.base_rate.evidence
                ones[m] += sat[t, m]
                learned[m] += 1.0
        for e in range(keep.shape[1]):
            x = X[t] * keep_in[t, e]
            xsq = (x * x).sum()
            delta = sgd_step(_pre_activation(W1, theta[: len(x)], x), theta, buf, keep[t, e], sat[t], offset, weight,
                             xsq, lr, mu, wd, clip)  # fmt: skip
            for o in range(len(x)):  # torch SGD on W1: its gradient is delta x^T (eq. 1, 5)
                V1[o] = mu * V1[o] + (delta[o] * x + wd * W1[o])
                W1[o] -= lr * V1[o]
    return labels
