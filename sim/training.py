"""The MESS+ head's online SGD steps, compiled: one window of units for every group of a batch.

A step is a few thousand floating-point operations on vectors of the input dimension, and the steps of one
trajectory form a strict sequence, so torch's per-operation dispatch (tens of microseconds a step) would dominate a
long stream. This kernel runs the window's units of each group in a compiled loop (numba), reading the
quantities sim.predictor prepares with matrix products (docs/predictor.md: eq. 12 and 14 for the pre-activation,
eq. 8-9 for clipping and the LayerNorm backward pass, eq. 1 for torch's SGD update, eq. 10 for the folds).

Shapes: G groups of the batch (the first `live` train in the window), F units per window, L steps per unit, h input
dim, M models, E = F / units per exploration + 1 heads per window, K = 3h + M h + M parameters besides W1, laid out
as [b1 | LayerNorm weight | LayerNorm bias | W2 (row-major M x h) | b2].
"""

from __future__ import annotations

import numpy as np
from numba import njit

LN_EPS = 1e-5  # nn.LayerNorm's default, as in sim.head


@njit(cache=True)
def layer_norm_backward(dzh: np.ndarray, zh: np.ndarray, rstd: float) -> np.ndarray:
    """Gradient wrt z of zh = LayerNorm(z) without affine (eq. 9): dzh, zh [h]; rstd = 1 / sqrt(var(z) + eps)."""
    return rstd * (dzh - dzh.mean() - zh * (dzh * zh).mean())


@njit(cache=True)
def sgd_step(z, theta, buf, keep, y, xsq, lr, momentum, weight_decay, clip) -> np.ndarray:
    """One training step of the head on its pre-activation z = W1 x + b1 [h]: forward, backward by hand, clipping
    and torch's SGD update of theta and buf [K] in place. keep [h] hidden keep-mask (scaled), y [M] labels, xsq |x|^2
    (W1's gradient is delta x^T, so its norm is |delta| |x|; eq. 5, 8). Returns the clipped delta = dloss/dz [h]."""
    h, M = z.shape[0], y.shape[0]
    ln_w, ln_b = theta[h : 2 * h], theta[2 * h : 3 * h]
    W2, b2 = theta[3 * h : 3 * h + M * h].reshape(M, h), theta[3 * h + M * h :]
    mean = z.mean()
    rstd = 1.0 / np.sqrt(((z - mean) ** 2).mean() + LN_EPS)
    zh = (z - mean) * rstd
    hid = zh * ln_w + ln_b
    mask = keep * (hid > 0)  # ReLU and dropout as one mask
    r = hid * mask
    dlogit = np.empty_like(y)
    dhid = np.zeros_like(z)
    for m in range(M):  # explicit loops: numba's @ needs SciPy's BLAS
        dlogit[m] = (1.0 / (1.0 + np.exp(-((W2[m] * r).sum() + b2[m]))) - y[m]) / M  # BCE on logits, mean over M
        dhid += dlogit[m] * W2[m]
    dhid *= mask
    delta = layer_norm_backward(dhid * ln_w, zh, rstd)
    grad = np.empty_like(theta)
    grad[:h], grad[h : 2 * h], grad[2 * h : 3 * h] = delta, dhid * zh, dhid
    grad[3 * h : 3 * h + M * h] = np.outer(dlogit, r).ravel()
    grad[3 * h + M * h :] = dlogit
    norm = np.sqrt((delta * delta).sum() * xsq + (grad * grad).sum())
    coef = min(clip / (norm + 1e-6), 1.0)
    buf[:] = momentum * buf + (grad * coef + weight_decay * theta)  # (eq. 1)
    theta -= lr * buf
    return delta * coef


@njit(cache=True)
def train_window(n_train, per, WX, VX, gram, keep, Yu, decay, fold, recent, hyper, theta, buf, folds, heads) -> None:
    """Trains group g's first n_train[g] units of the window, for g < live, in place.

    n_train [live] units each group trains here; per: units per exploration; WX, VX [live, F, h] the checkpoint's
    W1 and buffer times each unit's input (VX all zero while the buffer is); gram [live, F, F]; keep [live, F, L, h];
    Yu [live, F, M]; decay [live, L, F + 1, 4], fold [live, 2, L], recent [live, L, L] (sim.predictor._Plan);
    hyper [live, 4] lr, momentum, weight decay, clip (inf: off). Updates theta, buf [live, K]; writes the (P, Q) of
    each unit into folds [live, F, 2, h] and the head after each exploration into heads [live, E, K] (heads[:, 0]:
    the head the window starts with, set by the caller)."""
    live, L = len(n_train), keep.shape[2]
    for g in range(live):
        lr, mu, wd, clip = hyper[g, 0], hyper[g, 1], hyper[g, 2], hyper[g, 3]
        deltas = np.empty((L, WX.shape[2]), dtype=WX.dtype)
        for k in range(n_train[g]):
            xsq = gram[g, k, k]
            for step in range(L):
                a, c = decay[g, step, k, 0], decay[g, step, k, 1]
                z = a * WX[g, k] + c * VX[g, k] + theta[g, : WX.shape[2]]  # (eq. 14) + b1
                for j in range(k):  # the window's finished units (eq. 11, 12)
                    age = decay[g, step, k - 1 - j]
                    z += gram[g, k, j] * (age[0] * folds[g, j, 0] + age[1] * folds[g, j, 1])
                for prior in range(step):  # this unit's earlier steps, on the same input (eq. 12, last term)
                    z += xsq * recent[g, step, prior] * deltas[prior]
                deltas[step] = sgd_step(z, theta[g], buf[g], keep[g, k, step], Yu[g, k], xsq, lr, mu, wd, clip)
            folds[g, k] = 0.0
            for step in range(L):  # (eq. 10)
                folds[g, k, 0] += fold[g, 0, step] * deltas[step]
                folds[g, k, 1] += fold[g, 1, step] * deltas[step]
            if (k + 1) % per == 0:  # an exploration ends: its head serves until the next
                heads[g, (k + 1) // per] = theta[g]
