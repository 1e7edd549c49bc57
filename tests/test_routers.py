"""The router registry: a baseline defined here, and nowhere else, runs in a sweep and reaches the tables."""

import numpy as np
import polars as pl
import pytest

from messplus.analysis.tables import main_table
from messplus.sim import routers
from messplus.sim.config import SweepConfig
from messplus.sim.results import open_results
from messplus.sim.routers import Split, register, registry
from messplus.sim.sweep import run_sweep


@pytest.fixture
def alternate(monkeypatch):
    """A toy policy: the cheapest model on odd positions, the largest on even ones. Registered for this test only."""
    monkeypatch.setattr(routers, "_REGISTRY", registry())  # every built-in one, in a copy this test may extend

    @register("toy-alternate", "policy", "test: cheapest and largest model in turn; knows nothing")
    class Alternate:
        def fit(self, calib: Split, bench: Split) -> None:
            self.fitted_on = len(calib.S)

        def route(self, stream: Split, alpha: float, u: np.ndarray) -> np.ndarray:
            assert self.fitted_on > 0  # fit came first, on the calibration split
            return np.where(np.arange(len(stream.S)) % 2 == 0, stream.S.shape[1] - 1, 0)

    return "toy-alternate"


def test_a_router_registered_in_a_test_reaches_runs_and_the_table(alternate, small_trace, tmp_path):
    assert registry()[alternate].kind == "policy"
    cfg = SweepConfig(benches=("sciq",), seeds=(1, 2), alphas=(0.9,), methods=(alternate, "opt"))
    run_sweep(cfg, small_trace).write(tmp_path / "r")
    runs = pl.read_parquet(tmp_path / "r" / "runs.parquet")
    toy = runs.filter(pl.col("method") == alternate)
    assert toy.height == 2 and set(toy["kind"]) == {"policy"}
    steps = pl.read_parquet(tmp_path / "r" / "steps.parquet").filter(pl.col("run_id") == toy["run_id"][0])
    chosen = steps.sort("t")["chosen"].to_numpy()
    np.testing.assert_array_equal(chosen[:4], [2, 0, 2, 0])  # its choices, step by step
    assert toy["call_ratio"][0].to_list()[1] == 0  # never the middle model
    table = main_table(open_results(tmp_path / "r"))
    row = table.filter(pl.col("bench") == "sciq", pl.col("method") == alternate)
    assert row.height == 1
    assert row["satisfaction_pct"][0] == pytest.approx(100 * toy["satisfaction"].mean())
    assert "opt" not in table["method"].to_list()  # a bound is a reference, not a table row


def test_bounds_and_policies_are_told_apart_by_kind(small_trace):
    runs = run_sweep(SweepConfig(benches=("piqa",), seeds=(3,), methods=("oracle", "mix", "opt", "single")),
                     small_trace).runs  # fmt: skip
    kinds = dict(zip(runs["method"], runs["kind"], strict=True))
    assert kinds["oracle"] == kinds["mix"] == kinds["opt"] == "bound"
    assert all(kinds[m] == "policy" for m in kinds if m.startswith("single:"))
    assert len([m for m in kinds if m.startswith("single:")]) == 3  # one run per zoo model


def test_accuracy_price_is_the_slope_of_the_cheapest_mix():
    from messplus.sim.routers.bounds import accuracy_price

    acc, cost = np.array([0.5, 0.7, 0.9]), np.array([1.0, 2.0, 10.0])
    assert accuracy_price(acc, cost, 0.6) == pytest.approx(5.0)  # mixing models 0 and 1: 1 cost per 0.2 accuracy
    assert accuracy_price(acc, cost, 0.8) == pytest.approx(40.0)  # models 1 and 2: 8 per 0.2
    assert accuracy_price(acc, cost, 0.4) == 0.0  # the cheapest model already beats alpha
    assert accuracy_price(acc, cost, 0.95) == np.inf
