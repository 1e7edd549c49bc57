import itertools

import numpy as np
import pytest

from messplus.sim.routers import Split
from messplus.sim.routers.bounds import mix_bound, mix_lp, opt_cost
from messplus.sim.routers.educated import draw_models, educated_probs
from messplus.sim.routers.oracle import oracle
from messplus.sim.routers.routellm import RouteLLM, RouteLLMPaper


def test_mix_lp_is_the_exact_optimum():
    rng = np.random.default_rng(0)
    for _ in range(50):
        acc, cost = np.sort(rng.random(4)), np.sort(rng.random(4) * 10)
        alpha = rng.uniform(acc.min(), acc.max())
        p = mix_lp(acc, cost, alpha)
        assert p.sum() == pytest.approx(1) and p @ acc >= alpha - 1e-12
        grid = [np.array(w) / 20 for w in itertools.product(range(21), repeat=4) if sum(w) == 20]
        feasible = [w @ cost for w in grid if w @ acc >= alpha]
        assert p @ cost <= min(feasible) + 1e-12


def test_mix_lp_falls_back_to_the_most_accurate_model():
    np.testing.assert_array_equal(mix_lp(np.array([0.2, 0.6, 0.5]), np.array([1, 2, 3]), 0.9), [0, 1, 0])


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
            assert opt_cost(S, E, target / 7) * 7 == pytest.approx(best)
        assert opt_cost(S, E, (reach + 0.5) / 7) == np.inf


def test_oracle_takes_the_cheapest_satisfying_model():
    S = np.array([[0, 1, 1], [0, 0, 0], [1, 1, 1]])
    E = np.array([[1.0, 5.0, 2.0], [3.0, 1.0, 2.0], [4.0, 1.0, 9.0]])
    np.testing.assert_array_equal(oracle(S, E), [2, 1, 1])


def test_routellm_threshold_meets_alpha_on_calibration():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, 5))
    easy = X[:, 0] > 0
    S = np.stack([easy & (rng.random(400) < 0.9), rng.random(400) < 0.9], axis=1).astype(float)
    X_new = rng.standard_normal((4000, 5))  # fresh requests from the same distribution
    easy_new = X_new[:, 0] > 0
    S_new = np.stack([easy_new & (rng.random(4000) < 0.9), rng.random(4000) < 0.9], axis=1).astype(float)
    router = RouteLLM()
    router.fit(Split(X, S, S), Split(X, S, S))
    fresh = Split(X_new, S_new, S_new)
    for alpha in (0.6, 0.75, 0.85):
        chosen = router.route(fresh, alpha, np.zeros(4000))
        sat = S_new[np.arange(4000), np.where(chosen == 0, 0, 1)].mean()
        assert sat >= alpha - 0.04  # out-of-fold threshold holds on unseen requests, within ~2 binomial std of 400
        assert set(np.unique(chosen)) <= {0, 1}
    seen = Split(X, S, S)
    assert (router.route(seen, 0.6, np.zeros(400)) == 0).mean() > (router.route(seen, 0.85, np.zeros(400)) == 0).mean()


@pytest.mark.parametrize(
    "bench, alpha, published_mj",
    [("arc_challenge", 0.50, 1.00), ("boolq", 0.80, 1.31), ("piqa", 0.78, 0.76), ("winogrande", 0.70, 0.54)],
)
def test_educated_heuristic_reproduces_the_papers_costs(bench, alpha, published_mj):
    from messplus.traces.synth import PAPER_TABLE2

    T, acc, energy = PAPER_TABLE2[bench]
    p = educated_probs(np.array(acc) / 100, alpha)
    assert p @ np.array(acc) / 100 >= alpha - 1e-6
    assert T * p @ np.array(energy, float) / 1e6 == pytest.approx(published_mj, rel=0.05)


def test_educated_heuristic_nudges_towards_accurate_models_until_alpha():
    acc = np.array([0.3, 0.6, 0.9])
    p = educated_probs(acc, 0.75)
    assert 0.75 - 1e-6 <= p @ acc < 0.76  # stops as soon as it is met
    assert p[2] > p[1] == p[0]  # the mid model starts at the mixture's accuracy: "not better", so nudged down
    fallback = educated_probs(acc, 0.95)  # above the best model: 5000 rounds cannot reach it
    np.testing.assert_allclose(fallback, [0.12, 0.08, 0.80], atol=1e-8)  # 80% of the rest to each, best first
    u = np.random.default_rng(3).random(20000)
    assert np.bincount(draw_models(p, u), minlength=3) / 20000 == pytest.approx(p, abs=0.01)


def test_mix_bound_is_the_lp_mix_on_the_stream():
    S = np.array([[1, 1]] * 30 + [[0, 1]] * 70, dtype=float)  # accuracies 0.3 and 1.0
    E = np.tile([1.0, 10.0], (100, 1))
    sat, cost = mix_bound(S, E, 0.65)  # 0.3 + 0.7 w = 0.65 -> w = 0.5
    assert sat == pytest.approx(0.65) and cost == pytest.approx(5.5)
    assert mix_bound(S, E, 1.01)[1] == np.inf  # no mix reaches it: like E_OPT, infeasible


def test_routellm_paper_picks_the_cheapest_threshold_that_meets_alpha_in_sample():
    rng = np.random.default_rng(6)
    p = rng.random(1000)  # score that the weak model suffices
    S = np.stack([rng.random(1000) < p, np.ones(1000)], axis=1).astype(float)
    router = RouteLLMPaper()
    router.score = lambda X: p[:, None]  # the classifier's scores, given
    for alpha in (0.6, 0.8, 0.95):
        chosen = router.route(Split(np.zeros((1000, 1)), S, S), alpha, np.zeros(1000))
        sat = S[np.arange(1000), chosen].mean()
        assert sat >= alpha
        cheaper = np.where(1 - p >= min(0.9, (1 - p)[chosen == 1].min() + 0.1), 1, 0)  # the next threshold up
        if (chosen == 1).mean() < 1 and (1 - p)[chosen == 1].min() < 0.85:
            assert S[np.arange(1000), cheaper].mean() < alpha


def test_auc_matches_pairwise_definition_with_ties():
    from messplus.sim.metrics import auc

    rng = np.random.default_rng(4)
    score = rng.integers(0, 5, 60).astype(float)
    y = (rng.random(60) < 0.4).astype(float)
    pos, neg = score[y == 1], score[y == 0]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auc(score, y) == pytest.approx(pairwise)
    assert np.isnan(auc(score, np.ones(60)))


def test_auc_z_measures_distance_from_chance_in_null_standard_errors():
    from messplus.sim.metrics import auc, auc_z

    rng = np.random.default_rng(5)
    y = (rng.random(300) < 0.3).astype(float)
    null = [auc(rng.random(300), y) for _ in range(2000)]  # scores unrelated to y
    _, z_one = auc_z(np.r_[1.0, np.zeros(299)], y)  # one distinct score: AUC moves by a single pair block
    a, z = auc_z(y + rng.normal(0, 1, 300), y)
    se = (a - 0.5) / z
    assert np.std(null) == pytest.approx(se, rel=0.1)  # the formula is the spread of chance AUCs
    assert z > 5 and abs(z_one) < 1
    assert all(np.isnan(auc_z(rng.random(50), np.zeros(50))))
