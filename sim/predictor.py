"""Fast MESS+ predictor: many online training trajectories at once, exactly the reference's mathematics.

Why it is fast. With SGD + momentum + weight decay, every parameter evolves linearly except for the gradients it
receives, and the first layer's gradient at step j is rank one, delta_j x_j^T. So after n steps

    W1_n = a[n] W1_0 + sum_{j<n} cw[n - j] delta_j x_j^T

where a and cw come from a 2x2 recurrence in (lr, momentum, weight decay). W1 (h x h) is never formed: W1_n x costs
O(n h) through dot products x_j . x, instead of O(h^2) per step and per prediction. Better still, the E gradients
of one explored request share all later dynamics, so once its epochs are done they fold into two vectors.
Trajectories ("groups": one per bench x seed x c x k) train side by side, one exploration at a time; a group's head
changes only at its explorations, so afterwards its whole stream is predicted in chunks, each position with the
head it had then.
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

    X: [T, h] torch inputs (shared by the groups of one bench); P0: [S, h] W1_0 @ x in stream order (one per seed)
    Y: [T, M] labels; stream: [S] request rows in arrival order; explored: [S] bool
    keep: [n_explore, epochs, h] dropout keep-masks of the explored positions, in order; b1 [h], W2 [M, h], b2 [M]: initial head (W1_0 is inside P0)
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


def sgd_coefficients(cfg: PredictorConfig, n_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients of torch SGD's linear dynamics, each [n_max + 1].

    torch SGD: buf <- mu*buf + (g + wd*w); w <- w - lr*buf. On a (weight, buffer) pair this is (w, b) <- A (w, b)
    with A = [[1 - lr wd, -lr mu], [wd, mu]] plus the gradient, which enters a fresh pair as (-lr, 1).
    a[n], b[n]: first row of A^n (a: weight of the initial W1 after n steps).
    cw[m], cb[m]: weight and buffer parts of a gradient applied m steps ago (cw[0] = cb[0] = 0).
    """
    lr, mu, wd = cfg.lr, cfg.momentum, cfg.weight_decay
    A = np.array([[1 - lr * wd, -lr * mu], [wd, mu]])
    a, b, cw, cb = (np.zeros(n_max + 1) for _ in range(4))
    row, s_grad = np.array([1.0, 0.0]), np.array([-lr, 1.0])
    a[0] = 1.0
    for n in range(1, n_max + 1):
        row = row @ A
        a[n], b[n] = row
        cw[n], cb[n] = s_grad
        s_grad = A @ s_grad
    return a, b, cw, cb


class _Batch:
    """Padded per-group state; groups sorted by number of explorations, so the active ones are a prefix.

    Inputs of all benches are stacked into X_all [sum T, h]; xrows (one [S_g] array per group) maps each group's
    stream positions to rows there. The head's parameters other than W1 live in one flat theta [G, P] with
    P = 3h + M h + M (b1, LayerNorm weight and bias, W2, b2), so one fused SGD update serves them all.
    """

    def __init__(self, groups: list[Group], device: torch.device, dtype: torch.dtype) -> None:
        t = lambda v: torch.as_tensor(np.asarray(v), dtype=dtype, device=device)  # noqa: E731
        self.groups = groups
        self.E = groups[0].cfg.epochs
        self.h, self.M = groups[0].X.shape[1], groups[0].Y.shape[1]
        G, E, h, M = len(groups), self.E, self.h, self.M
        self.pos = [np.flatnonzero(g.explored) for g in groups]  # [n_explore] stream positions of explorations
        self.n_explore = np.array([len(p) for p in self.pos])
        self.n_max = int(self.n_explore.max()) * E  # training steps of the longest trajectory
        n_exp = max(1, int(self.n_explore.max()))
        X_at = {}  # stack each distinct input tensor once
        for g in groups:
            X_at.setdefault(id(g.X), (len(X_at), g.X))
        x_off = np.cumsum([0] + [len(x) for _, x in X_at.values()])
        self.X_all = torch.cat([x for _, x in X_at.values()])
        self.S = np.array([len(g.stream) for g in groups])
        self.xrows = [x_off[X_at[id(g.X)][0]] + g.stream for g in groups]
        # padding past a group's own explorations is never read, so it is left uninitialised
        self.Xtr = torch.empty(G, n_exp, h, dtype=dtype, device=device)  # explored inputs
        self.P0tr = torch.empty(G, n_exp, h, dtype=dtype, device=device)
        self.Gram = torch.empty(G, n_exp, n_exp, dtype=dtype, device=device)
        self.Ytr = torch.empty(G, n_exp, M, dtype=dtype, device=device)
        self.keep = torch.empty(G, n_exp, E, h, dtype=dtype, device=device)
        for i, (g, pos) in enumerate(zip(groups, self.pos, strict=True)):
            n = len(pos)
            xr = self.X_all[torch.as_tensor(self.xrows[i][pos], device=device)]
            self.Xtr[i, :n] = xr
            self.P0tr[i, :n] = g.P0[torch.as_tensor(pos, device=device)]
            self.Gram[i, :n, :n] = xr @ xr.T
            self.Ytr[i, :n] = t(g.Y[g.stream[pos]])
            self.keep[i, :n] = t(g.keep) / (1.0 - g.cfg.dropout)
        distinct = {
            cfg: sgd_coefficients(cfg, self.n_max) for cfg in {g.cfg for g in groups}
        }  # few settings, many groups
        a, b, cw, cb = (t([distinct[g.cfg][k] for g in groups]) for k in range(4))  # each [G, n_max + 1]
        self.a = a  # weight of W1_0 after n steps
        self.lr, self.mu, self.wd = (
            t([[getattr(g.cfg, f)] for g in groups]) for f in ("lr", "momentum", "weight_decay")
        )
        ones, zeros = np.ones((G, h)), np.zeros((G, h))
        self.theta = t(
            np.concatenate(
                [[g.b1 for g in groups], ones, zeros, [g.W2.ravel() for g in groups], [g.b2 for g in groups]], 1
            )
        )
        self.buf = torch.zeros_like(self.theta)
        self.snaps = [self.theta.clone()]  # snaps[d]: theta of the groups with >= d explorations, after d of them
        # First-layer gradients delta_j of the exploration in progress; a finished exploration's E of them fold into
        # a weight part P and a momentum part Q: m steps later they weigh a[m] P + b[m] Q in W1.
        self.D = torch.empty(G, E, h, dtype=dtype, device=device)
        self.PQ = torch.empty(G, 2 * n_exp, h, dtype=dtype, device=device)  # rows 2j, 2j + 1: P, Q of exploration j
        back = torch.arange(E, 0, -1, device=device)  # epoch ep is E - ep steps old when its exploration ends
        self.fold = torch.stack([cw[:, back], cb[:, back]], 1)  # [G, 2, E]
        self.cw_back = cw[:, back[1:]]  # [G, E - 1]: cw[E - 1], ..., cw[1]
        # [G, n_max + 2, 2]: row m + 1 holds (a[m], b[m]), what a fold m steps old weighs in W1; row 0 is zero
        self.ab = F.pad(torch.stack([a, b], -1), (0, 0, 1, 0))

    def unpack(self, theta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[..., P] -> b1 [..., h], LayerNorm weight and bias [..., h], W2 [..., M, h], b2 [..., M]."""
        h, M = self.h, self.M
        b1, w, b, W2, b2 = theta.split([h, h, h, M * h, M], dim=-1)
        return b1, w, b, W2.unflatten(-1, (M, h)), b2

    def train(self, e: int) -> None:
        """Exploration e's E epochs for every group that has one; the backward pass by hand."""
        A, E = int((self.n_explore > e).sum()), self.E
        base = self.a[:A, e * E : (e + 1) * E, None] * self.P0tr[:A, e, None]  # [A, E, h]: W1_0 x, decayed
        if e > 0:  # finished explorations, folded; read once for all epochs
            steps = e * E + torch.arange(E, device=base.device)  # [E] global step index of each epoch
            m = steps[:, None] - E * torch.arange(1, e + 1, device=base.device)  # [E, e] steps since each fold
            w = self.ab[:A].index_select(1, (m + 1).flatten()).view(A, E, e, 2)
            w = (w * self.Gram[:A, e, :e][:, None, :, None]).flatten(2)  # [A, E, 2e], as PQ's rows
            base = base + torch.bmm(w, self.PQ[:A, : 2 * e])
        keep_e, y, gram = self.keep[:A, e], self.Ytr[:A, e], self.Gram[:A, e, e, None]
        mu, lr, wd = self.mu[:A], self.lr[:A], self.wd[:A]
        theta, buf = self.theta[:A], self.buf[:A]
        for epoch in range(E):
            b1, ln_w, ln_b, W2, b2 = self.unpack(theta)
            z = base[:, epoch] + b1
            if epoch > 0:  # earlier epochs on this same request, cw[epoch], ..., cw[1] steps old
                w = self.cw_back[:A, E - 1 - epoch :, None].mT  # [A, 1, epoch]
                z += gram * torch.bmm(w, self.D[:A, :epoch]).squeeze(1)
            # forward: LayerNorm -> affine -> ReLU -> dropout -> Linear -> sigmoid -> mean BCE over M
            zh, mean, rstd = torch.native_layer_norm(z, [self.h], None, None, 1e-5)
            u = torch.addcmul(ln_b, zh, ln_w)
            keep = keep_e[:, epoch] * (u > 0)
            r = u * keep
            p = torch.sigmoid(torch.einsum("ah,amh->am", r, W2) + b2)
            # backward, as torch computes it (BCE divides by max(p(1-p), 1e-12))
            q = p * (1 - p)
            dz2 = (p - y) / torch.clamp(q, min=1e-12) * q / self.M  # [A, M]
            du = torch.bmm(dz2[:, None, :], W2).squeeze(1) * keep  # [A, h]
            dz = torch.ops.aten.native_layer_norm_backward(
                du * ln_w, z, [self.h], mean, rstd, None, None, [True, False, False]
            )[0]
            grad = torch.cat([dz, du * zh, du, (dz2[:, :, None] * r[:, None, :]).flatten(1), dz2], 1)
            self.D[:A, epoch] = dz
            buf.mul_(mu).add_(torch.addcmul(grad, wd, theta))  # torch SGD: buf <- mu buf + (grad + wd theta)
            theta.addcmul_(lr, buf, value=-1)  # theta <- theta - lr buf
        self.snaps.append(self.theta[:A].clone())
        self.PQ[:A, 2 * e : 2 * e + 2] = torch.bmm(self.fold[:A], self.D[:A])

    def predict(self, i: int, chunk: int = 256) -> torch.Tensor:
        """[S, M] eval-mode predictions of group i at every stream position, each with the head it had then.

        Positions are in time order, so a chunk needs only the first explorations' folds, and its per-position
        parameters (gathered from the snapshots) stay in cache."""
        E, pos, S, dev = self.E, self.pos[i], int(self.S[i]), self.X_all.device
        n_e = len(pos)
        done = torch.as_tensor(np.searchsorted(pos, np.arange(S)), device=dev)  # explorations before each position
        snaps = torch.stack([self.snaps[d][i] for d in range(n_e + 1)])  # [n_e + 1, P]
        X = self.X_all.index_select(0, torch.as_tensor(self.xrows[i], device=dev))
        P0 = self.groups[i].P0
        out = torch.empty(S, self.M, dtype=X.dtype, device=dev)
        for lo in range(0, S, chunk):
            d = done[lo : lo + chunk]
            b1, ln_w, ln_b, W2, b2 = self.unpack(snaps.index_select(0, d))
            z = self.a[i].index_select(0, d * E)[:, None] * P0[lo : lo + chunk] + b1
            k = int(d.max())
            if k:  # ab's row 0 is zero: it stands for the folds still ahead (steps since fold < 0)
                m = (d[:, None] - 1 - torch.arange(k, device=dev)) * E  # [C, k] steps since each fold
                w = self.ab[i].index_select(0, (m + 1).clamp(min=0).flatten()).view(len(d), k, 2)
                g = X[lo : lo + chunk] @ self.Xtr[i, :k].T  # [C, k] x . x_j of the explorations so far
                z += (w * g[:, :, None]).flatten(1) @ self.PQ[i, : 2 * k]
            r = torch.relu_(torch.addcmul(ln_b, F.layer_norm(z, (self.h,)), ln_w))
            out[lo : lo + chunk] = torch.sigmoid(torch.einsum("sh,smh->sm", r, W2) + b2)
        return out


@torch.no_grad()
def predict_groups(
    groups: list[Group], device: str = "cpu", dtype: torch.dtype = torch.float32, progress=None
) -> list[np.ndarray]:
    """Pre-update predictions shat [S_g, M] at every stream position of every group (the reference's `shat`)."""
    if not groups:
        return []
    order = sorted(range(len(groups)), key=lambda i: -int(groups[i].explored.sum()))
    batch = _Batch([groups[i] for i in order], torch.device(device), dtype)
    for e in range(int(batch.n_explore.max(initial=0))):
        batch.train(e)
        if progress is not None:
            progress(batch.E)
    result = [batch.predict(i).double().cpu().numpy() for i in range(len(groups))]
    return [result[order.index(i)] for i in range(len(groups))]
