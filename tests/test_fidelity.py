"""MESS+ keeps its promise or says why: presets per encoder, divergence made visible, paper accounting."""

import numpy as np
import polars as pl
import pytest

from messplus.sim import presets
from messplus.sim.config import SweepConfig
from messplus.sim.metrics import ranks_agree
from messplus.sim.sweep import run_sweep
from tests.conftest import cli

DIVERGING = dict(lr=3.0, momentum=0.95, clip_norm=0.0, input_dropout=0.0)  # steps far too large, nothing clipped


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
    return {
        name: run_sweep(SweepConfig(**base, **kw), small_trace) for name, kw in [("preset", {}), ("big", DIVERGING)]
    }


def test_a_diverged_predictor_is_flagged_and_a_preset_one_is_not(two_benches):
    good, bad = two_benches["preset"], two_benches["big"]
    assert good.runs["predictor_rank_ok"].all() and good.runs["predictor_dead"].max() < 0.5
    assert not any("ranks the models against" in w or "dead ReLUs" in w for w in good.warnings)
    # diverged trajectories are chaotic (their rounding decides where they end up): most runs, and every bench
    assert (~bad.runs["predictor_rank_ok"]).sum() > bad.runs.height / 2
    assert sum("ranks the models against" in w for w in bad.warnings) == 2  # one per bench
    # and it matters: the diverged predictor misses the SLA on some run, the preset one on none
    gap = lambda r: (r.runs["satisfaction"] - r.runs["alpha"]).min()  # noqa: E731
    assert gap(bad) < -0.03 and gap(good) > 0


def test_paper_accounting_logs_explorations_at_the_previous_exploit_cost(small_trace, tmp_path):
    out = tmp_path / "r"
    r = cli("sim", "sweep", "--traces", str(small_trace), "--bench", "sciq", "--seeds", "1,2", "--c", "1",
            "--methods", "messplus,single", "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    ours = cli("analysis", "table", str(out), "--format", "csv")
    paper = cli("analysis", "table", str(out), "--format", "csv", "--accounting", "paper")
    assert ours.returncode == paper.returncode == 0, paper.stderr
    from io import StringIO

    t_ours, t_paper = (pl.read_csv(StringIO(x.stdout)).filter(pl.col("bench") == "sciq") for x in (ours, paper))
    # by hand, from steps.parquet: per-step costs, explorations replaced by the last exploit's
    runs = pl.read_parquet(out / "runs.parquet").filter(pl.col("method") == "messplus")
    steps = pl.read_parquet(out / "steps.parquet").sort("run_id", "t")
    totals, sats = [], []
    for rid in runs["run_id"]:
        s = steps.filter(pl.col("run_id") == rid)
        spent = (s["running_cost"] * s["t"]).to_numpy()
        cost = np.diff(spent, prepend=0.0)
        logged, last = [], None
        for c, explored in zip(cost, s["explored"], strict=True):
            last = last if explored else c
            logged.append(0.0 if last is None else last)
        totals.append(sum(logged) * 1e-6)
        sats.append(100 * s["running_satisfaction"].to_numpy())
    mess_paper = t_paper.filter(pl.col("method") == "messplus")
    assert mess_paper["cost_MJ"][0] == pytest.approx(np.mean(totals), rel=1e-9)
    assert mess_paper["satisfaction_pct"][0] == pytest.approx(np.concatenate(sats).mean(), rel=1e-9)
    assert mess_paper["cost_MJ"][0] < t_ours.filter(pl.col("method") == "messplus")["cost_MJ"][0]  # explorations
    single = t_paper.filter(pl.col("method") == "single:llama-3.2-1b")["cost_MJ"][0]  # never explores: same cost
    assert single == pytest.approx(t_ours.filter(pl.col("method") == "single:llama-3.2-1b")["cost_MJ"][0])


def test_paper_accounting_refuses_thinned_steps(small_trace, tmp_path):
    out = tmp_path / "r"
    args = ("--bench", "sciq", "--seeds", "1", "--methods", "messplus", "--steps-every", "5", "--out", str(out))
    assert cli("sim", "sweep", "--traces", str(small_trace), *args).returncode == 0
    r = cli("analysis", "table", str(out), "--accounting", "paper")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "--steps-every 1" in r.stderr
