"""The fast predictor's pieces (sim.predictor), each against the plain torch it stands for (docs/predictor.md)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numba import njit

from messplus.sim import mess, predictor
from messplus.sim.base_rate import log_odds
from messplus.sim.config import PredictorConfig
from messplus.sim.draws import Draws, draw
from messplus.sim.head import Head, optimizer, subnormals_flushed
from messplus.sim.predictor import Group, predict_groups, sgd_coefficients
from messplus.sim.reference import train_on
from messplus.sim.training import LN_EPS, _sgd, layer_norm_backward

F64 = torch.float64


def config(**overrides) -> PredictorConfig:
    base = dict(
        lr=0.3, momentum=0.8, epochs=3, weight_decay=0.05, dropout=0.2, input_dropout=0.0, clip_norm=0.0, head="paper"
    )
    return PredictorConfig(**{**base, **overrides})


def torch_sgd(cfg: PredictorConfig, w0: np.ndarray, grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torch.optim.SGD from w0 fed the given gradients [n, d]: its weight and momentum buffer after each step."""
    w = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.SGD([w], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    weights, buffers = [], []
    for g in grads:
        w.grad = torch.tensor(g)
        opt.step()
        weights.append(w.detach().numpy().copy())
        buffers.append(opt.state[w]["momentum_buffer"].numpy().copy())
    return np.array(weights), np.array(buffers)


@njit
def _idle_steps(theta, buf, n, lr, momentum, weight_decay):
    """n compiled SGD steps of a weight that gets no gradient (a dead unit's)."""
    for _ in range(n):
        _sgd(theta, buf, 0, 0.0, lr, momentum, weight_decay)


def test_a_dead_units_weight_never_sits_on_a_subnormal_in_either_path():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero flags for torch to set (not x86 with SSE3)")
    paper = dict(lr=0.0767, momentum=0.95, weight_decay=0.01)  # a weight shrinks by about 0.975 a step
    tiny = np.finfo(np.float32).smallest_normal
    subnormal = lambda w: 0 < abs(w) < tiny  # noqa: E731
    n = 6000  # 0.975^6000 is far below the smallest float32 subnormal: only rounding keeps the weight alive

    def both() -> tuple[np.ndarray, float]:
        """torch's weights after each idle step (the spec's optimizer), and the compiled step's last weight."""
        weights, _ = torch_sgd(config(**paper), np.ones(1, dtype=np.float32), np.zeros((n, 1), dtype=np.float32))
        theta, buf = np.ones(1, dtype=np.float32), np.zeros(1, dtype=np.float32)
        _idle_steps(theta, buf, n, *(np.float32(v) for v in paper.values()))
        return weights[:, 0], float(theta[0])

    stuck, compiled = both()
    assert subnormal(stuck[-1]) and subnormal(compiled)  # unflushed, both sit on a subnormal for good
    with subnormals_flushed():
        flushed, compiled = both()
    assert not any(subnormal(w) for w in (*flushed, compiled))  # every step's operands normal (or zero)
    normal = np.abs(stuck) >= tiny
    np.testing.assert_array_equal(flushed[normal][:100], stuck[normal][:100])  # nothing else changes
    assert subnormal(both()[1])  # the flags are off again after the block


def test_sgd_coefficients_give_torch_sgd_weights_after_every_step():
    cfg = config()
    rng = np.random.default_rng(0)
    w0, grads = rng.standard_normal(4), rng.standard_normal((7, 4))
    a, _, _, _, p, _ = sgd_coefficients(cfg, len(grads))
    weights, _ = torch_sgd(cfg, w0, grads)
    for n, w in enumerate(weights, 1):  # eq. 4
        np.testing.assert_allclose(w, a[n] * w0 + sum(p[n - j] * grads[j] for j in range(n)), rtol=1e-12, atol=1e-12)


def test_a_folded_unit_carries_on_as_torch_sgd_does():
    cfg, L, m = config(), 3, 4
    rng = np.random.default_rng(1)
    grads = np.concatenate([rng.standard_normal((L, 5)), np.zeros((m, 5))])  # a unit's gradients, then m quiet steps
    a, c, b, d, p, q = sgd_coefficients(cfg, L + m)
    P, Q = (sum(coef[L - step] * grads[step] for step in range(L)) for coef in (p, q))  # eq. 10
    weights, buffers = torch_sgd(cfg, np.zeros(5), grads)
    np.testing.assert_allclose(weights[L - 1], P, rtol=1e-12, atol=1e-12)  # the fold is the state when the unit ends
    np.testing.assert_allclose(buffers[L - 1], Q, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weights[-1], a[m] * P + c[m] * Q, rtol=1e-12, atol=1e-12)  # eq. 11
    np.testing.assert_allclose(buffers[-1], b[m] * P + d[m] * Q, rtol=1e-12, atol=1e-12)  # eq. 15's buffer row
    assert not np.allclose(weights[-1], P, rtol=0.1)  # the quiet steps did move it: momentum and decay count


def test_layer_norm_backward_matches_autograd():
    torch.manual_seed(0)
    z = (3 * torch.randn(6, 16, dtype=F64) + 1).requires_grad_()
    dzh = torch.randn(6, 16, dtype=F64)
    F.layer_norm(z, (16,), eps=LN_EPS).backward(dzh)
    zh, _, rstd = torch.native_layer_norm(z.detach(), [16], None, None, LN_EPS)
    for row in range(6):
        mine = layer_norm_backward(dzh[row].numpy(), zh[row].numpy(), rstd[row].item())
        np.testing.assert_allclose(mine, z.grad[row].numpy(), rtol=1e-12, atol=1e-12)


def test_keep_masks_are_a_pure_function_of_seed_and_position():
    """Each position's masks are the first draws of its own Philox block, whichever positions are drawn with it."""
    positions = [5, 2, 31, 5]  # unsorted, repeated; 3 x 5 draws leave half a 64-bit word between the two masks
    d = draw(7, T=40, n_calib=0, h=5, M=2, epochs=3, dropout=0.3, input_dropout=0.2)
    hidden, inputs = d.keep_masks(np.array(positions))
    for k, i in enumerate(positions):
        u = np.random.Generator(np.random.Philox(key=d.mask_key, counter=[0, 0, 0, i]))
        np.testing.assert_array_equal(hidden[k], u.random((3, 5), dtype=np.float32) >= 0.3)
        np.testing.assert_array_equal(inputs[k], u.random((3, 5), dtype=np.float32) >= 0.2)
    alone = d.keep_masks(np.array([31]))
    np.testing.assert_array_equal(alone[0][0], hidden[2])
    assert not np.array_equal(hidden[0], hidden[1]) and 0.5 < hidden.mean() < 0.9  # fresh draws, about 70% kept


def group_for(d: Draws, X: np.ndarray, Y: np.ndarray, explored: np.ndarray, cfg: PredictorConfig) -> Group:
    """A trajectory exploring at the given stream positions, its units built as the sweep builds them."""
    h, pos = X.shape[1], np.flatnonzero(explored)
    Xt, W1 = torch.tensor(X), torch.tensor(d.W1, dtype=F64)
    hidden, inputs = d.keep_masks(pos)  # [n, epochs, h] each
    x = Xt[d.stream[pos]][:, None]  # [n, 1, h]
    if cfg.input_dropout > 0:  # a unit per step: [n * epochs, 1, h] keep-masks
        Xu, keep = (x * torch.tensor(inputs) / (1.0 - cfg.input_dropout)).reshape(-1, h), hidden.reshape(-1, 1, h)
    else:  # a unit per explored request
        Xu, keep = x.reshape(-1, h), hidden
    unit_pos = np.repeat(pos, cfg.epochs if cfg.input_dropout > 0 else 1)
    W2, b2 = d.output_layer(cfg.residual)
    prior = mess.prior(Y[d.stream], explored) if cfg.residual else None
    return Group(Xt, W1, Y, d.stream, explored, unit_pos, Xu, keep, d.b1, W2, b2, cfg, prior)


def reference(d: Draws, X: np.ndarray, Y: np.ndarray, explored: np.ndarray, cfg: PredictorConfig):
    """sim.reference's predictor alone (the head's own predictions, never the counter's): the plain head predicts
    each position, then trains there if it explores. Returns the predictions [S, M] and the final head's ReLU inputs
    on the explored requests [n, h]."""
    head, shat = Head.from_draws(d, F64, cfg.residual), []
    opt = optimizer(head, cfg)
    ones, seen = np.zeros(Y.shape[1]), np.zeros(Y.shape[1])
    for i, r in enumerate(d.stream):
        x, y = torch.tensor(X[r]), torch.tensor(Y[r])
        offset = torch.tensor(log_odds(ones, seen)) if cfg.residual else None
        head.eval()
        with torch.no_grad():
            shat.append(torch.sigmoid(head(x, offset=offset)).numpy())
        if explored[i]:
            train_on(head, opt, x, y, d.keep_masks([i]), cfg, offset=offset)
            ones, seen = ones + Y[r], seen + 1
    with torch.no_grad():
        hid = head.norm(head.fc1(torch.tensor(X[d.stream[explored]])))
    return np.array(shat), hid


TRAINING = {
    # L = 3 steps on one input: the unit's own earlier steps enter each pre-activation (eq. 12, last term)
    "one unit of 3 steps": config(),
    # input dropout: 3 units of one step, so folds carry between them (eq. 11); clipping at 0.05 binds
    "3 units of 1 step, clipped": config(input_dropout=0.3, clip_norm=0.05),
    # the residual head: its output layer starts at zero and its logits add the base rate's log-odds
    "residual head": config(input_dropout=0.3, head="residual"),
}


def problem(cfg: PredictorConfig, seed: int = 5, T: int = 12, h: int = 16, M: int = 3):
    """Draws, inputs [T, h] and labels [T, M] of a small random bench."""
    d = draw(seed, T, 2, h, M, cfg.epochs, cfg.dropout, cfg.input_dropout)
    rng = np.random.default_rng(seed)
    return d, rng.standard_normal((T, h)), (rng.random((T, M)) < 0.5).astype(np.float64)


# units between checkpoints: 1 and 2 merge the folds into the explicit W1 and buffer (eq. 15) after every unit or
# two (rounded up to whole explorations); 64 keeps every fold of these short streams
WINDOWS = pytest.mark.parametrize("window", [1, 2, 64], ids=["merge every unit", "merge every 2", "no merge"])


@WINDOWS
@pytest.mark.parametrize("cfg", TRAINING.values(), ids=TRAINING.keys())
@pytest.mark.parametrize("at", [[4], [1, 3, 6]], ids=["one exploration", "three explorations"])
@pytest.mark.parametrize("pick", [8, 0], ids=["second layer picked", "second layer gathered"])
def test_predictions_match_the_plain_head_trained_as_the_reference_does(cfg, at, window, pick, monkeypatch):
    monkeypatch.setattr(predictor, "PICK_HEADS", pick)  # both ways of applying each position's own second layer
    d, X, Y = problem(cfg)
    explored = np.isin(np.arange(len(d.stream)), at)
    (fast,) = predict_groups([group_for(d, X, Y, explored, cfg)], dtype=F64, window=window)
    shat, hid = reference(d, X, Y, explored, cfg)
    np.testing.assert_allclose(fast.shat, shat, rtol=1e-10, atol=1e-12)
    assert fast.dead == (hid <= 0).all(0).double().mean().item()
    untrained, _ = reference(d, X, Y, np.zeros_like(explored), cfg)
    assert not np.allclose(shat[at[0] + 1 :], untrained[at[0] + 1 :], rtol=1e-3)  # training did change the head


@WINDOWS
def test_a_batch_gives_each_group_what_it_gives_alone(window):
    """Groups of different lengths train side by side (the shorter stop early, some at a window's end, some inside
    one); padding must never leak."""
    cfg = TRAINING["3 units of 1 step, clipped"]
    d, X, Y = problem(cfg, T=20)
    S = len(d.stream)
    groups = [group_for(d, X, Y, np.isin(np.arange(S), pos), cfg) for pos in ([2], [], [1, 6, 7, 12], [3, 5])]
    together = predict_groups(groups, dtype=F64, window=window)
    for g, batched in zip(groups, together, strict=True):
        (alone,) = predict_groups([g], dtype=F64, window=window)
        np.testing.assert_allclose(batched.shat, alone.shat, rtol=1e-12, atol=1e-14)
        assert batched.dead == alone.dead or (np.isnan(batched.dead) and np.isnan(alone.dead))
    assert not np.allclose(together[0].shat, together[2].shat)  # they did train differently
