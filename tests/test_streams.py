"""Streams of several benches: one predictor and one SLA over all of them, equal to the per-request spec."""

import numpy as np
import polars as pl
import pytest

from messplus.sim.bench import load
from messplus.sim.config import RunConfig, SweepConfig
from messplus.sim.reference import simulate_reference
from messplus.sim.sweep import open_streams, run_sweep

BASE = dict(benches=("logiqa", "piqa", "winogrande"), seeds=(3,), cs=(0.5,), Vs=(1e-3,))


@pytest.mark.parametrize("stream", ["mixed", "drift:piqa,logiqa,winogrande"])
def test_a_stream_run_equals_the_reference_step_by_step(small_trace, stream):
    cfg = SweepConfig(**BASE, stream=stream, methods=("messplus", "routerdc", "opt"))
    res = run_sweep(cfg, small_trace)
    run = res.runs.filter(pl.col("method") == "messplus").row(0, named=True)
    resolved, found, combined = open_streams(cfg, small_trace)
    b = load(resolved, found[combined.name], combined.name, stream=combined)
    spec = RunConfig(alpha=run["alpha"], V=run["V"], c=run["c"], k=run["k"], seed=3)
    ref = simulate_reference(b.X.astype(np.float64), b.arrays.satisfied, b.E, b.draws[3], spec, b.pred)
    fast = res.steps.filter(pl.col("run_id") == run["run_id"]).sort("t")
    np.testing.assert_array_equal(fast["chosen"].to_numpy(), ref.chosen)
    np.testing.assert_allclose(fast["q"].to_numpy(), ref.q, atol=1e-9)
    parts = {s["bench"] for s in run["segments"]}
    assert parts == {"logiqa", "piqa", "winogrande"}  # per-bench figures inside the one stream
    sizes = {s["bench"]: s for s in run["segments"]}
    overall = sum(len(b.draws[3].stream[b.parts[b.draws[3].stream] == i]) * sizes[n]["satisfaction"]
                  for i, n in enumerate(b.part_names)) / len(b.draws[3].stream)  # fmt: skip
    assert overall == pytest.approx(run["satisfaction"])
    assert set(res.runs["method"]) == {"messplus", "routerdc", "opt"}  # baselines and bounds on the same stream


def test_a_drift_stream_serves_its_blocks_in_order(small_trace):
    cfg = SweepConfig(**BASE, stream="drift:piqa,logiqa,winogrande", methods=("messplus",))
    res = run_sweep(cfg, small_trace)
    resolved, found, combined = open_streams(cfg, small_trace)
    b = load(resolved, found[combined.name], combined.name, stream=combined)
    order = b.parts[b.draws[3].stream]
    assert (np.diff(order) >= 0).all() and order[-1] == 2  # piqa, then logiqa, then winogrande
    assert res.meta["boundaries"]["drift"] == [int(t) + 2 for t in np.flatnonzero(np.diff(order))]


def test_a_bad_stream_is_refused(small_trace):
    from messplus.common import UserError

    with pytest.raises(UserError, match="two or more distinct benches"):
        run_sweep(SweepConfig(**BASE, stream="drift:piqa"), small_trace)
    with pytest.raises(UserError, match="--stream must be"):
        run_sweep(SweepConfig(**BASE, stream="zigzag"), small_trace)
