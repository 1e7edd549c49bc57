"""Fast MESS+ predictor: many online training trajectories at once, exactly the reference's mathematics.

Trajectories ("groups": one per bench x seed x c x k) train side by side, one unit at a time, and each predicts its
whole stream, every position with the head it had then. The closed forms that make this fast are derived in
docs/predictor.md; code lines cite its equations as `# (eq. n)`. In short: torch SGD with momentum and weight decay
is linear in its state (eq. 1-4) and the first layer's gradient is rank one, so inside a window of F units W1 is a
checkpoint plus a weighted sum of outer products delta_j x_j^T (eq. 6, 14), and W1 x costs dot products x_j . x
(eq. 7). A finished unit's gradients fold into two vectors (P, Q) (eq. 10-11). At each window's end the folds are
merged into the explicit checkpoint (W1 and its momentum buffer, eq. 15), so no step ever reads more than F folds:
the cost is linear in the stream, and memory does not grow with it.

Shapes: G groups in a batch, F units per window, L SGD steps per unit, h input dim, M models, S stream positions,
K = 3h + M h + M head parameters besides W1; `live` counts the groups still training, `present` those still
predicting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from messplus.sim.config import PredictorConfig
from messplus.sim.head import subnormals_flushed
from messplus.sim.training import LN_EPS, layout, train_window

WINDOW = 64  # units between checkpoints: more reads more folds per step, fewer merges the h x h checkpoint more often
CHUNK = 2048  # stream positions predicted per matrix product
PICK_HEADS = 8  # up to this many heads in a chunk, all apply the second layer (a gathered float costs ~8 products)


@dataclass(frozen=True)
class Group:
    """One trajectory. Shapes: T trace requests, S stream positions, h input dim, M models, U training units.

    A unit is a run of L consecutive SGD steps on one input vector: all `epochs` steps of an explored request
    (L = epochs) when the input is not dropped out, else each step alone (L = 1: its input differs per step).
    X: [T, h] torch inputs (shared by the groups of one bench, never copied); W1: [h, h] torch initial first layer
    Y: [T, M] labels; stream: [S] request rows in arrival order; explored: [S] bool
    unit_pos: [U] stream position each unit trains on (non-decreasing); Xu: [U, h] torch unit inputs (after input
    dropout); keep: [U, L, h] hidden keep-masks; b1 [h], W2 [M, h], b2 [M]: initial head
    prior: [S, M] what the residual head adds to its logits at each position, the base rate's log-odds before it
    (sim.base_rate); None for the paper's head
    """

    X: torch.Tensor
    W1: torch.Tensor
    Y: np.ndarray
    stream: np.ndarray
    explored: np.ndarray
    unit_pos: np.ndarray
    Xu: torch.Tensor
    keep: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    cfg: PredictorConfig
    prior: np.ndarray | None = None

    @property
    def steps_per_unit(self) -> int:
        return self.keep.shape[1]


@dataclass(frozen=True)
class Trained:
    """What one trajectory predicted: shat [S, M] before each position's own update, and the share of hidden units
    that are dead at the end (never positive on any explored request); head [S, M], where shat is not the head's own
    (the residual predictor answers with the counter until its head has earned it: sim.base_rate.gate)."""

    shat: np.ndarray
    dead: float
    head: np.ndarray | None = None

    @property
    def own(self) -> np.ndarray:
        """[S, M] the head's own predictions."""
        return self.shat if self.head is None else self.head


class SgdCoefficients(NamedTuple):
    """torch SGD's linear dynamics (eq. 3), each [n_max + 1], indexed by steps elapsed: A^n = [[a, c], [b, d]]."""

    a: np.ndarray  # weight's share of the initial weight
    c: np.ndarray  # weight's share of the initial momentum buffer
    b: np.ndarray  # momentum buffer's share of the initial weight
    d: np.ndarray  # momentum buffer's share of the initial momentum buffer
    p: np.ndarray  # weight's share of a gradient applied that many steps ago (p[0] = 0: not applied yet)
    q: np.ndarray  # momentum buffer's share of that gradient (q[0] = 0)


def sgd_coefficients(cfg: PredictorConfig, n_max: int) -> SgdCoefficients:
    """(a, c, b, d, p, q) for steps 0..n_max: the entries of A^n, and A^(m-1) s for a gradient m steps old
    (eq. 2-3)."""
    lr, mu, wd = cfg.lr, cfg.momentum, cfg.weight_decay
    A = np.array([[1 - lr * wd, -lr * mu], [wd, mu]])  # (eq. 2)
    power = np.zeros((n_max + 1, 2, 2))  # A^n
    p, q = np.zeros(n_max + 1), np.zeros(n_max + 1)
    power[0], s = np.eye(2), np.array([-lr, 1.0])  # A^0; A^0 s
    for n in range(1, n_max + 1):  # (eq. 3)
        power[n] = power[n - 1] @ A
        p[n], q[n] = s
        s = A @ s
    return SgdCoefficients(power[:, 0, 0], power[:, 0, 1], power[:, 1, 0], power[:, 1, 1], p, q)


@dataclass(frozen=True)
class _Plan:
    """Everything a batch of groups trains on that is fixed before its first step. The groups share L and epochs and
    come sorted by number of units, most first, so the ones still training (or predicting) at any unit are a prefix.
    A window holds F units, a whole number of explorations, so every window starts with a fresh head."""

    groups: tuple[Group, ...]
    L: int  # SGD steps per unit
    units_per_exploration: int
    F: int  # units per window
    n_units: np.ndarray  # [G]
    last_window: np.ndarray  # [G] the window a group finishes in (its final positions are predicted there)
    done: tuple[np.ndarray, ...]  # per group, [S]: units finished before each stream position
    decay: np.ndarray  # [G, L, F + 1, 4] (a, c, b, d) at k L + l steps: step l of a unit, k units on (eq. 11)
    fold: np.ndarray  # [G, 2, L] (p, q) at L - l steps: step l's share in its unit's fold (eq. 10)
    recent: np.ndarray  # [G, L, L] p at l - l' steps below the diagonal, 0 elsewhere (eq. 12)
    hyper: np.ndarray  # [G, 4] lr, momentum, weight decay, clip (inf where off)
    theta0: np.ndarray  # [G, K] initial b1, LayerNorm weight and bias, W2, b2
    momentum: bool  # whether any group has momentum: else the checkpoint's buffer never reaches W1 (c = 0)
    device: torch.device
    decay_t: torch.Tensor  # decay on the device, for prediction and merges

    @property
    def h(self) -> int:
        return self.groups[0].X.shape[1]

    @property
    def M(self) -> int:
        return self.groups[0].Y.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.decay_t.dtype

    def count(self, per_group: np.ndarray, above: int) -> int:
        """How many groups (a prefix, by the sort) have per_group > above."""
        return int((per_group > above).sum())


@dataclass(frozen=True)
class _Window:
    """The units of one window for its `live` groups, zero-padded past a group's last unit: Xu [live, F, h], Yu
    [live, F, M] labels, Ou [live, F, M] logit offsets (Group.prior at the unit's position), keep [live, F, L, h] (scaled by 1 / (1 - dropout)), gram [live, F, F] x_u . x_v; WX, VX
    [live, F, h] the checkpoint's W1 x_u and momentum buffer times x_u (VX None while the buffer is zero)."""

    Xu: torch.Tensor
    Yu: torch.Tensor
    Ou: torch.Tensor
    keep: torch.Tensor
    gram: torch.Tensor
    WX: torch.Tensor
    VX: torch.Tensor | None


@dataclass
class _Checkpoint:
    """W1 and its momentum buffer at the current window's start, explicit: WV [G, R, h, h] (R = 2 with momentum;
    without it the buffer never reaches W1, R = 1). The first `rows` are in use (1 while the buffer is still zero).
    Rows past the groups still training are stale, never read; spare is the same size, for the merge to write into."""

    WV: torch.Tensor
    spare: torch.Tensor
    rows: int = 1

    def of(self, i: int) -> torch.Tensor:
        """[rows h, h] group i's W1 and buffer stacked, so one matrix product applies both."""
        return self.WV[i, : self.rows].flatten(0, 1)


def _plan(groups: list[Group], device: torch.device, dtype: torch.dtype, window: int) -> _Plan:
    """A batch's fixed tables; groups come sorted by units, most first."""
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    L, epochs = groups[0].steps_per_unit, groups[0].cfg.epochs
    per = epochs // L
    Fw = per * math.ceil(window / per)
    n_units = np.array([len(g.unit_pos) for g in groups])
    last_window = np.maximum(0, -(-n_units // Fw) - 1)
    done = tuple(np.searchsorted(g.unit_pos, np.arange(len(g.stream))) for g in groups)
    settings = {cfg: sgd_coefficients(cfg, (Fw + 1) * L - 1) for cfg in {g.cfg for g in groups}}  # few distinct
    coef = [np.array([settings[g.cfg][k] for g in groups]) for k in range(6)]  # [G, (F + 1) L] each
    decay, fold, recent = (t.astype(np_dtype) for t in _coefficient_tables(*coef, L))
    hyper = np.array([[g.cfg.lr, g.cfg.momentum, g.cfg.weight_decay, g.cfg.clip_norm or np.inf] for g in groups])
    return _Plan(
        tuple(groups), L, per, Fw, n_units, last_window, done, decay, fold, recent, hyper.astype(np_dtype),
        initial_theta(groups).astype(np_dtype), any(g.cfg.momentum != 0 for g in groups), device,
        torch.as_tensor(decay, device=device),
    )  # fmt: skip


def initial_theta(groups: list[Group]) -> np.ndarray:
    """[G, K] b1, LayerNorm weight (ones) and bias (zeros), W2 and b2 of each group's initial head, in
    training.layout's order."""
    ones, zeros = np.ones((len(groups), len(groups[0].b1))), np.zeros((len(groups), len(groups[0].b1)))
    parts = [[g.b1 for g in groups], ones, zeros, [g.W2.ravel() for g in groups], [g.b2 for g in groups]]
    return np.concatenate(parts, 1)


def _coefficient_tables(a, c, b, d, p, q, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the coefficients [G, (F + 1) L] of eq. 3, the tables that index them by unit and step instead of by
    steps elapsed, so that no caller does index arithmetic: decay, fold and recent as documented on _Plan."""
    decay = np.stack([a, c, b, d], -1).reshape(len(a), -1, L, 4).transpose(0, 2, 1, 3)  # [G, L, F + 1, 4]
    age = np.arange(L, 0, -1)  # [L] how old step l's gradient is when its unit ends: L - l
    lag = np.arange(L)
    lag = np.maximum(lag[:, None] - lag, 0)  # [L, L] steps from step l' to step l
    return np.ascontiguousarray(decay), np.stack([p[:, age], q[:, age]], 1), np.tril(p[:, lag], k=-1)


def _window(plan: _Plan, u0: int, live: int, ck: _Checkpoint) -> _Window:
    """The units u0 .. u0 + F - 1 of the first `live` groups, stacked, and the checkpoint applied to their inputs."""
    new = partial(torch.zeros, dtype=plan.dtype, device=plan.device)
    tensor = partial(torch.as_tensor, dtype=plan.dtype, device=plan.device)
    Xu, keep = new(live, plan.F, plan.h), new(live, plan.F, plan.L, plan.h)
    Yu, Ou = new(live, plan.F, plan.M), new(live, plan.F, plan.M)
    for i, g in enumerate(plan.groups[:live]):
        at = slice(u0, min(u0 + plan.F, len(g.unit_pos)))
        n = at.stop - at.start
        Xu[i, :n] = g.Xu[at]
        Yu[i, :n] = tensor(g.Y[g.stream[g.unit_pos[at]]])
        if g.prior is not None:
            Ou[i, :n] = tensor(g.prior[g.unit_pos[at]])
        keep[i, :n] = tensor(g.keep[at]) / (1.0 - g.cfg.dropout)
    gram = torch.bmm(Xu, Xu.transpose(1, 2))
    WVX = torch.bmm(Xu, ck.WV[:live, : ck.rows].flatten(1, 2).transpose(1, 2))  # [live, F, rows h]
    return _Window(Xu, Yu, Ou, keep, gram, WVX[..., : plan.h], WVX[..., plan.h :] if ck.rows == 2 else None)


def _unpack(theta: torch.Tensor, h: int, M: int) -> tuple[torch.Tensor, ...]:
    """[..., K] -> b1 [..., h], LayerNorm weight and bias [..., h], W2 [..., M, h], b2 [..., M] (views), as
    training.layout lays them out."""
    b1, ln_w, ln_b, W2, b2 = theta.split(np.diff(layout(h, M)).tolist(), dim=-1)
    return b1, ln_w, ln_b, W2.unflatten(-1, (M, h)), b2


def _run(plan: _Plan, advance) -> list[Trained]:
    """Every window in order: train its units for the groups that have them (sim.training), predict the stream
    positions whose head it holds, then merge its folds into the checkpoint (eq. 15). theta, buf [G, K] are the
    head's parameters besides W1 and their momentum buffer."""
    G, h, M, F, per = len(plan.groups), plan.h, plan.M, plan.F, plan.units_per_exploration
    theta = plan.theta0.copy()
    buf = np.zeros_like(theta)
    WV = torch.zeros(G, 2 if plan.momentum else 1, h, h, dtype=plan.dtype, device=plan.device)
    WV[:, 0] = torch.stack([g.W1 for g in plan.groups])
    ck = _Checkpoint(WV, torch.empty_like(WV))
    shat = [torch.empty(len(g.stream), M, dtype=plan.dtype, device=plan.device) for g in plan.groups]
    dead = [float("nan")] * G
    host = lambda t: t.cpu().numpy()  # noqa: E731
    device = partial(torch.as_tensor, device=plan.device)
    for w in range(int(plan.last_window.max(initial=0)) + 1):
        u0, present = w * F, plan.count(plan.last_window, w - 1)
        live = plan.count(plan.n_units, u0)
        win = _window(plan, u0, live, ck)
        n_train = np.clip(plan.n_units[:live] - u0, 0, F)  # [live] units each trains here
        folds = np.zeros((live, F, 2, h), dtype=theta.dtype)  # (P, Q) per unit
        heads = np.empty((present, F // per + 1, theta.shape[1]), dtype=theta.dtype)  # per exploration ended
        heads[:, 0] = theta[:present]
        if live:
            VX = host(win.VX) if win.VX is not None else np.zeros_like(host(win.WX))
            train_window(
                n_train, per, host(win.WX), VX, host(win.gram), host(win.keep), host(win.Yu), host(win.Ou),
                plan.decay[:live],
                plan.fold[:live], plan.recent[:live], plan.hyper[:live], theta[:live], buf[:live], folds, heads[:live],
            )  # fmt: skip
            advance(plan.L * int(n_train.max()))
        folds_t = device(folds)
        for i in range(present):
            state = (ck.of(i), win.Xu[i] if i < live else None, folds_t[i] if i < live else None)
            trained = int(n_train[i]) if i < live else 0
            _predict_window(plan, i, u0, state, device(heads[i, : trained // per + 1]), shat[i])
            if w == plan.last_window[i]:
                dead[i] = _dead_share(plan, i, u0, state, device(theta[i]))
        merging = plan.count(plan.last_window, w)
        if merging:
            _merge(plan, merging, ck, win, folds_t)
    return [Trained(s.double().cpu().numpy(), d) for s, d in zip(shat, dead, strict=True)]


def _eval_head(plan: _Plan, i: int, x, m, state, heads, e) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode head of group i on inputs x [C, h], each after m [C] of the window's units, with the parameters
    heads[e] (heads [E, K], e [C] non-decreasing); state = (WV, Xu, folds) of the window: the checkpoint [rows h,
    h] (_Checkpoint.of), Xu [F, h] and folds [F, 2, h] (None when the group trains no unit in it). Returns the
    ReLU's input hid [C, h] and the logits [C, M]. Where the chunk uses at most PICK_HEADS heads, the second layer
    is applied with each of them and each position's own logits picked: gathering W2 per position moves more
    memory than those products cost; with more heads it is gathered."""
    WV, Xu, folds = state
    lo = int(e[0])
    b1, ln_w, ln_b, W2, b2 = _unpack(heads[lo : int(e[-1]) + 1], plan.h, plan.M)  # [n, h] .., [n, M, h], [n, M]
    j = e - lo  # [C] each position's head among them
    decay = plan.decay_t[i, 0]  # [F + 1, 4] (a, c, b, d) after whole units
    at = decay.index_select(0, m)  # [C, 4]
    xWV = x @ WV.T  # [C, rows h]
    z = torch.addcmul(b1.index_select(0, j), at[:, :1], xWV[:, : plan.h])  # (eq. 14, first term)
    if len(WV) > plan.h:
        z.addcmul_(at[:, 1:2], xWV[:, plan.h :])
    n_folds = int(m.max())  # a chunk's rows share the folds up to its latest one
    if n_folds:
        ages = m[:, None] - 1 - torch.arange(n_folds, device=x.device)  # [C, n_folds] < 0: not folded yet
        w = decay[:, :2].index_select(0, ages.clamp(min=0).flatten()).view(len(m), n_folds, 2)
        w = torch.where(ages[:, :, None] >= 0, w, 0) * (x @ Xu[:n_folds].T)[:, :, None]  # (eq. 7)
        z = z + w.flatten(1) @ folds[:n_folds].flatten(0, 1)  # (eq. 14)
    hid = torch.addcmul(ln_b.index_select(0, j), F.layer_norm(z, (plan.h,), eps=LN_EPS), ln_w.index_select(0, j))
    if len(W2) <= PICK_HEADS:
        every = (torch.relu(hid) @ W2.flatten(0, 1).T).view(len(x), -1, plan.M)  # [C, n, M]
        logits = every.gather(1, j[:, None, None].expand(-1, 1, plan.M))[:, 0]
    else:
        logits = torch.einsum("ch,cmh->cm", torch.relu(hid), W2.index_select(0, j))
    return hid, logits + b2.index_select(0, j)


def _predict_window(plan: _Plan, i: int, u0: int, state, own: torch.Tensor, out: torch.Tensor) -> None:
    """Group i's eval-mode predictions at the stream positions this window's heads own [E, K] serve (units finished
    before them: u0 .. u0 + F - 1, and up to the group's last unit in its last window), written into out [S, M]."""
    g, done, dev = plan.groups[i], plan.done[i], out.device
    last = plan.n_units[i] if u0 // plan.F == plan.last_window[i] else u0 + plan.F - 1
    lo, hi = np.searchsorted(done, u0, "left"), np.searchsorted(done, last, "right")
    if lo == hi:
        return
    per = plan.units_per_exploration
    for start in range(lo, hi, CHUNK):
        at = slice(start, min(start + CHUNK, hi))
        m = torch.as_tensor(done[at] - u0, device=dev)  # [C] units of the window before each position
        x = g.X.index_select(0, torch.as_tensor(g.stream[at], device=dev))
        e = torch.div(m, per, rounding_mode="floor")  # [C] the exploration each position's head ended
        logits = _eval_head(plan, i, x, m, state, own, e)[1]
        if g.prior is not None:
            logits += torch.as_tensor(g.prior[at], dtype=logits.dtype, device=dev)
        out[at] = torch.sigmoid(logits)


def _dead_share(plan: _Plan, i: int, u0: int, state, theta: torch.Tensor) -> float:
    """The share of group i's hidden units that its final head theta [K] never activates on an explored request."""
    g = plan.groups[i]
    rows = g.stream[g.explored]
    if not len(rows):
        return float("nan")
    alive = torch.zeros(plan.h, dtype=torch.bool, device=theta.device)
    for start in range(0, len(rows), CHUNK):
        x = g.X.index_select(0, torch.as_tensor(rows[start : start + CHUNK], device=theta.device))
        m = torch.full((len(x),), int(plan.n_units[i]) - u0, device=theta.device)
        hid, _ = _eval_head(plan, i, x, m, state, theta[None], torch.zeros_like(m))
        alive |= (hid > 0).any(0)
    return float((~alive).double().mean())


def _merge(plan: _Plan, n: int, ck: _Checkpoint, win: _Window, folds: torch.Tensor) -> None:
    """The checkpoint of the next window for the first n groups (all trained the whole window): the current one
    carried over the window's F units by A^(F L), plus every fold carried to the window's end (eq. 15)."""
    R = ck.WV.shape[1]
    decay = plan.decay_t[:n, 0]  # [n, F + 1, 4]
    end = decay[:, plan.F, :, None, None]  # [n, 4, 1, 1] the whole window's (a, c, b, d)
    carry = decay.index_select(1, torch.arange(plan.F - 1, -1, -1, device=folds.device))  # [n, F, 4] by fold's age
    P, Q = folds[:n, :, 0], folds[:n, :, 1]  # [n, F, h] each
    parts = torch.stack([carry[..., 2 * r, None] * P + carry[..., 2 * r + 1, None] * Q for r in range(R)], 1)
    new = ck.spare[:n]  # [n, R, h, h]
    torch.bmm(parts.transpose(2, 3).reshape(n, -1, plan.F), win.Xu[:n], out=new.view(n, -1, plan.h))
    for r in range(R):  # new W += a W + c V, new V += b W + d V
        for row in range(ck.rows):
            new[:, r].addcmul_(end[:, 2 * r + row], ck.WV[:n, row])
    ck.WV, ck.spare, ck.rows = ck.spare, ck.WV, R


def memory_needed(groups: list[Group], dtype: torch.dtype) -> int:
    """Bytes predict_groups holds at its peak, about: per trajectory its explicit W1 and momentum buffer and their
    spare (4 h x h), its predictions and the gate's copies ([S, M] x 3, float64), and one window of units."""
    if not groups:
        return 0
    h, M = groups[0].X.shape[1], groups[0].Y.shape[1]
    item = torch.empty(0, dtype=dtype).element_size()
    per = 4 * h * h * item + 3 * 8 * M * max(len(g.stream) for g in groups) + WINDOW * (3 * h + 2 * M) * item * 4
    return len(groups) * per


@torch.no_grad()
@subnormals_flushed()
def predict_groups(
    groups: list[Group], device: str = "cpu", dtype: torch.dtype = torch.float32, progress=None, window: int = 0
) -> list[Trained]:
    """Train every group's predictor and predict its whole stream; groups with the same steps per unit and per
    exploration train side by side in one batch. progress(label, total) returns an advance(n) callback; window:
    units between checkpoints (0: WINDOW)."""
    batches: dict[tuple[int, int], list[int]] = {}  # (steps per unit, epochs) -> group ids, most units first
    for i in sorted(range(len(groups)), key=lambda i: -len(groups[i].unit_pos)):
        batches.setdefault((groups[i].steps_per_unit, groups[i].cfg.epochs), []).append(i)
    total = sum(len(groups[i].unit_pos) * groups[i].steps_per_unit for ids in batches.values() for i in ids[:1])
    advance = progress("training predictors", total) if progress is not None and total else lambda n: None
    out: dict[int, Trained] = {}
    for key in sorted(batches):
        ids = batches[key]
        plan = _plan([groups[i] for i in ids], torch.device(device), dtype, window or WINDOW)
        out |= dict(zip(ids, _run(plan, advance), strict=True))
    return [out[i] for i in range(len(groups))]
