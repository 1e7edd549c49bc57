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
from messplus.sim.config import PredictorConfig


@dataclass(frozen=True)
class Group:
    """One trajectory. Shapes: T trace requests, S stream positions, h input dim, M models, U training units.

    A unit is a run of L consecutive SGD steps on one input vector: all `epochs` steps of an explored request
    (L = epochs) when the input is not dropped out, else each step alone (L = 1: its input differs per step).
    X: [T, h] torch inputs (shared by the groups of one bench); P0: [S, h] W1_0 @ x in stream order (one per seed)
    Y: [T, M] labels; stream: [S] request rows in arrival order; explored: [S] bool
    unit_pos: [U] stream position each unit trains on (non-decreasing); Xu: [U, h] torch unit inputs (after input
    dropout); P0u: [U, h] W1_0 @ Xu; keep: [U, L, h] hidden keep-masks; b1 [h], W2 [M, h], b2 [M]: initial head
    """

    X: torch.Tensor
    P0: torch.Tensor
    Y: np.ndarray
    stream: np.ndarray
    explored: np.ndarray
    unit_pos: np.ndarray
    Xu: torch.Tensor
    P0u: torch.Tensor
    keep: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    cfg: PredictorConfig

    @property
    def steps_per_unit(self) -> int:
        return self.keep.shape[1]


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
    """Padded per-group state; groups sorted by number of units, so the active ones are a prefix. Every group of a
    batch takes L steps per unit and `upe` units per exploration (epochs = L * upe).

    Inputs of all benches are stacked into X_all [sum T, h]; xrows (one [S_g] array per group) maps each group's
    stream positions to rows there. The head's parameters other than W1 live in one flat theta [G, P] with
    P = 3h + M h + M (b1, LayerNorm weight and bias, W2, b2), so one fused SGD update serves them all.
    """

    def __init__(self, groups: list[Group], device: torch.device, dtype: torch.dtype) -> None:
        t = lambda v: torch.as_tensor(np.asarray(v), dtype=dtype, device=device)  # noqa: E731
        self.groups = groups
        self.L = groups[0].steps_per_unit
        self.upe = groups[0].cfg.epochs // self.L  # units per exploration
        self.h, self.M = groups[0].X.shape[1], groups[0].Y.shape[1]
        G, L, h, M = len(groups), self.L, self.h, self.M
        self.n_units = np.array([len(g.unit_pos) for g in groups])
        self.n_max = int(self.n_units.max()) * L  # training steps of the longest trajectory
        n_u = max(1, int(self.n_units.max()))
        X_at = {}  # stack each distinct input tensor once
        for g in groups:
            X_at.setdefault(id(g.X), (len(X_at), g.X))
        x_off = np.cumsum([0] + [len(x) for _, x in X_at.values()])
        self.X_all = torch.cat([x for _, x in X_at.values()])
        self.S = np.array([len(g.stream) for g in groups])
        self.xrows = [x_off[X_at[id(g.X)][0]] + g.stream for g in groups]
        # padding past a group's own units is never read, so it is left uninitialised
        self.Xtr = torch.empty(G, n_u, h, dtype=dtype, device=device)  # unit inputs
        self.P0tr = torch.empty(G, n_u, h, dtype=dtype, device=device)
        self.Gram = torch.empty(G, n_u, n_u, dtype=dtype, device=device)
        self.Ytr = torch.empty(G, n_u, M, dtype=dtype, device=device)
        self.keep = torch.empty(G, n_u, L, h, dtype=dtype, device=device)
        for i, g in enumerate(groups):
            n = len(g.unit_pos)
            self.Xtr[i, :n], self.P0tr[i, :n] = g.Xu, g.P0u
            self.Gram[i, :n, :n] = g.Xu @ g.Xu.T
            self.Ytr[i, :n] = t(g.Y[g.stream[g.unit_pos]])
            self.keep[i, :n] = t(g.keep) / (1.0 - g.cfg.dropout)
        self.xsq = self.Gram.diagonal(dim1=1, dim2=2)  # [G, n_u] |x_u|^2: the norm of W1's rank-one gradient
        distinct = {cfg: sgd_coefficients(cfg, self.n_max) for cfg in {g.cfg for g in groups}}  # few settings
        a, b, cw, cb = (t([distinct[g.cfg][k] for g in groups]) for k in range(4))  # each [G, n_max + 1]
        self.a = a  # weight of W1_0 after n steps
        self.lr, self.mu, self.wd = (
            t([[getattr(g.cfg, f)] for g in groups]) for f in ("lr", "momentum", "weight_decay")
        )
        self.clip = t([[g.cfg.clip_norm or np.inf] for g in groups])  # [G, 1]; inf: never clips
        ones, zeros = np.ones((G, h)), np.zeros((G, h))
        self.theta = t(
            np.concatenate(
                [[g.b1 for g in groups], ones, zeros, [g.W2.ravel() for g in groups], [g.b2 for g in groups]], 1
            )
        )
        self.buf = torch.zeros_like(self.theta)
        self.snaps = [self.theta.clone()]  # snaps[d]: theta of the groups with >= d explorations, after d of them
        # First-layer gradients delta_j of the unit in progress; a finished unit's L of them fold into a weight
        # part P and a momentum part Q: m steps later they weigh a[m] P + b[m] Q in W1.
        self.D = torch.empty(G, L, h, dtype=dtype, device=device)
        self.PQ = torch.empty(G, 2 * n_u, h, dtype=dtype, device=device)  # rows 2j, 2j + 1: P, Q of unit j
        back = torch.arange(L, 0, -1, device=device)  # step l is L - l steps old when its unit ends
        self.fold = torch.stack([cw[:, back], cb[:, back]], 1)  # [G, 2, L]
        self.cw_back = cw[:, back[1:]]  # [G, L - 1]: cw[L - 1], ..., cw[1]
        # [G, n_max + 2, 2]: row m + 1 holds (a[m], b[m]), what a fold m steps old weighs in W1; row 0 is zero
        self.ab = F.pad(torch.stack([a, b], -1), (0, 0, 1, 0))

    def unpack(self, theta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[..., P] -> b1 [..., h], LayerNorm weight and bias [..., h], W2 [..., M, h], b2 [..., M]."""
        h, M = self.h, self.M
        b1, w, b, W2, b2 = theta.split([h, h, h, M * h, M], dim=-1)
        return b1, w, b, W2.unflatten(-1, (M, h)), b2

    def train(self, e: int) -> None:
        """Unit e's L steps for every group that has one; the backward pass by hand."""
        A, L = int((self.n_units > e).sum()), self.L
        base = self.a[:A, e * L : (e + 1) * L, None] * self.P0tr[:A, e, None]  # [A, L, h]: W1_0 x, decayed
        if e > 0:  # finished units, folded; read once for all steps
            steps = e * L + torch.arange(L, device=base.device)  # [L] global step index of each step
            m = steps[:, None] - L * torch.arange(1, e + 1, device=base.device)  # [L, e] steps since each fold
            w = self.ab[:A].index_select(1, (m + 1).flatten()).view(A, L, e, 2)
            w = (w * self.Gram[:A, e, :e][:, None, :, None]).flatten(2)  # [A, L, 2e], as PQ's rows
            base = base + torch.bmm(w, self.PQ[:A, : 2 * e])
        keep_e, y, gram = self.keep[:A, e], self.Ytr[:A, e], self.Gram[:A, e, e, None]
        mu, lr, wd, clip, xsq = self.mu[:A], self.lr[:A], self.wd[:A], self.clip[:A], self.xsq[:A, e, None]
        theta, buf = self.theta[:A], self.buf[:A]
        for step in range(L):
            b1, ln_w, ln_b, W2, b2 = self.unpack(theta)
            z = base[:, step] + b1
            if step > 0:  # earlier steps on this same input, cw[step], ..., cw[1] steps old
                w = self.cw_back[:A, L - 1 - step :, None].mT  # [A, 1, step]
                z += gram * torch.bmm(w, self.D[:A, :step]).squeeze(1)
            # forward: LayerNorm -> affine -> ReLU -> dropout -> Linear -> sigmoid; BCE on logits, mean over M
            zh, mean, rstd = torch.native_layer_norm(z, [self.h], None, None, 1e-5)
            u = torch.addcmul(ln_b, zh, ln_w)
            keep = keep_e[:, step] * (u > 0)
            r = u * keep
            p = torch.sigmoid(torch.einsum("ah,amh->am", r, W2) + b2)
            dz2 = (p - y) / self.M  # [A, M]
            du = torch.bmm(dz2[:, None, :], W2).squeeze(1) * keep  # [A, h]
            dz = torch.ops.aten.native_layer_norm_backward(
                du * ln_w, z, [self.h], mean, rstd, None, None, [True, False, False]
            )[0]
            grad = torch.cat([dz, du * zh, du, (dz2[:, :, None] * r[:, None, :]).flatten(1), dz2], 1)
            # clip_grad_norm_: W1's gradient dz x^T has norm |dz| |x|; weight decay enters after clipping
            norm = torch.sqrt((dz * dz).sum(1, keepdim=True) * xsq + (grad * grad).sum(1, keepdim=True))
            coef = torch.clamp(clip / (norm + 1e-6), max=1.0)
            dz, grad = dz * coef, grad * coef
            self.D[:A, step] = dz
            buf.mul_(mu).add_(torch.addcmul(grad, wd, theta))  # torch SGD: buf <- mu buf + (grad + wd theta)
            theta.addcmul_(lr, buf, value=-1)  # theta <- theta - lr buf
        if (e + 1) % self.upe == 0:  # an exploration ends: its head serves until the next one
            self.snaps.append(self.theta[:A].clone())
        self.PQ[:A, 2 * e : 2 * e + 2] = torch.bmm(self.fold[:A], self.D[:A])

    def forward(self, i: int, X: torch.Tensor, P0: torch.Tensor, done: torch.Tensor, theta: torch.Tensor):
        """Eval-mode head of group i after `done` units, per row: X, P0 [C, h] inputs and W1_0 inputs, done [C],
        theta [C, P]. Returns the ReLU's input u [C, h] and the logits [C, M]."""
        b1, ln_w, ln_b, W2, b2 = self.unpack(theta)
        z = self.a[i].index_select(0, done * self.L)[:, None] * P0 + b1
        k = int(done.max())
        if k:  # ab's row 0 is zero: it stands for the folds still ahead (steps since fold < 0)
            m = (done[:, None] - 1 - torch.arange(k, device=X.device)) * self.L  # [C, k] steps since each fold
            w = self.ab[i].index_select(0, (m + 1).clamp(min=0).flatten()).view(len(done), k, 2)
            g = X @ self.Xtr[i, :k].T  # [C, k] x . x_j of the units so far
            z = z + (w * g[:, :, None]).flatten(1) @ self.PQ[i, : 2 * k]
        u = torch.addcmul(ln_b, F.layer_norm(z, (self.h,)), ln_w)
        return u, torch.einsum("sh,smh->sm", torch.relu(u), W2) + b2

    def predict(self, i: int, chunk: int = 256) -> tuple[torch.Tensor, float]:
        """[S, M] eval-mode predictions of group i at every stream position, each with the head it had then, and
        the share of hidden units the final head never activates on the explored requests (dead ReLUs).

        Positions are in time order, so a chunk needs only the first units' folds, and its per-position
        parameters (gathered from the snapshots) stay in cache."""
        g, S, dev = self.groups[i], int(self.S[i]), self.X_all.device
        n_u = len(g.unit_pos)
        done = torch.as_tensor(np.searchsorted(g.unit_pos, np.arange(S)), device=dev)  # units before each position
        snaps = torch.stack([self.snaps[d][i] for d in range(n_u // self.upe + 1)])  # [explorations + 1, P]
        X = self.X_all.index_select(0, torch.as_tensor(self.xrows[i], device=dev))
        out = torch.empty(S, self.M, dtype=X.dtype, device=dev)
        for lo in range(0, S, chunk):
            d = done[lo : lo + chunk]
            theta = snaps.index_select(0, torch.div(d, self.upe, rounding_mode="floor"))
            out[lo : lo + chunk] = torch.sigmoid(
                self.forward(i, X[lo : lo + chunk], g.P0[lo : lo + chunk], d, theta)[1]
            )
        pos = torch.as_tensor(np.flatnonzero(g.explored), device=dev)
        if not len(pos):
            return out, float("nan")
        final = torch.full((len(pos),), n_u, device=dev)
        u, _ = self.forward(i, X[pos], g.P0[pos], final, snaps[-1].expand(len(pos), -1))
        return out, float((u <= 0).all(0).double().mean())


@dataclass(frozen=True)
class Trained:
    """What one trajectory predicted: shat [S, M] before each position's own update, and the share of hidden units
    that are dead at the end (never positive on any explored request)."""

    shat: np.ndarray
    dead: float


@torch.no_grad()
def predict_groups(
    groups: list[Group], device: str = "cpu", dtype: torch.dtype = torch.float32, progress=None
) -> list[Trained]:
    """Train every group's predictor and predict its whole stream; groups with the same steps per unit and per
    exploration train side by side in one batch. progress(label, total) returns an advance(n) callback."""
    out: dict[int, Trained] = {}
    batches: dict[tuple[int, int], list[int]] = {}  # (steps per unit, epochs) -> group ids, most units first
    for i in sorted(range(len(groups)), key=lambda i: -len(groups[i].unit_pos)):
        batches.setdefault((groups[i].steps_per_unit, groups[i].cfg.epochs), []).append(i)
    total = sum(len(groups[ids[0]].unit_pos) * groups[ids[0]].steps_per_unit for ids in batches.values())
    advance = progress("training predictors", total) if progress is not None and total else None
    for shape in sorted(batches):
        ids = batches[shape]
        batch = _Batch([groups[i] for i in ids], torch.device(device), dtype)
        for e in range(int(batch.n_units.max(initial=0))):
            batch.train(e)
            if advance is not None:
                advance(batch.L)
        for j, i in enumerate(ids):
            shat, dead = batch.predict(j)
            out[i] = Trained(shat.double().cpu().numpy(), dead)
    return [out[i] for i in range(len(groups))]
