"""The compiled queue replay (sim.engine.replay_queues) equals MESS+ written one request at a time in plain Python."""

import numpy as np
import pytest

from messplus.sim.engine import replay_queues


def replay_per_request(shat, ehat, sat, served, has_feedback, alpha, V):
    """The spec, in Python floats: per run and request, the first cheapest score wins unless the request explores
    (then the served model answers); the decision queue moves only on feedback, the full-information one always."""
    R, S, M = sat.shape
    chosen, q_hist, q_full_hist = np.zeros((R, S), np.int64), np.zeros((R, S)), np.zeros((R, S))
    for r in range(R):
        a, v, q, q_full = float(alpha[r]), float(V[r]), 0.0, 0.0
        for t in range(S):
            scores = [v * float(ehat[r, t, m]) + q * (a - float(shat[r, t, m])) for m in range(M)]
            ch = (
                served[r, t] if served[r, t] >= 0 else min(range(M), key=scores.__getitem__)
            )  # min keeps the first minimum
            slack = a - float(sat[r, t, ch])
            q_full = max(0.0, q_full + slack)
            if has_feedback[r, t]:
                q = max(0.0, q + slack)
            chosen[r, t], q_hist[r, t], q_full_hist[r, t] = ch, q, q_full
    return chosen, q_hist, q_full_hist


def random_case(rng, R: int, S: int, M: int, dyadic: bool):
    """Inputs [R, S, M] and [R, S] with alpha and V varying per run. dyadic: values on a coarse grid of halves and
    quarters, so scores tie exactly and every sum is exact (then even the closed-form q_full equals the recursion
    bit for bit)."""
    if dyadic:
        shat = rng.choice([0.25, 0.5, 0.75], (R, S, M))
        ehat = rng.choice([0.5, 1.0], (R, S, M))
        alpha, V = rng.choice([0.5, 0.75], R), rng.choice([0.0, 0.25, 1.0], R)
    else:
        shat, ehat = rng.random((R, S, M)), rng.random((R, S, M)) * 10
        alpha, V = rng.uniform(0.4, 0.9, R), 10.0 ** rng.uniform(-4, -1, R)
    sat = (rng.random((R, S, M)) < 0.6).astype(np.float64)
    served = np.where(rng.random((R, S)) < 0.2, rng.integers(0, M, (R, S)), -1)  # explored: some model answers
    has_feedback = rng.random((R, S)) < 0.7
    return shat, ehat, sat, served, has_feedback, alpha, V


@pytest.mark.parametrize("seed", range(4))
def test_exact_ties_explorations_and_partial_feedback_match_per_request_python(seed):
    case = random_case(np.random.default_rng(seed), R=6, S=80, M=4, dyadic=True)
    chosen, q, q_full = replay_queues(*case)
    ref_chosen, ref_q, ref_q_full = replay_per_request(*case)
    assert chosen.dtype == np.int64 and chosen.shape == q.shape == q_full.shape == (6, 80)
    np.testing.assert_array_equal(chosen, ref_chosen)
    np.testing.assert_array_equal(q, ref_q)
    np.testing.assert_array_equal(q_full, ref_q_full)


@pytest.mark.parametrize("seed", range(4))
def test_random_floats_match_per_request_python(seed):
    """Decisions and the decision queue are the same float operations in the same order: bit-identical. q_full is
    the closed form (walk minus running minimum), equal to the recursion up to rounding."""
    case = random_case(np.random.default_rng(100 + seed), R=5, S=200, M=3, dyadic=False)
    chosen, q, q_full = replay_queues(*case)
    ref_chosen, ref_q, ref_q_full = replay_per_request(*case)
    np.testing.assert_array_equal(chosen, ref_chosen)
    np.testing.assert_array_equal(q, ref_q)
    np.testing.assert_allclose(q_full, ref_q_full, rtol=0, atol=1e-12)


def test_a_tie_goes_to_the_lower_index_and_exploring_forces_the_last_model():
    """Equal scores at q = 0 (equal estimated costs): model 0 answers; an explored step answers with model M-1."""
    shat = np.array([[[0.2, 0.9, 0.5], [0.2, 0.9, 0.5]]])  # [1, 2, 3]
    ehat = np.ones((1, 2, 3))
    sat = np.array([[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]])
    chosen, q, q_full = replay_queues(
        shat, ehat, sat, np.array([[-1, 2]]), np.array([[True, True]]), np.array([0.5]), np.array([1.0])
    )
    np.testing.assert_array_equal(chosen, [[0, 2]])
    np.testing.assert_array_equal(q, [[0.0, 0.5]])
    np.testing.assert_array_equal(q_full, [[0.0, 0.5]])


def test_no_feedback_freezes_the_decision_queue_only():
    R, S, M = 1, 5, 2
    sat = np.zeros((R, S, M))  # every answer fails: each step adds alpha to a queue that sees it
    out = replay_queues(
        np.full((R, S, M), 0.5), np.ones((R, S, M)), sat, np.full((R, S), -1), np.zeros((R, S), bool),
        np.array([0.5]), np.array([1.0]),
    )  # fmt: skip
    np.testing.assert_array_equal(out[1], np.zeros((R, S)))
    np.testing.assert_array_equal(out[2], [[0.5, 1.0, 1.5, 2.0, 2.5]])


def test_other_input_dtypes_give_the_float64_result():
    """float32 predictions and bool flags given as ints are widened exactly, as numpy's promotion would."""
    shat, ehat, sat, served, has_feedback, alpha, V = random_case(np.random.default_rng(7), 3, 50, 4, dyadic=False)
    shat32 = shat.astype(np.float32)
    want = replay_queues(shat32.astype(np.float64), ehat, sat, served, has_feedback, alpha, V)
    got = replay_queues(shat32, ehat, sat.astype(bool), served.astype(np.int8), has_feedback.astype(np.int8), alpha, V)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)


def test_a_nan_score_is_chosen_as_numpy_argmin_would():
    """np.argmin takes the first NaN; the compiled rule keeps that, so a broken prediction is never skipped silently.
    At the first step q = 0, and 0 x NaN is still NaN."""
    shat = np.array([[[0.5, np.nan, 0.5, np.nan]]])  # [1, 1, 4]
    ehat = np.array([[[2.0, 3.0, 1.0, 1.0]]])
    chosen, _, _ = replay_queues(
        shat, ehat, np.ones((1, 1, 4)), np.full((1, 1), -1), np.ones((1, 1), bool), np.array([0.5]), np.array([1.0])
    )
    assert chosen[0, 0] == np.argmin(ehat[0, 0] + 0.0 * (0.5 - shat[0, 0])) == 1


def test_an_exploration_serves_the_best_model_on_earlier_explorations():
    from messplus.sim.engine import explore_answers

    S = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=float)  # [5, 3]
    explored = np.array([True, True, False, True, True])
    np.testing.assert_array_equal(explore_answers(S, explored, "largest"), [2, 2, -1, 2, 2])
    # before any exploration: the largest; then model 0 leads (1 of 1, 2 of 2); ties go to the larger model
    np.testing.assert_array_equal(explore_answers(S, explored, "best"), [2, 0, -1, 0, 0])
    S[3] = [0, 1, 1]
    assert explore_answers(S, explored, "best")[4] == 0  # 2 vs 1 vs 1: model 0 still leads
