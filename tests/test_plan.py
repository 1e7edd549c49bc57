"""`sim plan`: the cheapest searched setting that met the SLA by the deadline on the promised share of orders."""

import polars as pl
import pytest

from messplus.sim.plan import PlanConfig, run_plan


def test_the_plan_is_the_cheapest_setting_that_meets_with_the_confidence(small_trace):
    cfg = PlanConfig(benches=("piqa",), alpha=0.7, seeds=12, confidence=0.75, margins=(0.0, 0.02, 0.05),
                     Vs=(1e-3, 1e-5), cs=(0.5,), validate_seeds="100-111")  # fmt: skip
    plan, candidates = run_plan(cfg, small_trace)
    row, table = plan.row(0, named=True), candidates["piqa"]
    assert row["found"] and row["p_meet"] >= 0.75
    meeting = table.filter(pl.col("p_meet") >= 0.75)
    assert row["cost_per_request"] == pytest.approx(meeting["cost_per_request"].min())  # the cheapest of them
    assert table.height == 3 * 2  # every margin x V searched (c fixed)
    assert row["margin"] == pytest.approx(row["alpha_target"] - 0.7)
    unplanned = table.filter(pl.col("alpha_target") == 0.7, pl.col("V") == row["V"])
    assert row["cost_per_request_unplanned"] == pytest.approx(unplanned["cost_per_request"][0])
    assert 0 <= row["p_meet_validated"] <= 1 and row["validate_seeds"] == 12
    assert set(cfg.planning()).isdisjoint(cfg.validation())  # fresh seeds never planned on


def test_planning_seeds_skip_the_validation_range():
    cfg = PlanConfig(seeds=5, validate_seeds="2-3")
    assert cfg.planning() == (0, 1, 4, 5, 6) and cfg.validation() == (2, 3)
