"""The fast engine reproduces the per-request reference (the spec) step by step."""

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from messplus.sim import base_rate, predictor
from messplus.sim.config import RunConfig, SweepConfig
from messplus.sim.reference import simulate_reference
from messplus.sim.sweep import load, run_sweep
from messplus.traces.io import load_benches, write_trace
from messplus.traces.synth import synth_trace

GRID = dict(
    alphas=(0.55,),
    Vs=(1e-3, 1e-2),
    cs=(0.3, 1.0),
    ks=(0.25, 0.5),
    feedbacks=(1.0, 0.4),
    cost_estimates=("oracle", "mean", "last"),
    seeds=(3,),
    methods=("messplus",),
    dtype="float64",
)


@pytest.fixture(scope="module")
def swept(small_trace):
    cfg = SweepConfig(benches=("logiqa", "winogrande"), **GRID)
    return cfg, run_sweep(cfg, small_trace)


def reference_steps(cfg, trace, row) -> dict[str, np.ndarray]:
    b = load(cfg, load_benches(trace, [row["bench"]])[row["bench"]], row["bench"])
    run = RunConfig(
        alpha=row["alpha"], V=row["V"], c=row["c"], k=row["k"], feedback=row["feedback"],
        cost_estimate=row["cost_estimate"], seed=row["seed"], learn=row["learn"], latency_sla=row["latency_sla"],
    )  # fmt: skip
    X, d = b.X.astype(np.float64), b.draws[row["seed"]]
    ref = simulate_reference(X, b.arrays.satisfied, b.E, d, run, b.pred, L=b.latency)
    t = np.arange(1, len(ref.chosen) + 1)
    return {
        "chosen": ref.chosen,
        "explored": ref.explored,
        "running_satisfaction": np.cumsum(ref.satisfied) / t,
        "running_cost": np.cumsum(ref.cost) / t,
        "q": ref.q,
        "q_full": ref.q_full,
        "loss": ref.loss,
    }


def assert_matches_reference(cfg, results, trace) -> int:
    """Every step of every MESS+ run equals the reference; returns how often the reference switched models."""
    checked_flips = 0
    for row in results.runs.filter(pl.col("method") == "messplus").iter_rows(named=True):
        fast = results.steps.filter(pl.col("run_id") == row["run_id"]).sort("t")
        ref = reference_steps(cfg, trace, row)
        np.testing.assert_array_equal(fast["chosen"].to_numpy(), ref["chosen"], err_msg=str(row))
        np.testing.assert_array_equal(fast["explored"].to_numpy(), ref["explored"])
        for col in ("running_satisfaction", "running_cost", "q", "q_full", "loss"):
            np.testing.assert_allclose(fast[col].to_numpy(), ref[col], rtol=1e-9, atol=1e-9, err_msg=col)
        checked_flips += int((np.diff(ref["chosen"]) != 0).sum())
    return checked_flips


def test_every_step_of_every_run_matches_the_reference(swept, small_trace):
    cfg, results = swept
    runs = results.runs.filter(pl.col("method") == "messplus")
    assert runs.height == 2 * 2 * 2 * 2 * 2 * 3 * 1  # benches x V x c x k x feedback x cost estimate
    assert set(runs["input_dropout"]) == {0.1} and set(runs["clip_norm"]) == {1.0}
    assert assert_matches_reference(cfg, results, small_trace) > 100  # real routing, so matching choices matter


TRAINING = {  # the paper's head, whose own predictions every decision reads
    # the paper's preset: per-bench epochs (LogiQA 5, WinoGrande 1), input dropout; clipping tight enough to bind
    "paper epochs, input dropout, binding clip": dict(preset="paper", clip_norm=0.05, head="paper"),
    # one unit per explored request: every epoch on the same input, no clipping
    "no input dropout, no clip": dict(input_dropout=0.0, clip_norm=0.0, epochs=2, head="paper"),
}


@pytest.mark.parametrize("training", TRAINING.values(), ids=TRAINING.keys())
def test_training_options_match_the_reference(training, small_trace):
    grid = dict(GRID, Vs=(1e-3,), ks=(0.25,), cost_estimates=("mean", "last"))
    cfg = SweepConfig(benches=("logiqa", "winogrande"), **grid, **training)
    results = run_sweep(cfg, small_trace)
    assert assert_matches_reference(cfg, results, small_trace) > 20
    unclipped = run_sweep(replace(cfg, clip_norm=0.0, benches=("logiqa",)), small_trace).steps["loss"]
    mine = results.steps.join(results.runs.select("run_id", "bench"), on="run_id").filter(pl.col("bench") == "logiqa")
    assert (training.get("clip_norm") == 0.0) == np.allclose(mine["loss"].to_numpy(), unclipped.to_numpy())


def test_the_residual_head_and_its_gate_match_the_reference(tmp_path_factory):
    """The residual predictor answers with the base rate until its head has earned its place, then with the head,
    and with the base rate again where the head loses its lead: runs that switch both ways inside the stream (a
    half-size synthetic zoo, long enough for the head to earn it) decide as the reference does."""
    trace = tmp_path_factory.mktemp("half") / "half.parquet"
    write_trace(synth_trace(scale=0.5), trace)
    grid = dict(GRID, Vs=(1e-3,), ks=(0.25,), cost_estimates=("mean",), cs=(1.0,), feedbacks=(1.0,))
    cfg = SweepConfig(benches=("logiqa", "piqa"), **grid, lr=0.3, momentum=0.5, epochs=1)
    results = run_sweep(cfg, trace)
    switches = []
    for _, g in results.predictions.group_by("bench"):
        shat, y = np.stack(g["shat"].to_numpy()), np.stack(g["label"].to_numpy()).astype(float)
        seen = np.broadcast_to(g["explored"].to_numpy()[:, None], y.shape)
        counter = base_rate.probability(*base_rate.before(y, seen)).astype(np.float32)
        head = ~(shat == counter).all(1)  # [S] positions the head answered
        switches.append(int(np.abs(np.diff(head.astype(int))).sum()))
    assert min(switches) >= 2  # on, then off again, on every bench
    assert assert_matches_reference(cfg, results, trace) > 20


def test_two_queues_match_the_reference(small_trace):
    """With a latency SLA MESS+ keeps a second queue (drift-plus-penalty with two): every decision and queue as the
    spec's, on every cost estimate, and the latency queue does change decisions."""
    grid = dict(GRID, Vs=(1e-3,), ks=(0.25,), feedbacks=(1.0, 0.4))
    cfg = SweepConfig(benches=("logiqa", "winogrande"), **grid, latency_sla=0.3)
    results = run_sweep(cfg, small_trace)
    assert assert_matches_reference(cfg, results, small_trace) > 20
    runs = results.runs.filter(pl.col("method") == "messplus")
    assert runs["latency_met"].is_not_null().all() and (runs["latency_sla"] == 0.3).all()
    loose = run_sweep(replace(cfg, latency_sla=1e6), small_trace).runs.filter(pl.col("method") == "messplus")
    assert (runs["mean_latency_s"] < loose["mean_latency_s"]).any()  # the second queue steers to faster models


def test_checkpoint_merges_match_the_reference(small_trace, monkeypatch):
    """With a window of one exploration the fast predictor merges its folds into the explicit W1 and momentum
    buffer after every exploration (docs/predictor.md, eq. 15), the regime long streams run in."""
    monkeypatch.setattr(predictor, "WINDOW", 1)
    grid = dict(GRID, Vs=(1e-3,), ks=(0.25,), cs=(1.0,), cost_estimates=("mean",), feedbacks=(1.0,))
    cfg = SweepConfig(benches=("logiqa", "winogrande"), **grid, preset="paper", clip_norm=0.05)
    results = run_sweep(cfg, small_trace)
    assert results.runs["n_explore"].min() > 10  # many merges per run
    assert assert_matches_reference(cfg, results, small_trace) > 10


def test_learning_from_feedback_matches_the_reference(small_trace):
    """Exploited requests whose outcome comes back train the predictor on the chosen model's label alone; each run
    then has a predictor of its own (sim.training.learn_from_feedback), step for step the reference's."""
    grid = dict(GRID, Vs=(1e-3,), ks=(0.25,), cost_estimates=("mean",), feedbacks=(1.0, 0.5))
    cfg = SweepConfig(benches=("logiqa", "winogrande"), learns=("explored", "feedback"), **grid)
    results = run_sweep(cfg, small_trace)
    assert assert_matches_reference(cfg, results, small_trace) > 20
    runs = results.runs.filter(pl.col("method") == "messplus").sort("bench", "c", "feedback", "learn")
    own, shared = runs.filter(pl.col("learn") == "feedback"), runs.filter(pl.col("learn") == "explored")
    assert (own["labels_seen"] > shared["labels_seen"]).all()  # every exploit with feedback adds a label
    assert (own["q_final"] != shared["q_final"]).any()  # and what it learns changes decisions


def test_sparse_feedback_separates_the_two_queues(swept):
    _, results = swept
    runs = results.runs.filter(pl.col("method") == "messplus")
    sparse = runs.filter(pl.col("feedback") < 1)
    full = runs.filter(pl.col("feedback") == 1)
    # with full feedback they are the same queue (q_full comes from a closed form: equal up to rounding)
    np.testing.assert_allclose(full["q_final"].to_numpy(), full["q_full_final"].to_numpy(), rtol=1e-12, atol=1e-12)
    assert (abs(sparse["q_final"] - sparse["q_full_final"]) > 1e-6).any()


def test_cost_estimate_modes_change_decisions(swept):
    _, results = swept
    runs = results.runs.filter(pl.col("method") == "messplus", pl.col("feedback") == 1)
    by_mode = runs.group_by("cost_estimate").agg(pl.col("cost_per_request").sum()).sort("cost_estimate")
    assert by_mode["cost_per_request"].n_unique() == 3


def test_float32_engine_stays_close_to_the_float64_spec(small_trace):
    cfg64 = SweepConfig(benches=("logiqa",), **{**GRID, "cost_estimates": ("oracle",), "feedbacks": (1.0,)})
    cfg32 = SweepConfig(
        benches=("logiqa",), **{**GRID, "cost_estimates": ("oracle",), "feedbacks": (1.0,), "dtype": "float32"}
    )
    a, b = run_sweep(cfg64, small_trace).steps, run_sweep(cfg32, small_trace).steps
    np.testing.assert_allclose(a["loss"].to_numpy(), b["loss"].to_numpy(), atol=1e-4)
    assert (a["chosen"] == b["chosen"]).mean() > 0.99


def test_a_run_does_not_depend_on_the_other_runs_in_the_sweep(small_trace):
    base = dict(GRID, cs=(0.5,), ks=(0.25,), feedbacks=(1.0,), cost_estimates=("oracle",), Vs=(1e-3,))
    alone = run_sweep(SweepConfig(benches=("sciq",), **{**base, "seeds": (7,)}), small_trace).runs
    crowd = run_sweep(
        SweepConfig(benches=("logiqa", "sciq"), **{**base, "seeds": (5, 7), "cs": (0.1, 0.5)}), small_trace
    ).runs
    pick = lambda df: df.filter(pl.col("bench") == "sciq", pl.col("seed") == 7, pl.col("c") == 0.5).drop("run_id")  # noqa: E731
    assert pick(alone).equals(pick(crowd))
