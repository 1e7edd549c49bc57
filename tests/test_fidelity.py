"""MESS+ keeps its promise or says why: presets per encoder, divergence made visible, paper accounting."""

import numpy as np
import polars as pl
import pytest

from messplus.sim import presets
from messplus.sim.config import SweepConfig
from messplus.sim.metrics import ranks_agree
from messplus.sim.sweep import run_sweep
from tests.conftest import cli

DIVERGING = dict(lr=1.0, momentum=0.95, epochs=3, clip_norm=0.0, input_dropout=0.0)  # far too large, unclipped


def test_ranks_agree_judges_only_clear_gaps():
    y = np.array([[0, 1, 1]] * 60 + [[0, 0, 1]] * 40)  # explored accuracies 0, 0.6, 1
    assert ranks_agree(np.array([0.1, 0.5, 0.9]), y)
    assert not ranks_agree(np.array([0.9, 0.5, 0.1]), y)
    close = np.array([[1, 1]] * 50 + [[0, 1]] * 1 + [[0, 0]] * 49)  # 0.50 vs 0.51: within 1/sqrt(100)
    assert ranks_agree(np.array([0.6, 0.4]), close) is None
    assert ranks_agree(np.array([0.6, 0.4]), close[:0]) is None


def test_presets_follow_the_encoder():
    cfg = SweepConfig()
    assert cfg.family("features") == "features" and cfg.family("minilm") == "minilm"
    assert cfg.family("answerdotai/ModernBERT-base") == "paper" and cfg.family("modernbert") == "paper"
    paper = SweepConfig(preset="paper").predictor("logiqa", SweepConfig(preset="paper").family("minilm"))
    assert (paper.lr, paper.momentum, paper.epochs, paper.clip_norm, paper.input_dropout) == (0.0272, 0.9, 5, 1.0, 0.1)
    assert SweepConfig(lr=0.5).predictor("boolq", "minilm").lr == 0.5  # a flag overrides one field
    assert presets.preset("minilm", "boolq").pooling == "mean"  # MiniLM's own sentence pooling


@pytest.fixture(scope="module")
def two_benches(small_trace):
    base = dict(benches=("boolq", "winogrande"), methods=("messplus",), cs=(1.0,), seeds=(1, 2))
    cases = [("preset", {}), ("big", {**DIVERGING, "head": "paper"}), ("big residual", DIVERGING)]
    return {name: run_sweep(SweepConfig(**base, **kw), small_trace) for name, kw in cases}


def test_a_diverged_predictor_is_flagged_and_a_preset_one_is_not(two_benches):
    """The paper's head with steps far too large diverges; the residual predictor with the same steps is never
    worse than counting, since its diverged head never earns its place."""
    good, bad, guarded = two_benches["preset"], two_benches["big"], two_benches["big residual"]
    assert any("did worse than counting" in w for w in bad.warnings)
    assert not any("did worse than counting" in w for w in guarded.warnings + good.warnings)
    assert (guarded.runs["predictor_bce"] == guarded.runs["base_rate_bce"]).all()
    assert (guarded.runs["head_bce"] > guarded.runs["base_rate_bce"]).all()
    assert good.runs["predictor_rank_ok"].all() and good.runs["predictor_dead"].max() < 0.5
    assert not any("ranks the models against" in w or "dead ReLUs" in w for w in good.warnings)
    # diverged trajectories are chaotic (their rounding decides where they end up): some run ranks them wrongly
    assert (~bad.runs["predictor_rank_ok"]).any()
    assert any("ranks the models against" in w for w in bad.warnings)
    # and it matters: the diverged predictor misses the SLA on some run, the preset one on none
    gap = lambda r: (r.runs["satisfaction"] - r.runs["alpha"]).min()  # noqa: E731
    assert gap(bad) < -0.02 and gap(good) > 0


def test_a_predictor_gone_non_finite_stops_the_run_naming_its_setting(small_trace):
    from messplus.common import UserError

    cfg = SweepConfig(benches=("boolq",), methods=("messplus",), cs=(1.0,), seeds=(1, 2), head="paper",
                      **{**DIVERGING, "lr": 3.0})  # fmt: skip
    with pytest.raises(UserError, match=r"bench boolq, seed \d, c=1, k=0.25: the predictor's predictions went "
                                        r"non-finite \(lr 3, momentum 0.95"):  # fmt: skip
        run_sweep(cfg, small_trace)


def test_paper_accounting_logs_explorations_at_the_previous_exploit_cost(small_trace, tmp_path):
    out = tmp_path / "r"
    r = cli("sim", "sweep", "--traces", str(small_trace), "--bench", "sciq,piqa", "--seeds", "1,2", "--c", "1",
            "--methods", "messplus,single", "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    ours = cli("analysis", "table", str(out), "--format", "csv")
    paper = cli("analysis", "table", str(out), "--format", "csv", "--accounting", "paper")
    assert ours.returncode == paper.returncode == 0, paper.stderr
    again = cli("analysis", "table", str(out), "--format", "csv", "--accounting", "paper")
    assert again.stdout == paper.stdout  # a stable row order
    from io import StringIO

    t_ours, t_paper = (pl.read_csv(StringIO(x.stdout)) for x in (ours, paper))
    assert t_paper["bench"].to_list()[-3:] == ["average"] * 3  # one average row per method, as in Table 2
    # by hand, from steps.parquet: per-step costs, explorations replaced by the last exploit's, scaled to the bench
    runs = pl.read_parquet(out / "runs.parquet").filter(pl.col("method") == "messplus", pl.col("bench") == "sciq")
    steps = pl.read_parquet(out / "steps.parquet").sort("run_id", "t")
    totals, sats = [], []
    for rid, n, n_calib in runs.select("run_id", "n_requests", "n_calib").iter_rows():
        s = steps.filter(pl.col("run_id") == rid)
        spent = (s["running_cost"] * s["t"]).to_numpy()
        cost = np.diff(spent, prepend=0.0)
        logged, last = [], None
        for c, explored in zip(cost, s["explored"], strict=True):
            last = last if explored else c
            logged.append(0.0 if last is None else last)
        totals.append(sum(logged) * 1e-6 * (n + n_calib) / n)
        sats.append(100 * s["running_satisfaction"].to_numpy().mean())
    row = t_paper.filter(pl.col("method") == "messplus", pl.col("bench") == "sciq")
    assert row["cost_MJ_whole_bench"][0] == pytest.approx(np.mean(totals), rel=1e-9)
    assert row["cost_MJ_whole_bench_std"][0] == pytest.approx(np.std(totals, ddof=1), rel=1e-9)  # over seeds
    assert row["satisfaction_pct"][0] == pytest.approx(np.mean(sats), rel=1e-9)
    assert row["seeds_met"][0] == sum(x >= 100 * runs["alpha"][0] for x in sats)  # judged on its own figure
    mess_ours = t_ours.filter(pl.col("method") == "messplus", pl.col("bench") == "sciq")["cost_MJ"][0]
    scale = (runs["n_requests"][0] + runs["n_calib"][0]) / runs["n_requests"][0]
    assert row["cost_MJ_whole_bench"][0] < mess_ours * scale  # explorations logged at an exploit's cost
    single = lambda t, col: t.filter(pl.col("method") == "single:llama-3.2-1b", pl.col("bench") == "sciq")[col][0]  # noqa: E731
    assert single(t_paper, "cost_MJ_whole_bench") == pytest.approx(single(t_ours, "cost_MJ") * scale)  # never explores
    md = cli("analysis", "table", str(out), "--accounting", "paper").stdout
    assert "whole bench" in md.splitlines()[0]  # the header says how the cost was scaled


def test_paper_accounting_refuses_thinned_steps(small_trace, tmp_path):
    out = tmp_path / "r"
    args = ("--bench", "sciq", "--seeds", "1", "--methods", "messplus", "--steps-every", "5", "--out", str(out))
    assert cli("sim", "sweep", "--traces", str(small_trace), *args).returncode == 0
    r = cli("analysis", "table", str(out), "--accounting", "paper")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "--steps-every 1" in r.stderr
