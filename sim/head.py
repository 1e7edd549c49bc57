"""The MESS+ satisfaction predictor head as a plain torch module, used by the reference simulator."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from messplus.sim.config import PredictorConfig
from messplus.sim.draws import Draws


class Head(nn.Module):
    """Dropout(input) -> Linear(h,h) -> LayerNorm -> ReLU -> Dropout -> Linear(h,M) (+ offset); sigmoid of the logits.

    The residual head passes each model's running base rate in log-odds as `offset` (sim.base_rate) and starts
    its last layer at zero, so it predicts what a counter does until its inputs teach it more; the paper's head
    has no offset.

    Both dropouts take explicit keep-masks so that their randomness comes from the seed's draws, not torch's global
    RNG. `forward` returns logits: training uses BCE on logits, as the reference code does (the same loss as BCE on
    sigmoid outputs, without its vanishing gradient once a sigmoid saturates).
    """

    def __init__(self, h: int, M: int, dropout: float, input_dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(h, h)
        self.norm = nn.LayerNorm(h)
        self.fc2 = nn.Linear(h, M)
        self.dropout, self.input_dropout = dropout, input_dropout

    def forward(self, x: torch.Tensor, keep=None, keep_in=None, offset: torch.Tensor | None = None) -> torch.Tensor:
        if keep_in is not None:
            x = x * keep_in / (1.0 - self.input_dropout)
        r = torch.relu(self.norm(self.fc1(x)))
        if keep is not None:
            r = r * keep / (1.0 - self.dropout)
        logits = self.fc2(r)
        return logits if offset is None else logits + offset

    @classmethod
    def from_draws(cls, d: Draws, dtype: torch.dtype, residual: bool) -> Head:
        M, h = d.W2.shape
        head = cls(h, M, d.dropout, d.input_dropout).to(dtype)
        W2, b2 = d.output_layer(residual)
        with torch.no_grad():
            for p, v in (
                (head.fc1.weight, d.W1),
                (head.fc1.bias, d.b1),
                (head.fc2.weight, W2),
                (head.fc2.bias, b2),
            ):
                p.copy_(torch.tensor(v))
        return head


def optimizer(head: Head, cfg: PredictorConfig) -> torch.optim.SGD:
    return torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@contextmanager
def subnormals_flushed():
    """Subnormal floats read and written as zero (x86's FTZ and DAZ, by torch.set_flush_denormal) while a predictor
    trains: in the spec and in every fast path alike, so both compute the same. Why: a dead hidden unit's LayerNorm
    and output weights get no gradient but weight decay, and with momentum they shrink by a constant factor a step
    (about 0.975 with the paper preset) down to the smallest float32 subnormal, where rounding holds them for good.
    An operation on a subnormal costs about a hundred normal ones, and a long stream's training came to spend nearly
    all its time there (1M requests at c = 1: 24x slower). Flushed, such a weight stops at a tiny normal value or
    at zero: a change below 1e-37 in float32 (never reached in float64) that no prediction or decision can see.
    Where the CPU lacks the flags (torch says so) nothing changes."""
    on = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if on:
            torch.set_flush_denormal(False)
