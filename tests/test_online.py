"""MESS+'s online rivals: each equals its per-request spec, and an online policy is one class anywhere."""

import itertools

import numpy as np
import polars as pl
import pytest

from messplus.analysis.tables import main_table
from messplus.sim import mess, routers
from messplus.sim.config import SweepConfig
from messplus.sim.plan import PlanConfig, run_plan
from messplus.sim.results import open_results
from messplus.sim.routers import MESSPLUS, Served, Split, linucb_queue, primal_dual, register, registry, ts_queue
from messplus.sim.sweep import load, run_sweep
from messplus.traces.io import load_benches

RIVALS = {"ts-queue": ts_queue, "linucb-queue": linucb_queue, "primal-dual": primal_dual}


@pytest.mark.parametrize("name", RIVALS)
def test_each_rival_equals_its_per_request_spec(name, small_trace):
    """Two benches, two seeds, two alphas, two V, with and without a latency SLA: every decision the compiled
    kernel makes is the spec's."""
    module, decided = RIVALS[name], 0
    cfg = SweepConfig(benches=("logiqa", "boolq"), seeds=(1, 2), alphas=(0.5, 0.8), latency_sla=0.3)
    for bench in cfg.benches:
        b = load(cfg, load_benches(small_trace, [bench])[bench], bench)
        for seed in cfg.seeds:
            d = b.draws[seed]
            stream, policy = b.split(d.stream), registry()[name].make()
            policy.fit(b.split(d.calib), Split(b.X, b.arrays.satisfied, b.E))
            extra = linucb_queue.features(stream.X.astype(float), *policy.basis) if name == "linucb-queue" else d.noise
            for alpha, V, sla in itertools.product(b.alphas, (1e-3, 1e-1), (None, 0.3)):
                fast = policy.run(stream, alpha, V, d, sla)
                assert fast.explored is None  # bandit feedback: no request is sent to every model
                fast = fast.chosen
                np.testing.assert_array_equal(fast, module.spec(stream, alpha, V, extra, sla))
                decided += len(np.unique(fast)) > 1
    assert decided > 4  # the runs really route between models, so equal choices mean something


def test_rivals_learn_from_bandit_feedback_and_keep_the_sla_on_the_demo(small_trace):
    runs = run_sweep(SweepConfig(benches=("boolq",), seeds=(1, 2), alphas=(0.8,), methods=tuple(RIVALS)),
                     small_trace).runs  # fmt: skip
    assert set(runs["method"]) == set(RIVALS) and runs["V"].to_list() == [1e-3] * 6
    assert (runs["n_explore"] == 0).all()  # bandits never send a request to every model
    single = run_sweep(SweepConfig(benches=("boolq",), seeds=(1, 2), alphas=(0.8,), methods=("single",)),
                       small_trace).runs  # fmt: skip
    # they learned which models are worth their cost: cheaper than the cheapest single model that keeps the SLA
    keeps = single.filter(pl.col("sla_met")).group_by("seed").agg(pl.col("cost_per_request").min())
    rivals = runs.filter(pl.col("sla_met"), pl.col("method") == "ts-queue")
    assert rivals.height and (rivals.join(keeps, on="seed")["cost_per_request"] <
                              rivals.join(keeps, on="seed")["cost_per_request_right"]).all()  # fmt: skip


def test_messplus_is_an_online_policy_that_its_batched_sweep_runs_equal(small_trace):
    """MESS+ is registered like its rivals (an OnlinePolicy whose run is its per-request spec); sweeps run it
    batched, and every batched run serves what the policy serves, explorations included, request by request."""
    method = registry()[MESSPLUS]
    assert method.online and method.batched and not method.replayed  # sweeps do not replay it a second time
    cfg = SweepConfig(benches=("logiqa", "boolq"), seeds=(1, 2), alphas=(0.5, 0.8), Vs=(1e-3, 1e-1), cs=(0.5,),
                      dtype="float64", latency_sla=0.4)  # fmt: skip
    explored = switched = 0
    for bench in cfg.benches:
        b = load(cfg, load_benches(small_trace, [bench])[bench], bench)
        for block in mess.blocks(cfg, b, *mess.train(cfg, {bench: b})[bench]):
            for r, alpha in enumerate(block.alpha):
                seed, c, V = (block.config[col][r] for col in ("seed", "c", "V"))
                policy = method.make(b.pred, c=c, k=cfg.ks[0], explore_serve=cfg.explore_serve)
                served = policy.run(b.split(b.draws[seed].stream), alpha, V, b.draws[seed], cfg.latency_sla)
                np.testing.assert_array_equal(served.chosen, block.outcome.chosen[r])
                np.testing.assert_array_equal(served.exploring, block.outcome.explored[r])
                explored, switched = explored + served.exploring.sum(), switched + (len(np.unique(served.chosen)) > 2)
    assert explored > 0 and switched > 4  # it explores and routes, so equal decisions mean something


@pytest.fixture
def sticky(monkeypatch):
    """A toy online policy, in one class: the cheapest model until the running satisfaction falls below alpha,
    then the largest until it recovers. Registered for this test only."""
    monkeypatch.setattr(routers, "_REGISTRY", registry())

    @register("toy-sticky", "policy", "test: cheapest while the SLA holds, else the largest; its own outcomes only")
    class Sticky:
        def fit(self, calib: Split, bench: Split) -> None:
            pass

        def run(self, stream: Split, alpha: float, V: float, draws, latency_sla=None) -> Served:
            S, M = stream.S.shape
            chosen, got = np.empty(S, dtype=np.int64), 0.0
            for t in range(S):
                chosen[t] = 0 if t == 0 or got / t >= alpha else M - 1
                got += stream.S[t, chosen[t]]
            return Served(chosen)

    return "toy-sticky"


def test_an_online_policy_in_one_class_reaches_runs_steps_tables_and_plans(sticky, small_trace, tmp_path):
    assert registry()[sticky].online
    cfg = SweepConfig(benches=("sciq",), seeds=(1, 2), alphas=(0.9,), Vs=(1e-3, 1e-2), methods=(sticky, "opt"))
    run_sweep(cfg, small_trace).write(tmp_path / "r")
    res = open_results(tmp_path / "r")
    runs = res.runs.collect().filter(pl.col("method") == sticky)
    assert runs.height == 2 * 2 and sorted(set(runs["V"])) == [1e-3, 1e-2]  # seeds x V
    steps = res.steps.collect().filter(pl.col("run_id") == runs["run_id"][0]).sort("t")
    assert set(steps["chosen"].to_list()) == {0, 2}
    assert sticky in main_table(res)["label"].to_list()
    plan, candidates = run_plan(PlanConfig(benches=("sciq",), seeds="0-3", confidence=0.5, margins=(0.0,),
                                           Vs=(1e-3,), cs=(0.5,)), small_trace)  # fmt: skip
    assert sticky in candidates["sciq"]["family"].to_list() and sticky in plan["family"].to_list()


def test_a_latency_sla_needs_latencies_and_keeps_them_for_every_method(small_trace, tmp_path):
    from messplus.common import UserError
    from messplus.traces.io import read_trace, write_trace

    cfg = SweepConfig(benches=("boolq",), seeds=(1,), alphas=(0.8,), latency_sla=0.5,
                      methods=("messplus", "ts-queue", "single", "opt"))  # fmt: skip
    run_sweep(cfg, small_trace).write(tmp_path / "r")
    res = open_results(tmp_path / "r")
    runs = res.runs.collect()
    policies = runs.filter(pl.col("kind") == "policy")
    assert policies["mean_latency_s"].is_not_null().all() and (policies["latency_sla"] == 0.5).all()
    slow = policies.filter(pl.col("mean_latency_s") > 0.5)
    assert (~slow["latency_met"]).all() and policies["latency_met"].any()
    table = main_table(res)  # the table shows the second SLA where one is set
    assert {"mean_latency_s", "latency_met"} <= set(table.columns) and (table["latency_sla"].drop_nulls() == 0.5).all()
    trace = read_trace(small_trace)
    no_latency = tmp_path / "no-latency.parquet"
    write_trace(type(trace)(trace.df.with_columns(pl.lit(None, pl.Float64).alias("latency_s")), trace.zoo,
                            trace.synthetic, trace.provenance), no_latency)  # fmt: skip
    with pytest.raises(UserError, match="--latency-sla needs each request's latency"):
        run_sweep(cfg, no_latency)
    with pytest.raises(UserError, match="--latency-sla with --learn feedback is not built yet"):
        run_sweep(SweepConfig(**{**cfg.__dict__, "learns": ("feedback",)}), small_trace)
