"""All randomness of one seed, drawn up front so that no run depends on which runs came before it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from messplus.sim.streams import drift_order


@dataclass(frozen=True)
class Draws:
    """Shapes: T requests in the trace, S = T - n_calib scored (stream) requests, h input dim, M models.

    seed:            the seed everything here derives from
    order:      [T]  permutation of the trace; order[:n_calib] is the calibration split, the rest the stream
    explore_u:  [S]  uniforms; position i explores iff explore_u[i] < p_{i+1}
    feedback_u: [S]  uniforms; position i has feedback iff feedback_u[i] < f
    keep_masks(positions) -> two [n, epochs, h]: hidden and input dropout keep-masks for training there
    W1 [h, h], b1 [h], W2 [M, h], b2 [M]: head initialisation (torch's default Linear init)
    choice_u:   [S]  uniforms for randomised baselines (educated guessing)
    noise:   [S, M]  standard normals for online policies that sample (Thompson sampling)
    """

    seed: int
    order: np.ndarray
    n_calib: int
    explore_u: np.ndarray
    feedback_u: np.ndarray
    mask_key: np.ndarray  # Philox key: a position's masks come from its own counter block
    epochs: int
    dropout: float
    input_dropout: float
    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    choice_u: np.ndarray
    noise: np.ndarray

    def output_layer(self, residual: bool) -> tuple[np.ndarray, np.ndarray]:
        """The head's initial W2 [M, h] and b2 [M]: zero for the residual head, whose output then starts as the
        base rate alone (sim.base_rate); the drawn torch init for the paper's."""
        return (np.zeros_like(self.W2), np.zeros_like(self.b2)) if residual else (self.W2, self.b2)

    @property
    def stream(self) -> np.ndarray:
        """[S] trace rows in the order they arrive."""
        return self.order[self.n_calib :]

    @property
    def calib(self) -> np.ndarray:
        return self.order[: self.n_calib]

    def keep_masks(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hidden and input keep-masks, each [n, epochs, h] bool. A pure function of (seed, position): position i's
        masks are the first draws of Philox(mask_key) with its counter at [0, 0, 0, i], so only trained positions
        are ever drawn. One generator is rewound to each position (building one per position cost 3x as much)."""
        h = self.W1.shape[0]
        hidden = np.empty((len(positions), self.epochs, h), dtype=bool)
        inputs = np.empty_like(hidden)
        bits = np.random.Philox(key=self.mask_key)
        gen, state = np.random.Generator(bits), bits.state
        u = np.empty((2, self.epochs, h), dtype=np.float32)  # the hidden masks' uniforms, then the inputs'
        for k, i in enumerate(positions):
            state["state"]["counter"] = np.array([0, 0, 0, i], dtype=np.uint64)
            state["buffer_pos"], state["has_uint32"] = len(state["buffer"]), 0  # nothing buffered from before
            bits.state = state
            gen.random(dtype=np.float32, out=u)
            hidden[k], inputs[k] = u[0] >= self.dropout, u[1] >= self.input_dropout
        return hidden, inputs


def draw(
    seed: int,
    T: int,
    n_calib: int,
    h: int,
    M: int,
    epochs: int,
    dropout: float,
    input_dropout: float,
    blocks: np.ndarray | None = None,
) -> Draws:
    """Everything random in a run, from the seed. blocks [T] (a drift stream's part per request): serve the parts
    in order, each shuffled, instead of one random order."""
    seqs = np.random.SeedSequence(seed).spawn(7)  # children by index: one added never changes the others
    rs = [np.random.default_rng(s) for s in seqs]
    S = T - n_calib
    bound = np.float32(1.0 / np.sqrt(h))  # nn.Linear's weight and bias init are both U(-1/sqrt(fan_in), ..)

    def init(*shape: int) -> np.ndarray:  # float32, like torch's own init
        return (2 * rs[4].random(shape, dtype=np.float32) - 1) * bound

    return Draws(
        seed=seed,
        order=rs[0].permutation(T) if blocks is None else drift_order(rs[0], blocks),
        n_calib=n_calib,
        explore_u=rs[1].random(S),
        feedback_u=rs[2].random(S),
        mask_key=seqs[3].generate_state(2, np.uint64),
        epochs=epochs,
        dropout=dropout,
        input_dropout=input_dropout,
        W1=init(h, h),
        b1=init(h),
        W2=init(M, h),
        b2=init(M),
        choice_u=rs[5].random(S),
        noise=rs[6].standard_normal((S, M)),
    )


def explore_prob(S: int, c: float, k: float) -> np.ndarray:
    """[S] p_t = min(1, c / t**k) for t = 1..S."""
    return np.minimum(1.0, c / np.arange(1, S + 1, dtype=np.float64) ** k)
