"""The executable spec: MESS+ one request at a time, in plain Python and torch. Slow on purpose; every fast path
must reproduce it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from messplus.sim.base_rate import evidence, log_odds, probability, threshold
from messplus.sim.config import PredictorConfig, RunConfig
from messplus.sim.draws import Draws, explore_prob
from messplus.sim.head import Head, optimizer, subnormals_flushed


@dataclass(frozen=True)
class Steps:
    """Per-step record of one run over the S stream positions (all arrays [S], or [S, M] for shat).

    q is the decision queue after the step's update, q_full the full-information queue.
    loss is the BCE of the pre-update prediction against the request's full label vector.
    """

    chosen: np.ndarray
    explored: np.ndarray
    satisfied: np.ndarray
    cost: np.ndarray
    q: np.ndarray
    q_full: np.ndarray
    shat: np.ndarray
    loss: np.ndarray


def cost_estimate(mode: str, e: np.ndarray, seen_sum: np.ndarray, n_seen: int, last: np.ndarray | None) -> np.ndarray:
    """The cost vector the router believes at decision time."""
    if mode == "oracle":
        return e
    if n_seen == 0:
        return np.ones_like(e)  # the reference code's value before the first exploration
    return seen_sum / n_seen if mode == "mean" else last


def train_on(head: Head, opt, x, y, masks, pred: PredictorConfig, seen: int = -1, offset: torch.Tensor | None = None):
    """The SGD steps on one request: `epochs` steps on BCE (on the logits) against its full label vector (an
    explored request), or against the label of model `seen` alone (an exploited one: the masked BCE), each with its
    own hidden (and input) dropout masks (masks: sim.draws.Draws.keep_masks of that position), gradient norms
    clipped first. offset [M]: the residual head's base rate in log-odds, as the request was predicted with."""
    head.train()
    hidden, inputs = (torch.tensor(m[0], dtype=x.dtype) for m in masks)
    for epoch in range(pred.epochs):
        opt.zero_grad()
        keep_in = inputs[epoch] if pred.input_dropout > 0 else None
        logits, target = head(x, hidden[epoch], keep_in, offset), y
        if seen >= 0:
            logits, target = logits[seen], y[seen]
        F.binary_cross_entropy_with_logits(logits, target).backward()
        if pred.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(head.parameters(), pred.clip_norm)
        opt.step()


@subnormals_flushed()
def simulate_reference(
    X: np.ndarray, S: np.ndarray, E: np.ndarray, d: Draws, run: RunConfig, pred: PredictorConfig, dtype=torch.float64,
    L: np.ndarray | None = None,
) -> Steps:  # fmt: skip
    """X [T, h] request inputs, S [T, M] satisfaction, E [T, M] cost; requests arrive in the order `d.stream`.

    The residual head's offset is the counter's belief before the request, the base rate of the labels learned from
    (every label of an explored request, the chosen model's of an exploited one it learns from); its predictions
    are used while their lead over the counter's on those labels exceeds the threshold, else the counter's
    (sim.base_rate). With run.latency_sla, L [T, M] are the latencies: a second queue Z <- max(0, Z + latency of
    the answer - sla) adds Z * (believed latency - sla) to each model's score, the latencies believed as the costs
    are (run.cost_estimate over the explorations)."""
    if d.seed != run.seed:
        raise ValueError(f"draws of seed {d.seed} given for a run of seed {run.seed}")
    stream = d.stream
    n, M = len(stream), S.shape[1]
    head = Head.from_draws(d, dtype, pred.residual)
    opt = optimizer(head, pred)
    p_explore = explore_prob(n, run.c, run.k)
    out = {k: np.zeros(n) for k in ("chosen", "explored", "satisfied", "cost", "q", "q_full", "loss")}
    shats = np.zeros((n, M))
    q = q_full = 0.0
    seen_sum, n_seen, last, seen_ok = np.zeros(M), 0, None, np.zeros(M)
    waited, waited_last, z = np.zeros(M), None, 0.0  # latencies seen on explorations; the latency queue
    ones, learned = np.zeros(M), np.zeros(M)  # per model: labels learned from that were 1, and all of them
    lead = 0.0  # nats by which the head has out-predicted the counter on those labels
    for i, r in enumerate(stream):
        x = torch.tensor(X[r], dtype=dtype)
        y = torch.tensor(S[r], dtype=dtype)
        offset = torch.tensor(log_odds(ones, learned), dtype=dtype) if pred.residual else None
        head.eval()
        with torch.no_grad():
            raw = torch.sigmoid(head(x, offset=offset)).double().numpy()
        counter = probability(ones, learned)
        shat = counter if pred.residual and not lead > threshold(learned) else raw
        explored = d.explore_u[i] < p_explore[i]
        if explored:
            train_on(head, opt, x, y, d.keep_masks([i]), pred, offset=offset)
            lead += evidence(raw, counter, S[r], np.ones(M, dtype=bool))
            ones, learned = ones + S[r], learned + 1
            best = M - 1 - int(np.argmax(seen_ok[::-1]))  # most accurate so far; ties to the larger model
            chosen, cost = (best if run.explore_serve == "best" else M - 1), E[r].sum()
            seen_sum, n_seen, last, seen_ok = seen_sum + E[r], n_seen + 1, E[r], seen_ok + S[r]
            if L is not None:
                waited, waited_last = waited + L[r], L[r]
        else:
            ehat = cost_estimate(run.cost_estimate, E[r], seen_sum, n_seen, last)
            score = run.V * ehat + q * (run.alpha - shat)
            if run.latency_sla is not None:
                lhat = cost_estimate(run.cost_estimate, L[r], waited, n_seen, waited_last)
                score = score + z * (lhat - run.latency_sla)
            chosen = int(np.argmin(score))  # first minimum: the cheaper model
            cost = E[r, chosen]
            if run.learn == "feedback" and d.feedback_u[i] < run.feedback:  # the user's verdict on the answer
                train_on(head, opt, x, y, d.keep_masks([i]), pred, seen=chosen, offset=offset)
                lead += evidence(raw, counter, S[r], np.arange(M) == chosen)
                ones[chosen], learned[chosen] = ones[chosen] + S[r, chosen], learned[chosen] + 1
        sat = S[r, chosen]
        if run.latency_sla is not None:
            z = max(0.0, z + (L[r, chosen] - run.latency_sla))
        q_full = max(0.0, q_full + run.alpha - sat)
        if d.feedback_u[i] < run.feedback:
            q = max(0.0, q + run.alpha - sat)
        out["chosen"][i], out["explored"][i], out["satisfied"][i], out["cost"][i] = chosen, explored, sat, cost
        out["q"][i], out["q_full"][i] = q, q_full
        out["loss"][i] = F.binary_cross_entropy(torch.from_numpy(shat), y.double()).item()
        shats[i] = shat
    return Steps(
        chosen=out["chosen"].astype(np.int64),
        explored=out["explored"].astype(bool),
        satisfied=out["satisfied"],
        cost=out["cost"],
        q=out["q"],
        q_full=out["q_full"],
        shat=shats,
        loss=out["loss"],
    )
