"""Fast MESS+ predictor: many online training trajectories at once, exactly the reference's mathematics.

Why it is fast. With SGD + momentum + weight decay, every parameter evolves linearly except for the gradients it
receives, and the first layer's gradient at step j is rank one, delta_j x_j^T. So after n steps

    W1_n = a[n] W1_0 + sum_{j<n} cw[n - j] delta_j x_j^T

where a and cw come from a 2x2 recurrence in (lr, momentum, weight decay). W1 (h x h) is never formed: W1_n x costs
O(n h) through dot products x_j . x, instead of O(h^2) per step and per prediction. Trajectories ("groups": one per
bench x seed x c x k) train side by side, aligned by step index, and between two explorations a group's head is
fixed, so that stretch of requests is predicted with one matmul.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sim.config import PredictorConfig


@dataclass(frozen=True)
class Group:
    """One trajectory. Shapes: T trace requests, S stream positions, h input dim, M models.

    X, P0: [T, h] torch inputs and W1_0 @ x for every request (shared by groups of one bench and seed)
    Y: [T, M] labels; stream: [S] request rows in arrival order; explored: [S] bool
    keep: [S, epochs, h] dropout keep-masks; b1 [h], W2 [M, h], b2 [M]: initial head (W1_0 is inside P0)
    """

    X: torch.Tensor
    P0: torch.Tensor
    Y: np.ndarray
    stream: np.ndarray
    explored: np.ndarray
    keep: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    cfg: PredictorConfig


def sgd_coefficients(cfg: PredictorConfig, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """a[n]: weight of the initial W1 after n steps; cw[m]: weight of a gradient applied m steps ago (cw[0] = 0).

    torch SGD: buf <- mu*buf + (g + wd*w); w <- w - lr*buf. On a (weight, buffer) pair this is (w, b) <- A (w, b)
    with A = [[1 - lr wd, -lr mu], [wd, mu]] plus the gradient, which enters a fresh pair as (-lr, 1).
    """
    lr, mu, wd = cfg.lr, cfg.momentum, cfg.weight_decay
    A = np.array([[1 - lr * wd, -lr * mu], [wd, mu]])
    a, cw = np.zeros(n_max + 1), np.zeros(n_max + 1)
    s_init, s_grad = np.array([1.0, 0.0]), np.array([-lr, 1.0])
    a[0] = 1.0
    for n in range(1, n_max + 1):
        s_init = A @ s_init
        a[n], cw[n] = s_init[0], s_grad[0]
        s_grad = A @ s_grad
    return a, cw


class _Batch:
    """Padded per-group state; groups sorted by number of training steps, so the active ones are a prefix."""

    def __init__(self, groups: list[Group], device: torch.device, dtype: torch.dtype) -> None:
        t = lambda v: torch.as_tensor(np.asarray(v), dtype=dtype, device=device)  # noqa: E731
        self.groups = groups
        self.E = groups[0].cfg.epochs
        self.h = groups[0].X.shape[1]
        G, E, h, M = len(groups), self.E, self.h, groups[0].Y.shape[1]
        self.pos = [np.flatnonzero(g.explored) for g in groups]  # [n_explore] stream positions of explorations
        self.n_steps = np.array([len(p) * E for p in self.pos])
        n_exp = max(1, max(len(p) for p in self.pos))
        self.n_max = int(self.n_steps.max())
        self.Xtr = torch.zeros(G, n_exp, h, dtype=dtype, device=device)  # explored inputs
        self.P0tr = torch.zeros(G, n_exp, h, dtype=dtype, device=device)
        self.Gram = torch.zeros(G, n_exp, n_exp, dtype=dtype, device=device)
        self.Ytr = torch.zeros(G, n_exp, M, dtype=dtype, device=device)
        self.keep = torch.zeros(G, n_exp, E, h, dtype=dtype, device=device)
        coef = [sgd_coefficients(g.cfg, self.n_max) for g in groups]
        self.a, self.cw = t([c[0] for c in coef]), t([c[1] for c in coef])  # [G, n_max + 1]
        self.lr = t([g.cfg.lr for g in groups])[:, None]
        self.mu = t([g.cfg.momentum for g in groups])[:, None]
        self.wd = t([g.cfg.weight_decay for g in groups])[:, None]
        for i, (g, pos) in enumerate(zip(groups, self.pos, strict=True)):
            rows = torch.as_tensor(g.stream[pos], device=device)
            n = len(pos)
            self.Xtr[i, :n] = g.X[rows]
            self.P0tr[i, :n] = g.P0[rows]
            self.Gram[i, :n, :n] = g.X[rows] @ g.X[rows].T
            self.Ytr[i, :n] = t(g.Y[g.stream[pos]])
            self.keep[i, :n] = t(g.keep[pos]) / (1.0 - g.cfg.dropout)
        # head parameters other than W1, and their momentum buffers: [G, ...]
        self.params = [
            t([g.b1 for g in groups]),  # b1 [G, h]
            torch.ones(G, h, dtype=dtype, device=device),  # LayerNorm weight
            torch.zeros(G, h, dtype=dtype, device=device),  # LayerNorm bias
            t([g.W2 for g in groups]),  # [G, M, h]
            t([g.b2 for g in groups]),  # [G, M]
        ]
        self.bufs = [torch.zeros_like(p) for p in self.params]
        self.D = torch.zeros(G, self.n_max, h, dtype=dtype, device=device)  # first-layer gradients delta_j

    def train_step(self, n: int) -> None:
        """Step n (exploration n // E, epoch n % E) for every group that has one."""
        A = int((self.n_steps > n).sum())
        e, epoch = divmod(n, self.E)
        z = self.a[:A, n, None] * self.P0tr[:A, e] + self.params[0][:A]
        if n > 0:
            j = torch.arange(n, device=z.device)
            coeff = self.cw[:A, n - j] * self.Gram[:A, e, j // self.E]  # [A, n]
            z = z + torch.bmm(coeff[:, None, :], self.D[:A, :n]).squeeze(1)
        z = z.requires_grad_()
        ln_w, ln_b, W2, b2 = (p[:A].detach().requires_grad_() for p in self.params[1:])
        r = torch.relu(F.layer_norm(z, (self.h,)) * ln_w + ln_b) * self.keep[:A, e, epoch]
        prob = torch.sigmoid(torch.bmm(W2, r[:, :, None]).squeeze(2) + b2)
        loss = F.binary_cross_entropy(prob, self.Ytr[:A, e], reduction="none").mean(1).sum()
        dz, *grads = torch.autograd.grad(loss, [z, ln_w, ln_b, W2, b2])
        self.D[:A, n] = dz
        with torch.no_grad():
            for p, buf, g in zip(self.params, self.bufs, [dz, *grads], strict=True):
                shape = (A,) + (1,) * (p.dim() - 1)
                buf[:A] = self.mu[:A].view(shape) * buf[:A] + g + self.wd[:A].view(shape) * p[:A]
                p[:A] -= self.lr[:A].view(shape) * buf[:A]

    @torch.no_grad()
    def predict(self, i: int, n: int, positions: np.ndarray) -> torch.Tensor:
        """[L, M] eval-mode predictions of group i's head after n steps, for stream positions `positions`."""
        g = self.groups[i]
        rows = torch.as_tensor(g.stream[positions], device=self.D.device)
        b1, ln_w, ln_b, W2, b2 = (p[i] for p in self.params)
        z = self.a[i, n] * g.P0[rows] + b1
        if n > 0:
            e = n // self.E  # explorations done
            agg = (self.cw[i, n - torch.arange(n, device=z.device), None] * self.D[i, :n]).view(e, self.E, -1).sum(1)
            z = z + (g.X[rows] @ self.Xtr[i, :e].T) @ agg
        return torch.sigmoid(torch.relu(F.layer_norm(z, (self.h,)) * ln_w + ln_b) @ W2.T + b2)


def predict_groups(
    groups: list[Group], device: str = "cpu", dtype: torch.dtype = torch.float32, progress=None
) -> list[np.ndarray]:
    """Pre-update predictions shat [S_g, M] at every stream position of every group (the reference's `shat`)."""
    if not groups:
        return []
    order = sorted(range(len(groups)), key=lambda i: -int(groups[i].explored.sum()))
    batch = _Batch([groups[i] for i in order], torch.device(device), dtype)
    out = [torch.empty(len(g.stream), g.Y.shape[1], dtype=dtype, device=device) for g in batch.groups]

    def stretch(i: int, done: int) -> None:
        """Positions from just after exploration `done - 1` up to and including exploration `done`."""
        pos, S = batch.pos[i], len(batch.groups[i].stream)
        lo = pos[done - 1] + 1 if done > 0 else 0
        hi = pos[done] + 1 if done < len(pos) else S
        if hi > lo:
            out[i][lo:hi] = batch.predict(i, done * batch.E, np.arange(lo, hi))

    for i in range(len(groups)):
        stretch(i, 0)
    for n in range(batch.n_max):
        batch.train_step(n)
        if n % batch.E == batch.E - 1:
            done = (n + 1) // batch.E
            for i in np.flatnonzero(batch.n_steps > n):
                stretch(i, done)
        if progress is not None:
            progress(1)
    result = [o.double().cpu().numpy() for o in out]
    return [result[order.index(i)] for i in range(len(groups))]
