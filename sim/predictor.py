"""Fast MESS+ predictor: many online training trajectories at once, exactly the reference's mathematics.

Trajectories ("groups": one per bench x seed x c x k) train side by side, one unit at a time, and then each
predicts its whole stream, every position with the head it had then. The closed forms that make this fast are
derived in docs/predictor.md; code lines cite its equations as `# (eq. n)`. In short: torch SGD with momentum and
weight decay is linear in its state (eq. 1-4) and the first layer's gradient is rank one, so W1 is a weighted sum
of outer products delta_j x_j^T (eq. 6) and is never formed: W1 x costs dot products x_j . x (eq. 7). A finished
unit's gradients fold into two vectors (P, Q) (eq. 10-11).

Shapes: G groups in a batch, U units (of the group with most), L SGD steps per unit, h input dim, M models,
S stream positions, K = 3h + M h + M head parameters besides W1; `live` counts the groups still training.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from messplus.sim.config import PredictorConfig

LN_EPS = 1e-5  # nn.LayerNorm's default, as in sim.head
# aten's private LayerNorm backward kernel; None where this torch lacks it (layer_norm_backward stands in)
_ATEN_LN_BACKWARD = getattr(torch.ops.aten, "native_layer_norm_backward", None)


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


@dataclass(frozen=True)
class Trained:
    """What one trajectory predicted: shat [S, M] before each position's own update, and the share of hidden units
    that are dead at the end (never positive on any explored request)."""

    shat: np.ndarray
    dead: float


class SgdCoefficients(NamedTuple):
    """torch SGD's linear dynamics (eq. 3), each [n_max + 1], indexed by steps elapsed."""

    a: np.ndarray  # weight's share of the initial weight
    c: np.ndarray  # weight's share of the initial momentum buffer
    p: np.ndarray  # weight's share of a gradient applied that many steps ago (p[0] = 0: not applied yet)
    q: np.ndarray  # momentum buffer's share of that gradient (q[0] = 0)


def sgd_coefficients(cfg: PredictorConfig, n_max: int) -> SgdCoefficients:
    """(a, c, p, q) for steps 0..n_max: the first row of A^n, and A^(m-1) s for a gradient m steps old (eq. 2-3)."""
    lr, mu, wd = cfg.lr, cfg.momentum, cfg.weight_decay
    A = np.array([[1 - lr * wd, -lr * mu], [wd, mu]])  # (eq. 2)
    a, c, p, q = (np.zeros(n_max + 1) for _ in range(4))
    row, s = np.array([1.0, 0.0]), np.array([-lr, 1.0])  # first row of A^0; A^0 s
    a[0] = 1.0
    for n in range(1, n_max + 1):  # (eq. 3)
        row = row @ A
        a[n], c[n] = row
        p[n], q[n] = s
        s = A @ s
    return SgdCoefficients(a, c, p, q)


def layer_norm_backward(dzh: torch.Tensor, zh: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    """Gradient wrt z of zh = LayerNorm(z) without affine, over the last dim, in public torch ops (eq. 9):
    dzh, zh [..., h], rstd [..., 1] = 1 / sqrt(var(z) + eps). The portable twin of aten's private kernel."""
    return rstd * (dzh - dzh.mean(-1, keepdim=True) - zh * (dzh * zh).mean(-1, keepdim=True))


def _ln_backward(dzh: torch.Tensor, z: torch.Tensor, zh: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor):
    """(eq. 9) by aten's fused kernel where this torch has it (the results the project was validated with), else by
    the public formula."""
    if _ATEN_LN_BACKWARD is None:
        return layer_norm_backward(dzh, zh, rstd)
    return _ATEN_LN_BACKWARD(dzh, z, [z.shape[-1]], mean, rstd, None, None, [True, False, False])[0]


@dataclass(frozen=True)
class _Hyper:
    """Per-group SGD settings, each [G, 1]; clip is inf where clipping is off."""

    lr: torch.Tensor
    momentum: torch.Tensor
    weight_decay: torch.Tensor
    clip: torch.Tensor

    def __getitem__(self, rows: slice) -> _Hyper:
        return _Hyper(self.lr[rows], self.momentum[rows], self.weight_decay[rows], self.clip[rows])


@dataclass(frozen=True)
class _Plan:
    """Everything a batch of groups trains on, fixed before its first step. The groups share L and epochs and come
    sorted by number of units, most first, so the ones still training at any unit are a prefix; rows past a group's
    own units are padding, never read."""

    groups: tuple[Group, ...]
    L: int  # SGD steps per unit
    units_per_exploration: int
    n_units: np.ndarray  # [G]
    X: torch.Tensor  # [sum T, h] the inputs of every bench in the batch, each once
    rows: tuple[np.ndarray, ...]  # per group, [S]: its stream positions' rows in X
    Xu: torch.Tensor  # [G, U, h] unit inputs x_u
    P0u: torch.Tensor  # [G, U, h] W1_0 x_u
    gram: torch.Tensor  # [G, U, U] x_u . x_v (eq. 7)
    Yu: torch.Tensor  # [G, U, M] labels of each unit's request
    keep: torch.Tensor  # [G, U, L, h] hidden keep-masks, scaled by 1 / (1 - dropout)
    decay: torch.Tensor  # [G, L, U + 1, 2] (a, c) at k L + l steps: step l of a unit, k units on (eq. 11)
    fold: torch.Tensor  # [G, 2, L] (p, q) at L - l steps: step l's share in its unit's fold (eq. 10)
    recent: torch.Tensor  # [G, L, L] p at l - l' steps below the diagonal, 0 elsewhere (eq. 12)
    hyper: _Hyper
    theta0: torch.Tensor  # [G, K] initial b1, LayerNorm weight and bias, W2, b2

    @property
    def h(self) -> int:
        return self.Xu.shape[-1]

    @property
    def M(self) -> int:
        return self.Yu.shape[-1]


@dataclass(frozen=True)
class _History:
    """What training leaves for prediction. heads: per number of finished explorations (0, 1, ...), theta [live, K]
    of the groups that had that many; folds: [G, U, 2, h] the (P, Q) of every unit (eq. 10)."""

    heads: list[torch.Tensor]
    folds: torch.Tensor


def _plan(groups: list[Group], device: torch.device, dtype: torch.dtype) -> _Plan:
    """Stacks a batch's groups (sorted by units, most first) into padded tensors and coefficient tables."""
    tensor = partial(torch.as_tensor, dtype=dtype, device=device)
    L, epochs = groups[0].steps_per_unit, groups[0].cfg.epochs
    n_units = np.array([len(g.unit_pos) for g in groups])
    U = max(1, int(n_units.max()))
    X, rows = _stack_inputs(groups)
    settings = {cfg: sgd_coefficients(cfg, (U + 1) * L - 1) for cfg in {g.cfg for g in groups}}  # few distinct
    a, c, p, q = (tensor(np.array([settings[g.cfg][k] for g in groups])) for k in range(4))  # [G, (U + 1) L]
    hyper = _Hyper(
        *(tensor([[getattr(g.cfg, f)] for g in groups]) for f in ("lr", "momentum", "weight_decay")),
        clip=tensor([[g.cfg.clip_norm or np.inf] for g in groups]),
    )
    return _Plan(
        tuple(groups), L, epochs // L, n_units, X, rows,
        *_stack_units(groups, U, dtype, device),
        *_coefficient_tables(a, c, p, q, L), hyper, tensor(_initial_theta(groups)),
    )  # fmt: skip


def _initial_theta(groups: list[Group]) -> np.ndarray:
    """[G, K] b1, LayerNorm weight (ones) and bias (zeros), W2 and b2 of each group's initial head."""
    ones, zeros = np.ones((len(groups), len(groups[0].b1))), np.zeros((len(groups), len(groups[0].b1)))
    parts = [[g.b1 for g in groups], ones, zeros, [g.W2.ravel() for g in groups], [g.b2 for g in groups]]
    return np.concatenate(parts, 1)


def _stack_inputs(groups: list[Group]) -> tuple[torch.Tensor, tuple[np.ndarray, ...]]:
    """Every distinct input tensor once ([sum T, h]), and per group its stream positions' rows there ([S])."""
    first_row: dict[int, int] = {}  # id of a group's X -> its first row in the stack
    stacked = []
    for g in groups:
        if id(g.X) not in first_row:
            first_row[id(g.X)] = sum(len(x) for x in stacked)
            stacked.append(g.X)
    return torch.cat(stacked), tuple(first_row[id(g.X)] + g.stream for g in groups)


def _stack_units(groups: list[Group], U: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Each group's units padded to U: Xu and P0u [G, U, h], gram [G, U, U], Yu [G, U, M], keep [G, U, L, h].
    The padding stays uninitialised: nothing reads it."""
    G, L, h, M = len(groups), groups[0].steps_per_unit, groups[0].X.shape[1], groups[0].Y.shape[1]
    new, tensor = partial(torch.empty, dtype=dtype, device=device), partial(torch.as_tensor, dtype=dtype, device=device)
    Xu, P0u, gram, Yu, keep = new(G, U, h), new(G, U, h), new(G, U, U), new(G, U, M), new(G, U, L, h)
    for i, g in enumerate(groups):
        n = len(g.unit_pos)
        Xu[i, :n], P0u[i, :n] = g.Xu, g.P0u
        gram[i, :n, :n] = g.Xu @ g.Xu.T
        Yu[i, :n] = tensor(g.Y[g.stream[g.unit_pos]])
        keep[i, :n] = tensor(g.keep) / (1.0 - g.cfg.dropout)
    return Xu, P0u, gram, Yu, keep


def _coefficient_tables(a, c, p, q, L: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From the coefficients [G, (U + 1) L] of eq. 3, the tables that index them by unit and step instead of by
    steps elapsed, so that no caller does index arithmetic: decay, fold and recent as documented on _Plan."""
    G, dev = len(a), a.device
    decay = torch.stack([a, c], -1).view(G, -1, L, 2).transpose(1, 2).contiguous()  # [G, L, U + 1, 2]
    age = torch.arange(L, 0, -1, device=dev)  # [L] how old step l's gradient is when its unit ends: L - l
    fold = torch.stack([p[:, age], q[:, age]], 1)  # [G, 2, L]
    lag = torch.arange(L, device=dev)
    lag = (lag[:, None] - lag).clamp(min=0)  # [L, L] steps from step l' to step l
    return decay, fold, torch.tril(p[:, lag], diagonal=-1)


def _unpack(theta: torch.Tensor, h: int, M: int) -> tuple[torch.Tensor, ...]:
    """[..., K] -> b1 [..., h], LayerNorm weight and bias [..., h], W2 [..., M, h], b2 [..., M] (views)."""
    b1, ln_w, ln_b, W2, b2 = theta.split([h, h, h, M * h, M], dim=-1)
    return b1, ln_w, ln_b, W2.unflatten(-1, (M, h)), b2


def _train(plan: _Plan, advance) -> _History:
    """Runs the whole schedule: every unit in order, each for the groups that have it. theta, buf [G, K] are the
    head's parameters besides W1 and their momentum buffer; W1 lives in the folds."""
    G, U, h = len(plan.groups), plan.Xu.shape[1], plan.h
    theta = plan.theta0.clone()
    buf = torch.zeros_like(theta)
    folds = torch.empty(G, U, 2, h, dtype=theta.dtype, device=theta.device)  # [G, U, 2, h] (P, Q) per unit
    heads = [theta.clone()]
    for unit in range(int(plan.n_units.max(initial=0))):
        live = int((plan.n_units > unit).sum())
        deltas = _train_unit(plan, unit, live, theta[:live], buf[:live], folds[:live, :unit])  # [live, L, h]
        folds[:live, unit] = torch.bmm(plan.fold[:live], deltas)  # (eq. 10)
        if (unit + 1) % plan.units_per_exploration == 0:  # an exploration ends: its head serves until the next
            heads.append(theta[:live].clone())
        advance(plan.L)
    return _History(heads, folds)


def _train_unit(plan: _Plan, unit: int, live: int, theta, buf, folds) -> torch.Tensor:
    """Unit `unit`'s L steps for the first `live` groups: updates theta and buf [live, K] in place, reads the
    finished units' folds [live, unit, 2, h]; returns this unit's clipped first-layer gradients [live, L, h]."""
    W1x = _carried_pre_activation(plan, unit, live, folds)  # [live, L, h]
    hyper, keep, y = plan.hyper[:live], plan.keep[:live, unit], plan.Yu[:live, unit]
    xsq = plan.gram[:live, unit, unit, None]  # [live, 1] |x_u|^2
    deltas = torch.empty_like(W1x)
    for step in range(plan.L):
        z = W1x[:, step] + theta[:, : plan.h]  # + b1
        if step > 0:  # this unit's earlier steps, on the same input (eq. 12, last term)
            z += xsq * torch.bmm(plan.recent[:live, step, None, :step], deltas[:, :step]).squeeze(1)
        deltas[:, step] = _sgd_step(z, theta, buf, hyper, keep[:, step], y, xsq)
    return deltas


def _carried_pre_activation(plan: _Plan, unit: int, live: int, folds: torch.Tensor) -> torch.Tensor:
    """[live, L, h] W1 x_u at each step of the unit from all but the unit's own gradients: the decayed initial
    weights and the finished units' folds (eq. 12, first two terms)."""
    decay = plan.decay[:live]  # [live, L, U + 1, 2]
    W1x = decay[:, :, unit, 0, None] * plan.P0u[:live, unit, None]  # a at u L + l steps, times W1_0 x_u
    if unit == 0:
        return W1x
    ages = torch.arange(unit - 1, -1, -1, device=W1x.device)  # [unit] whole units between fold j and this unit
    w = decay.index_select(2, ages) * plan.gram[:live, unit, None, :unit, None]  # [live, L, unit, 2]
    return W1x + torch.bmm(w.flatten(2), folds.flatten(1, 2))  # (eq. 11) over [live, 2 unit, h]


def _sgd_step(z, theta, buf, hyper: _Hyper, keep, y, xsq) -> torch.Tensor:
    """One training step of the head on its pre-activations z = W1 x + b1 [live, h]: forward, backward by hand,
    clipping and torch's SGD update of theta and buf [live, K] in place. keep [live, h] hidden keep-mask, y [live, M]
    labels, xsq [live, 1] |x|^2. Returns the clipped gradient wrt z, delta [live, h] (W1's is delta x^T, eq. 5)."""
    h, M = z.shape[1], y.shape[1]
    _, ln_w, ln_b, W2, b2 = _unpack(theta, h, M)
    # forward: LayerNorm -> affine -> ReLU -> dropout -> Linear -> sigmoid; BCE on logits, mean over M
    zh, mean, rstd = torch.native_layer_norm(z, [h], None, None, LN_EPS)
    hid = torch.addcmul(ln_b, zh, ln_w)
    keep = keep * (hid > 0)  # ReLU and dropout as one mask
    r = hid * keep
    prob = torch.sigmoid(torch.einsum("nh,nmh->nm", r, W2) + b2)
    dlogit = (prob - y) / M  # [live, M]
    dhid = torch.bmm(dlogit[:, None, :], W2).squeeze(1) * keep  # [live, h]
    delta = _ln_backward(dhid * ln_w, z, zh, mean, rstd)  # (eq. 9)
    grad = torch.cat([delta, dhid * zh, dhid, (dlogit[:, :, None] * r[:, None, :]).flatten(1), dlogit], 1)  # [live, K]
    norm = torch.sqrt((delta * delta).sum(1, keepdim=True) * xsq + (grad * grad).sum(1, keepdim=True))  # (eq. 8)
    coef = torch.clamp(hyper.clip / (norm + 1e-6), max=1.0)
    delta, grad = delta * coef, grad * coef
    buf.mul_(hyper.momentum).add_(torch.addcmul(grad, hyper.weight_decay, theta))  # (eq. 1)
    theta.addcmul_(hyper.lr, buf, value=-1)
    return delta


def _eval_head(plan: _Plan, history: _History, i: int, X, P0, done, theta) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode head of group i, per row, after `done` [C] units with parameters theta [C, K]; X, P0 [C, h] the
    inputs and W1_0 times them. Returns the ReLU's input hid [C, h] and the logits [C, M]."""
    b1, ln_w, ln_b, W2, b2 = _unpack(theta, plan.h, plan.M)
    decay = plan.decay[i, 0]  # [U + 1, 2] (a, c) after whole units
    z = decay[:, 0].index_select(0, done)[:, None] * P0 + b1  # (eq. 13, first term)
    n_folds = int(done.max())  # a chunk's rows share the folds up to its latest one
    if n_folds:
        ages = done[:, None] - 1 - torch.arange(n_folds, device=X.device)  # [C, n_folds] < 0: not folded yet
        w = decay.index_select(0, ages.clamp(min=0).flatten()).view(len(done), n_folds, 2)
        w = torch.where(ages[:, :, None] >= 0, w, 0) * (X @ plan.Xu[i, :n_folds].T)[:, :, None]  # (eq. 7)
        z = z + w.flatten(1) @ history.folds[i, :n_folds].flatten(0, 1)  # (eq. 13)
    hid = torch.addcmul(ln_b, F.layer_norm(z, (plan.h,), eps=LN_EPS), ln_w)
    return hid, torch.einsum("ch,cmh->cm", torch.relu(hid), W2) + b2


def _predict(plan: _Plan, history: _History, i: int, chunk: int = 256) -> Trained:
    """Group i's eval-mode predictions at every stream position, each with the head it had then, and its dead share.

    Positions are in time order, so a chunk needs only the first units' folds, and its per-position parameters
    (gathered from the heads after each of its D explorations) stay in cache."""
    g, dev = plan.groups[i], plan.X.device
    S, n_units = len(g.stream), len(g.unit_pos)
    done = torch.as_tensor(np.searchsorted(g.unit_pos, np.arange(S)), device=dev)  # [S] units before each position
    heads = torch.stack([history.heads[d][i] for d in range(n_units // plan.units_per_exploration + 1)])  # [D + 1, K]
    X = plan.X.index_select(0, torch.as_tensor(plan.rows[i], device=dev))  # [S, h]
    shat = torch.empty(S, plan.M, dtype=X.dtype, device=dev)
    for lo in range(0, S, chunk):
        at = slice(lo, lo + chunk)
        theta = heads.index_select(0, torch.div(done[at], plan.units_per_exploration, rounding_mode="floor"))
        shat[at] = torch.sigmoid(_eval_head(plan, history, i, X[at], g.P0[at], done[at], theta)[1])
    explored = torch.as_tensor(np.flatnonzero(g.explored), device=dev)
    if not len(explored):
        return Trained(shat.double().cpu().numpy(), float("nan"))
    final = torch.full((len(explored),), n_units, device=dev)
    hid, _ = _eval_head(plan, history, i, X[explored], g.P0[explored], final, heads[-1].expand(len(explored), -1))
    return Trained(shat.double().cpu().numpy(), float((hid <= 0).all(0).double().mean()))


@torch.no_grad()
def predict_groups(
    groups: list[Group], device: str = "cpu", dtype: torch.dtype = torch.float32, progress=None
) -> list[Trained]:
    """Train every group's predictor and predict its whole stream; groups with the same steps per unit and per
    exploration train side by side in one batch. progress(label, total) returns an advance(n) callback."""
    batches: dict[tuple[int, int], list[int]] = {}  # (steps per unit, epochs) -> group ids, most units first
    for i in sorted(range(len(groups)), key=lambda i: -len(groups[i].unit_pos)):
        batches.setdefault((groups[i].steps_per_unit, groups[i].cfg.epochs), []).append(i)
    total = sum(len(groups[ids[0]].unit_pos) * groups[ids[0]].steps_per_unit for ids in batches.values())
    advance = progress("training predictors", total) if progress is not None and total else lambda n: None
    out: dict[int, Trained] = {}
    for key in sorted(batches):
        ids = batches[key]
        plan = _plan([groups[i] for i in ids], torch.device(device), dtype)
        history = _train(plan, advance)
        out |= {i: _predict(plan, history, j) for j, i in enumerate(ids)}
    return [out[i] for i in range(len(groups))]
