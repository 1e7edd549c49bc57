"""What a counter knows: each model's running base rate, the Laplace-smoothed mean of the labels seen so far.

It is the yardstick a learned predictor must never fall behind (its BCE and calibration are recorded beside every
MESS+ run's), and the residual head's starting point and fallback (sim.head, docs/predictor.md):
- the head adds its MLP's output to the base rate's log-odds, its last layer starting at zero, so before it has
  learned anything it predicts exactly what the counter does;
- its predictions are used only while they have out-predicted the counter's on the labels learned so far, each
  scored before it was learned from (a prequential likelihood ratio), by more than `threshold` nats; else the
  counter's are. Where the inputs tell requests apart the head's predictions take over after a few dozen
  explorations; where they do not (the AUCs of MiniLM on the Qwen2 traces are at chance), the MLP only fits noise
  and the predictor stays the counter, instead of routing on that noise.
"""

from __future__ import annotations

import numpy as np

from messplus.sim.metrics import log_loss

# The evidence the head must show before it is trusted, in nats. Two parts:
# - ln 20 (a Bayes factor of 20, "strong"): were the labels independent of the inputs and the counter's belief the
#   truth, the prequential likelihood ratio of the head's predictions to the counter's would be a martingale, which
#   by Ville's inequality ever reaches 20 with probability at most 1/20;
# - half a nat per model and e-fold of labels (`threshold`): the Laplace counter's own regret to the best constant
#   chosen in hindsight, which a head can win on its intercept alone without telling requests apart (then, its
#   steps never shrinking, it falls behind again as the counter converges).
EVIDENCE = float(np.log(20.0))


def log_odds(ones: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """logit((ones + 1) / (seen + 2)), elementwise: the counter's belief in log-odds (0 before any label)."""
    return np.log1p(ones) - np.log1p(seen - ones)


def probability(ones: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(ones + 1) / (seen + 2), elementwise: Laplace's rule of succession."""
    return (ones + 1.0) / (seen + 2.0)


def before(labels: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts before each position: labels [S, M] (0/1), seen [S, M] bool (whether position t's label of model m
    was learned from) -> (ones, seen) [S, M] float64, each over the positions before t only."""
    taken = seen.astype(np.float64)
    ones = np.cumsum(labels * taken, axis=0) - labels * taken
    return ones, np.cumsum(taken, axis=0) - taken


def evidence(head: np.ndarray, counter: np.ndarray, y: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """[..., M] -> [...]: by how many nats the head's predictions beat the counter's on the labels learned from
    (seen), each summed over the last axis."""
    return np.where(seen, log_loss(counter, y) - log_loss(head, y), 0.0).sum(-1)


def threshold(learned: np.ndarray) -> np.ndarray:
    """[..., M] labels learned per model -> [...] the lead the head needs: EVIDENCE + sum over models of
    log(1 + learned) / 2."""
    return EVIDENCE + 0.5 * np.log1p(learned).sum(-1)


def gate(head: np.ndarray, y: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """[S, M] what the residual predictor answers at each position: its head's predictions head [S, M] (each made
    before that position's update) where their lead over the counter's on the labels learned before (labels y,
    seen: as in `before`) exceeds the threshold, else the counter's."""
    ones, learned = before(y, seen)
    counter = probability(ones, learned)
    gain = evidence(head, counter, y, seen)  # [S]
    lead = np.concatenate([[0.0], np.cumsum(gain)[:-1]])  # before each position, summed in stream order
    return np.where((lead > threshold(learned))[:, None], head, counter)
