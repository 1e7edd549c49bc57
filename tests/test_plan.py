"""`sim plan`: the cheapest searched setting that met the SLA by the deadline on the promised share of orders."""

import math
from dataclasses import replace

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
    checkpoints,
    outcomes,
    replayed,
    run_plan,
    seeds_needed,
    share_lower,
    sweep_config,
    tolerance_bound,
    tolerance_factor,
    up_to,
)
from messplus.traces.dense import to_arrays
from messplus.traces.io import Trace, load_benches, write_trace
from messplus.traces.zoo import Zoo


def test_the_plan_is_the_cheapest_candidate_of_any_family_that_meets(small_trace):
    cfg = PlanConfig(benches=("piqa",), alpha=(0.7,), seeds="0-11", confidence=0.75, margins=(0.0, 0.02, 0.05),
                     Vs=(1e-3, 1e-5), cs=(0.5,), validate_seeds="100-111")  # fmt: skip
    plan, candidates = run_plan(cfg, small_trace)
    table = candidates["piqa"]
    # meeting: the lower bound on the share of orders and the tolerance bound both keep the promise
    kept = (table["p_meet_lower"] >= 0.75) & (table["tolerance_bound"] >= 0.7 - 1e-12)
    assert table["meets"].to_list() == kept.to_list() and (table["p_meet_lower"] <= table["p_meet"]).all()
    # every family searched: MESS+ (margin x V, c fixed), each single model, each deployable router per margin
    families = dict(table.group_by("family").len().iter_rows())
    assert families["messplus"] == 3 * 2 and families["single"] == 3
    assert families["calibrated-mix"] == families["routellm"] == families["routerdc"] == 3
    assert "educated" not in families and "routellm-paper" not in families  # they know more than a deployed router
    assert set(plan["family"]) == set(families)  # one row per family: its best
    (pick,) = plan.filter(pl.col("pick")).iter_rows(named=True)
    assert pick["verdict"] == MET and pick["meets"]
    assert pick["cost_per_request"] == pytest.approx(table.filter(pl.col("meets"))["cost_per_request"].min())
    for r in plan.iter_rows(named=True):  # a family's best: its cheapest that meets, else none of it meets
        mine = table.filter(pl.col("family") == r["family"])
        if r["meets"]:
            assert r["cost_per_request"] == pytest.approx(mine.filter(pl.col("meets"))["cost_per_request"].min())
        else:
            assert not mine["meets"].any()
    singles = table.filter(pl.col("family") == "single", pl.col("meets"))
    if singles.height:
        assert pick["saving_vs_single"] == pytest.approx(
            1 - pick["cost_per_request"] / singles["cost_per_request"].min()
        )
    assert 0 <= pick["p_meet_validated"] <= 1 and pick["validate_seeds"] == 12 and pick["cost_per_request_stream"] > 0
    assert set(cfg.planning()).isdisjoint(cfg.validation())  # fresh seeds never planned on
    T = len(to_arrays(load_benches(small_trace, ["piqa"])["piqa"], "piqa").satisfied)
    assert pick["by"] == pick["horizon"] == (T - round(0.2 * T)) // 2  # default deadline: half the scored stream


def cheap_mid_trace(path):
    """Three models: a cheap one far below alpha, a mid one at 95% for a tenth of the largest's cost, and the
    largest at 96%: MESS+ pays the whole zoo on every exploration, so it cannot beat the mid model alone."""
    rng = np.random.default_rng(0)
    T, acc, cost = 400, (0.3, 0.95, 0.96), (1.0, 10.0, 1000.0)
    sat = (rng.random((T, 3)) < np.array(acc)).astype(np.int8)
    df = pl.DataFrame({
        "bench": "toy", "doc_id": np.repeat(np.arange(T), 3).astype(str),
        "text": [f"request {i}" for i in np.repeat(np.arange(T), 3)], "model": ["small", "mid", "large"] * T,
        "satisfied": sat.ravel(), "energy_j": np.tile(cost, T), "energy_source": "synthetic",
        "features": pl.Series(np.repeat(rng.standard_normal((T, 4)), 3, axis=0).tolist(), dtype=pl.List(pl.Float32)),
    })  # fmt: skip
    write_trace(Trace(df, Zoo.from_names(["small", "mid", "large"]), synthetic=True), path)
    return path


def test_where_one_model_meets_cheaply_and_mess_cannot_beat_it_the_plan_is_that_model(tmp_path):
    trace = cheap_mid_trace(tmp_path / "toy.parquet")
    cfg = PlanConfig(alpha=(0.9,), seeds="0-39", Vs=(1e-3, 1e-2), cs=(0.1,), margins=(0.0, 0.02))
    plan, _ = run_plan(cfg, trace)
    (pick,) = plan.filter(pl.col("pick")).iter_rows(named=True)
    assert pick["method"] == "single:mid" and pick["family"] == "single" and pick["saving_vs_single"] == 0
    mess_best = plan.filter(pl.col("family") == "messplus").row(0, named=True)
    assert mess_best["cost_per_request"] > pick["cost_per_request"]  # MESS+ itself could keep it, only dearer
    assert pick["cost_per_request_stream"] == pytest.approx(10.0)


def test_seed_lists_are_ranges_or_lists_and_never_overlap():
    cfg = PlanConfig(seeds="0-39", validate_seeds="100,101,105")
    assert cfg.planning() == tuple(range(40)) and cfg.validation() == (100, 101, 105)
    cfg.check_seeds()
    for seeds, fresh, message in (
        ("0-39", "39-50", "shares seed 39 with --seeds"),
        ("5-1", "", "FIRST is above LAST"),
        ("0-1000000000", "", "1000000001 seeds, at most"),
        ("0,1,1", "", "values repeat"),
        ("a-b", "", "expected FIRST-LAST or a comma list"),
        ("0-9", "", "names 10 orders, too few"),
    ):
        with pytest.raises(UserError, match=message):
            PlanConfig(seeds=seeds, validate_seeds=fresh).check_seeds()


def test_an_sla_past_every_candidate_is_out_of_reach_after_raising_exploration(small_trace):
    """Nothing of any family meets: c doubles up to --max-c, every c is dropped after the first quarter of the
    orders (too many failures for a setting that could meet), and the verdict is infeasible."""
    cfg = PlanConfig(benches=("piqa",), alpha=(0.99,), seeds="0-39", margins=(0.0,), Vs=(1e-5,), cs=(0.1,), max_c=0.4)
    plan, candidates = run_plan(cfg, small_trace)
    table = candidates["piqa"]
    assert set(plan["verdict"]) == {INFEASIBLE} and not plan["pick"].any() and not table["meets"].any()
    mess_runs = table.filter(pl.col("family") == "messplus")
    assert sorted(mess_runs["c"].to_list()) == [0.1, 0.2, 0.4]
    assert (mess_runs["n"] == 10).all()  # screened out on 40 / 4 orders
    assert (table.filter(pl.col("family") == "single")["n"] == 40).all()  # the routers are cheap: every order


def test_a_candidate_replayed_on_its_planning_seeds_gives_its_planned_figures(small_trace):
    """The pick's check on fresh seeds replays exactly the setting planned: on the planning seeds themselves it
    gives each family's best its planned share and cost (an online rival's one V of several, MESS+'s one c)."""
    cfg = PlanConfig(benches=("piqa",), alpha=(0.7,), seeds="0-7", confidence=0.75, margins=(0.0, 0.05),
                     Vs=(1e-3, 1e-5), cs=(0.5, 2.0))  # fmt: skip
    plan, _ = run_plan(cfg, small_trace)
    trace = load_benches(small_trace, ["piqa"])["piqa"]
    full = load(sweep_config(cfg, "piqa", (0.7,), cfg.planning()), trace, "piqa")
    again = replace(cfg, validate_seeds=cfg.seeds)
    assert {"messplus", "ts-queue", "primal-dual", "single"} <= set(plan["family"])
    for best in plan.iter_rows(named=True):
        out = replayed(again, trace, full, best, checkpoints(best["by"], full.n_stream, None), best["alpha"])
        assert out["p_meet_validated"] == pytest.approx(best["p_meet"]), best["method"]
        assert out["cost_per_request_validated"] == pytest.approx(best["cost_per_request"]), best["method"]


def test_a_stream_cut_at_the_deadline_decides_exactly_as_the_whole_one(small_trace):
    """The planner simulates only the requests up to its last checkpoint: running satisfaction there, and the cost
    of the requests up to it, are the whole stream's."""
    trace = load_benches(small_trace, ["piqa"])["piqa"]
    alpha = resolve_alphas(to_arrays(trace, "piqa").satisfied.mean(0), ("mid",), "piqa")[0]
    cfg = PlanConfig(Vs=(1e-3, 1e-5), cs=(0.5, 2.0), seeds="0-3")
    scfg = sweep_config(cfg, "piqa", (alpha, alpha + 0.02), cfg.planning())
    b = load(scfg, trace, "piqa")
    at = np.array([b.n_stream // 3, b.n_stream // 2])
    whole, cut = outcomes(scfg, b, at), outcomes(scfg, up_to(b, int(at[-1])), at)
    assert whole["running"].to_list() == cut["running"].to_list()
    np.testing.assert_allclose(whole["cost"], cut["cost"], rtol=1e-12)  # every request up to the deadline
    assert not np.allclose(whole["cost_stream"], cut["cost_stream"])  # and the stream as far as it ran


def test_a_trajectory_that_explores_every_request_decides_the_same_untrained(small_trace):
    """The planner does not train a predictor no decision reads (c so large that every request is explored): its
    runs decide, satisfy and cost exactly what they do with the trained predictor."""
    trace = load_benches(small_trace, ["piqa"])["piqa"]
    cfg = PlanConfig(Vs=(1e-3,), cs=(0.5, 1e3), seeds="0-2")
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
    PlanConfig(seeds="0-31").check_seeds()
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


def test_a_plan_after_a_sweep_with_the_same_cache_embeds_nothing(small_trace, tiny_modernbert, tmp_path, monkeypatch):
    """--cache-dir DIR and MESSPLUS_CACHE=DIR name the same folder, in `sim sweep` and `sim plan` alike."""
    import messplus.sim.embed as embed
    from messplus.sim.config import SweepConfig
    from messplus.sim.sweep import run_sweep

    computed = []
    real = embed.compute
    monkeypatch.setattr(embed, "compute", lambda texts, *a, **k: computed.append(len(texts)) or real(texts, *a, **k))
    cache = tmp_path / "cache"
    sweep = SweepConfig(benches=("sciq",), seeds=(1,), methods=("messplus",), encoder=tiny_modernbert,
                        cache_dir=str(cache))  # fmt: skip
    run_sweep(sweep, small_trace)
    assert computed and sum(computed) > 0  # the sweep embedded the texts
    computed.clear()
    plan = PlanConfig(benches=("sciq",), seeds="0-3", confidence=0.5, Vs=(1e-3,), cs=(0.5,), margins=(0.0,),
                      encoder=tiny_modernbert, cache_dir=str(cache))  # fmt: skip
    run_plan(plan, small_trace)
    monkeypatch.setenv("MESSPLUS_CACHE", str(cache))
    run_plan(PlanConfig(**{**plan.__dict__, "cache_dir": None}), small_trace)
    assert computed == []  # neither plan embedded a text
    assert embed.default_cache_dir() == cache
