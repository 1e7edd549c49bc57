"""`sim plan`: the cheapest searched setting that met the SLA by the deadline on the promised share of orders."""

import math

import numpy as np
import polars as pl
import pytest

from messplus.common import UserError
from messplus.sim import mess
from messplus.sim.bench import load, resolve_alphas
from messplus.sim.plan import (
    INFEASIBLE,
    MET,
    PlanConfig,
    binomial_tail,
    outcomes,
    run_plan,
    seeds_needed,
    share_lower,
    sweep_config,
    tolerance_bound,
    tolerance_factor,
    up_to,
)
from messplus.traces.dense import to_arrays
from messplus.traces.io import load_benches


def test_the_plan_is_the_cheapest_setting_that_meets_with_the_confidence(small_trace):
    cfg = PlanConfig(benches=("piqa",), alpha=(0.7,), seeds=12, confidence=0.75, margins=(0.0, 0.02, 0.05),
                     Vs=(1e-3, 1e-5), cs=(0.5,), validate_seeds="100-111")  # fmt: skip
    plan, candidates = run_plan(cfg, small_trace)
    row, table = plan.row(0, named=True), candidates["piqa"]
    assert row["found"] and row["verdict"] == MET and row["p_meet_lower"] >= 0.75 and row["tolerance_bound"] >= 0.7
    # meeting: the lower bound on the share of orders and the tolerance bound both keep the promise
    kept = (table["p_meet_lower"] >= 0.75) & (table["tolerance_bound"] >= 0.7 - 1e-12)
    assert table["meets"].to_list() == kept.to_list() and (table["p_meet_lower"] <= table["p_meet"]).all()
    meeting = table.filter(pl.col("meets"))
    assert row["cost_per_request"] == pytest.approx(meeting["cost_per_request"].min())  # the cheapest of them
    assert table.height == 3 * 2  # every margin x V searched (c fixed)
    assert row["margin"] == pytest.approx(row["alpha_target"] - 0.7)
    unplanned = table.filter(pl.col("alpha_target") == 0.7, pl.col("V") == row["V"])
    assert row["cost_per_request_unplanned"] == pytest.approx(unplanned["cost_per_request"][0])
    assert 0 <= row["p_meet_validated"] <= 1 and row["validate_seeds"] == 12
    assert set(cfg.planning()).isdisjoint(cfg.validation())  # fresh seeds never planned on
    T = len(to_arrays(load_benches(small_trace, ["piqa"])["piqa"], "piqa").satisfied)
    assert row["by"] == row["horizon"] == (T - round(0.2 * T)) // 2  # default deadline: half the scored stream


def test_planning_seeds_skip_the_validation_range():
    cfg = PlanConfig(seeds=5, validate_seeds="2-3")
    assert cfg.planning() == (0, 1, 4, 5, 6) and cfg.validation() == (2, 3)


def test_an_sla_past_the_best_model_is_out_of_reach_after_raising_exploration(small_trace):
    """Nothing meets: c doubles up to --max-c, every c is dropped after the first quarter of the orders (too many
    failures for a setting that could meet), and the row says that always serving the most accurate model would
    not have met it either."""
    cfg = PlanConfig(benches=("piqa",), alpha=(0.99,), seeds=40, margins=(0.0,), Vs=(1e-5,), cs=(0.1,), max_c=0.4)
    plan, candidates = run_plan(cfg, small_trace)
    row, table = plan.row(0, named=True), candidates["piqa"]
    assert not row["found"] and row["verdict"] == INFEASIBLE
    assert sorted(table["c"].to_list()) == [0.1, 0.2, 0.4]
    assert (table["n"] == 10).all()  # screened out on 40 / 4 orders
    assert row["p_meet_best_model"] < 0.95 and row["cost_per_request_best_model"] > 0 and row["best_model"]


def test_a_stream_cut_at_the_deadline_decides_exactly_as_the_whole_one(small_trace):
    """The planner simulates only the requests up to its last checkpoint: running satisfaction there is the
    whole stream's."""
    trace = load_benches(small_trace, ["piqa"])["piqa"]
    alpha = resolve_alphas(to_arrays(trace, "piqa").satisfied.mean(0), ("mid",), "piqa")[0]
    cfg = PlanConfig(Vs=(1e-3, 1e-5), cs=(0.5, 2.0), seeds=4)
    scfg = sweep_config(cfg, "piqa", (alpha, alpha + 0.02), cfg.planning())
    b = load(scfg, trace, "piqa")
    at = np.array([b.n_stream // 3, b.n_stream // 2])
    whole, cut = outcomes(scfg, b, at), outcomes(scfg, up_to(b, int(at[-1])), at)
    assert whole["running"].to_list() == cut["running"].to_list()
    assert not np.allclose(whole["cost"], cut["cost"])  # the cost is that of the requests simulated


def test_a_trajectory_that_explores_every_request_decides_the_same_untrained(small_trace):
    """The planner does not train a predictor no decision reads (c so large that every request is explored): its
    runs decide, satisfy and cost exactly what they do with the trained predictor."""
    trace = load_benches(small_trace, ["piqa"])["piqa"]
    cfg = PlanConfig(Vs=(1e-3,), cs=(0.5, 1e3), seeds=3)
    scfg = sweep_config(cfg, "piqa", (0.7,), cfg.planning())
    b = load(scfg, trace, "piqa")
    skipped, full = (mess.train(scfg, {"piqa": b}, decisions_only=flag)["piqa"] for flag in (True, False))
    every = [g.explored.all() for g in skipped[1]]
    assert sum(every) == 3 and not all(every)  # c = 1000 explores all of each order, c = 0.5 does not
    for g, lazy, trained in zip(skipped[1], skipped[2], full[2], strict=True):
        assert np.isnan(lazy.shat).all() == g.explored.all()  # only the unread ones are left untrained
        if not g.explored.all():
            np.testing.assert_array_equal(lazy.shat, trained.shat)
    for lazy, trained in zip(mess.blocks(scfg, b, *skipped), mess.blocks(scfg, b, *full), strict=True):
        for name in ("chosen", "sat", "cost", "q"):
            np.testing.assert_array_equal(getattr(lazy.outcome, name), getattr(trained.outcome, name))


def test_the_lower_bound_on_the_share_of_orders():
    """Mid-p binomial bound: with 100 orders and 90% assurance, 95% is kept by at most 2 misses."""
    assert [share_lower(100 - f, 100, 0.9) >= 0.95 for f in range(5)] == [True, True, True, False, False]
    assert share_lower(100, 100, 0.9) == pytest.approx(0.2 ** (1 / 100), abs=1e-9)  # no miss: (1 - q)^n / 2 = 0.1
    assert share_lower(0, 10, 0.9) == pytest.approx(0.0, abs=1e-9)
    assert share_lower(97, 100, 0.95) < share_lower(97, 100, 0.9) < 0.97
    assert 0.996 < share_lower(1997, 2000, 0.9) < 0.9985  # thousands of orders: no overflow (math.comb would)
    # a bound that cannot reach the promise even with no miss is refused before any work
    assert seeds_needed(0.95, 0.9) == 32 and share_lower(31, 31, 0.9) < 0.95 <= share_lower(32, 32, 0.9)
    PlanConfig(seeds=32).check_seeds()
    with pytest.raises(UserError, match="give at least 161"):
        PlanConfig(confidence=0.99).check_seeds()


def test_tolerance_factor_and_binomial_tail():
    assert tolerance_factor(100, 0.95, 0.95) == pytest.approx(1.927, rel=0.01)  # tables: exact noncentral t
    assert tolerance_factor(20, 0.90, 0.95) == pytest.approx(1.926, rel=0.01)
    assert tolerance_factor(10**6, 0.95, 0.95) == pytest.approx(1.645, rel=0.01)  # known mean and sd: z_P
    assert tolerance_factor(2, 0.95, 0.95) == math.inf
    # a long left tail pushes the bound out (Cornish-Fisher); a long right tail never pulls it in
    assert tolerance_factor(100, 0.95, 0.95, skew=-0.9) > tolerance_factor(100, 0.95, 0.95) + 0.2
    assert tolerance_factor(100, 0.95, 0.95, skew=0.9) == tolerance_factor(100, 0.95, 0.95)
    assert tolerance_factor(100, 0.95, 0.95, skew=-4.0) == tolerance_factor(100, 0.95, 0.95, skew=-1.0)  # clamped
    x = np.random.default_rng(0).normal(0.8, 0.01, 400)
    skew = ((x - x.mean()) ** 3).mean() / x.std() ** 3
    k = tolerance_factor(400, 0.95, 0.95, skew)
    assert tolerance_bound(x, 0.95, 0.95) == pytest.approx(x.mean() - k * x.std(ddof=1), rel=1e-12)
    assert 1.7 < k < 1.85  # n = 400: a little above z = 1.645
    assert binomial_tail(0, 25, 0.05) == pytest.approx(1.0)
    assert binomial_tail(5, 25, 0.05) == pytest.approx(1 - sum(math.comb(25, i) * 0.05**i * 0.95 ** (25 - i)
                                                               for i in range(5)))  # fmt: skip
