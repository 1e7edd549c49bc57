import itertools

import numpy as np
import pytest

from sim import baselines


def test_mix_lp_is_the_exact_optimum():
    rng = np.random.default_rng(0)
    for _ in range(50):
        acc, cost = np.sort(rng.random(4)), np.sort(rng.random(4) * 10)
        alpha = rng.uniform(acc.min(), acc.max())
        p = baselines.mix_lp(acc, cost, alpha)
        assert p.sum() == pytest.approx(1) and p @ acc >= alpha - 1e-12
        grid = [np.array(w) / 20 for w in itertools.product(range(21), repeat=4) if sum(w) == 20]
        feasible = [w @ cost for w in grid if w @ acc >= alpha]
        assert p @ cost <= min(feasible) + 1e-12


def test_mix_lp_falls_back_to_the_most_accurate_model():
    np.testing.assert_array_equal(baselines.mix_lp(np.array([0.2, 0.6, 0.5]), np.array([1, 2, 3]), 0.9), [0, 1, 0])


def test_opt_cost_matches_brute_force_at_integral_targets():
    rng = np.random.default_rng(1)
    for _ in range(30):
        S = (rng.random((7, 3)) < [0.4, 0.6, 0.8]).astype(float)
        E = rng.random((7, 3)) * [1, 3, 9]
        reach = S.max(1).sum()
        for target in range(int(reach) + 1):
            best = min(
                (
                    E[np.arange(7), c].sum()
                    for c in itertools.product(range(3), repeat=7)
                    if S[np.arange(7), c].sum() >= target
                ),
            )
            assert baselines.opt_cost(S, E, target / 7) * 7 == pytest.approx(best)
        assert baselines.opt_cost(S, E, (reach + 0.5) / 7) == np.inf


def test_oracle_takes_the_cheapest_satisfying_model():
    S = np.array([[0, 1, 1], [0, 0, 0], [1, 1, 1]])
    E = np.array([[1.0, 5.0, 2.0], [3.0, 1.0, 2.0], [4.0, 1.0, 9.0]])
    np.testing.assert_array_equal(baselines.oracle(S, E), [2, 1, 1])


def test_routellm_threshold_meets_alpha_on_calibration():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, 5))
    easy = X[:, 0] > 0
    S = np.stack([easy & (rng.random(400) < 0.9), rng.random(400) < 0.9], axis=1).astype(float)
    X_new = rng.standard_normal((4000, 5))  # fresh requests from the same distribution
    easy_new = X_new[:, 0] > 0
    S_new = np.stack([easy_new & (rng.random(4000) < 0.9), rng.random(4000) < 0.9], axis=1).astype(float)
    p_cal, p_new = baselines.weak_ok_scores(X, S, X_new)
    for alpha in (0.6, 0.75, 0.85):
        chosen = baselines.routellm(p_cal, S, p_new, alpha)
        sat = S_new[np.arange(4000), np.where(chosen == 0, 0, 1)].mean()
        assert sat >= alpha - 0.04  # out-of-fold threshold holds on unseen requests, within ~2 binomial std of 400
        assert set(np.unique(chosen)) <= {0, 1}
    p_cal, p_in = baselines.weak_ok_scores(X, S, X)
    assert (baselines.routellm(p_cal, S, p_in, 0.6) == 0).mean() > (
        baselines.routellm(p_cal, S, p_in, 0.85) == 0
    ).mean()


def test_educated_guessing_draws_from_the_lp_mix():
    S = np.array([[1, 1]] * 30 + [[0, 1]] * 70, dtype=float)  # accuracies 0.3 and 1.0
    E = np.tile([1.0, 10.0], (100, 1))
    u = np.random.default_rng(3).random(20000)
    chosen = baselines.educated(S, E, 0.65, u)
    assert (chosen == 1).mean() == pytest.approx(0.5, abs=0.02)  # 0.3 + 0.7 w = 0.65 -> w = 0.5


def test_auc_matches_pairwise_definition_with_ties():
    from sim.metrics import auc

    rng = np.random.default_rng(4)
    score = rng.integers(0, 5, 60).astype(float)
    y = (rng.random(60) < 0.4).astype(float)
    pos, neg = score[y == 1], score[y == 0]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auc(score, y) == pytest.approx(pairwise)
    assert np.isnan(auc(score, np.ones(60)))


def test_auc_z_measures_distance_from_chance_in_null_standard_errors():
    from sim.metrics import auc, auc_z

    rng = np.random.default_rng(5)
    y = (rng.random(300) < 0.3).astype(float)
    null = [auc(rng.random(300), y) for _ in range(2000)]  # scores unrelated to y
    _, z_one = auc_z(np.r_[1.0, np.zeros(299)], y)  # one distinct score: AUC moves by a single pair block
    a, z = auc_z(y + rng.normal(0, 1, 300), y)
    se = (a - 0.5) / z
    assert np.std(null) == pytest.approx(se, rel=0.1)  # the formula is the spread of chance AUCs
    assert z > 5 and abs(z_one) < 1
    assert all(np.isnan(auc_z(rng.random(50), np.zeros(50))))
