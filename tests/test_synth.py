import numpy as np
import polars as pl
import pytest

from messplus.sim.routers.logistic import fit_logistic
from messplus.traces.dense import to_arrays
from messplus.traces.io import read_trace
from messplus.traces.synth import PAPER_TABLE2, synth_trace

DEMO = "traces/data/demo.parquet"


def test_accuracies_and_energy_match_the_paper_table():
    trace = synth_trace()
    for bench, (n, acc, energy) in PAPER_TABLE2.items():
        a = to_arrays(trace, bench)
        assert a.shape == (n, 3)
        np.testing.assert_allclose(100 * a.satisfied.mean(0), acc, atol=100 / n)
        np.testing.assert_allclose(a.cost("energy_j").mean(0), energy, rtol=1e-9)
        assert a.cost("energy_j").std(0).min() > 0  # energy varies per request


def test_correctness_is_correlated_through_difficulty():
    a = to_arrays(synth_trace(["boolq"]), "boolq")
    s = a.satisfied
    assert s[s[:, 0] == 1, 2].mean() > s[:, 2].mean() + 0.05  # solved by 1B -> usually solved by 70B


def test_features_hold_learnable_but_imperfect_signal():
    a = to_arrays(synth_trace(["arc_easy"]), "arc_easy")
    X, y = a.features, a.satisfied[:, :1]
    predict = fit_logistic(X[:1500], y[:1500])
    p, y_test = predict(X[1500:])[:, 0], y[1500:, 0]
    order = np.argsort(p)
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y_test == 1
    auc = (ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum())
    assert 0.65 < auc < 0.97


def test_shipped_demo_is_the_generator_output_and_marked_synthetic():
    shipped = read_trace(DEMO)
    assert shipped.synthetic and set(shipped.df["energy_source"].unique()) == {"synthetic"}
    fresh = synth_trace(seed=shipped.provenance["seed"], n_features=shipped.provenance["n_features"])
    assert shipped.df.equals(fresh.df)


@pytest.mark.parametrize("bench", ["logiqa", "sciq"])
def test_scale_shrinks_requests(bench):
    df = synth_trace([bench], scale=0.1).df
    assert df["doc_id"].n_unique() == round(PAPER_TABLE2[bench][0] * 0.1)
    assert df.select(pl.col("model").n_unique()).item() == 3
