import json
import pickle

import polars as pl
import pyarrow.parquet as pq
import pytest

from messplus.traces.io import read_trace
from messplus.traces.schema import META_KEY
from messplus.traces.zoo import load_zoo
from tests.conftest import cli


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for f in fragments:
        assert f in lines[0]


def corrupt(small_trace, tmp_path, mutate):
    """A trace file whose data is changed behind the writer's back (metadata kept)."""
    table = pq.read_table(small_trace)
    df = mutate(pl.from_arrow(table))
    path = tmp_path / "bad.parquet"
    pq.write_table(df.to_arrow().replace_schema_metadata(table.schema.metadata), path)
    return path


def test_truncated_parquet(small_trace, tmp_path):
    path = tmp_path / "cut.parquet"
    path.write_bytes(small_trace.read_bytes()[:5000])
    assert_one_line_error(cli("traces", "info", str(path)), "cut.parquet", "not a readable Parquet file")


def test_missing_column(small_trace, tmp_path):
    path = corrupt(small_trace, tmp_path, lambda df: df.drop("model"))
    assert_one_line_error(cli("traces", "validate", str(path)), "bad.parquet", "missing column 'model'")


def test_nan_in_satisfied(small_trace, tmp_path):
    nan_row = lambda df: df.with_columns(  # noqa: E731
        pl.when(pl.int_range(pl.len()) == 7).then(float("nan")).otherwise(pl.col("satisfied")).alias("satisfied")
    )
    path = corrupt(small_trace, tmp_path, nan_row)
    assert_one_line_error(cli("traces", "validate", str(path)), "bad.parquet", "column 'satisfied' row 7", "not 0 or 1")


def test_unknown_model_in_zoo_file(shared, tmp_path):
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[models]]\nname = "claude-v1"\n[[models]]\nname = "gpt-5"\n')
    src = shared / "routerbench-11" / "arc_challenge_test.csv"
    result = cli("traces", "import", "wide", str(src), "--zoo", str(zoo), "--out", str(tmp_path / "o.parquet"))
    assert_one_line_error(result, "unknown model 'gpt-5'")
    assert not (tmp_path / "o.parquet").exists()


def test_unknown_model_in_trace_metadata(small_trace, tmp_path):
    table = pq.read_table(small_trace)
    meta = json.loads(table.schema.metadata[META_KEY])
    meta["zoo"] = meta["zoo"][:2]
    path = tmp_path / "bad.parquet"
    pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(meta)}), path)
    assert_one_line_error(cli("traces", "info", str(path)), "unknown model 'llama-3.3-70b'")


@pytest.mark.parametrize("name", ["trace.pkl", "trace.parquet"])
def test_pickle(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(pickle.dumps([1, 2, 3]))
    assert_one_line_error(cli("traces", "info", str(path)), "refusing to load a pickle", "to_parquet")


def test_info_prints_requests_models_accuracy_and_cost(small_trace):
    result = cli("traces", "info", str(small_trace))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(synthetic trace)" in out and "boolq" in out and "llama-3.3-70b" in out
    df = pl.read_parquet(small_trace).filter(pl.col("bench") == "boolq")
    acc = 100 * df.filter(pl.col("model") == "llama-3.1-8b")["satisfied"].mean()
    energy = df.filter(pl.col("model") == "llama-3.1-8b")["energy_j"].mean()
    n = df["doc_id"].n_unique()
    assert f"{acc:.2f}" in out and f"{energy:.4g}" in out and str(n) in out
    assert "e:synthetic" in out


def test_import_all_shared_traces_via_cli(shared, tmp_path):
    out = tmp_path / "q.parquet"
    result = cli("traces", "import", "messplus", str(shared / "qwen2-zoo"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "averaged energy_j, latency_s" in result.stdout
    info = cli("traces", "info", str(out))
    assert "social_iqa" in info.stdout and "1954" in info.stdout and "e:imported" in info.stdout


def test_synth_bench_takes_comma_lists_like_sim_sweep(tmp_path):
    out = tmp_path / "s.parquet"
    r = cli("traces", "synth", "--bench", "boolq,piqa", "--bench", "sciq", "--scale", "0.02", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert read_trace(out).benches == ["boolq", "piqa", "sciq"]
    twice = cli("traces", "synth", "--bench", "boolq, piqa,boolq", "--out", str(tmp_path / "t.parquet"))
    assert_one_line_error(twice, "--bench boolq is given twice")


def test_synth_refuses_an_empty_bench_list_and_too_many_features(tmp_path):
    out = str(tmp_path / "s.parquet")
    for empty in ("", " , "):
        assert_one_line_error(cli("traces", "synth", "--bench", empty, "--out", out), "--bench: empty list")
    huge = cli("traces", "synth", "--n-features", str(10**9), "--out", out)
    assert_one_line_error(huge, "--n-features: 1000000000 is outside [1, 65536]")
    assert "65,536" in " ".join(cli("traces", "synth", "--help").stdout.split())
    assert not list(tmp_path.iterdir())


def test_info_checks_every_file_before_printing_any(small_trace, tmp_path):
    (tmp_path / "a.parquet").write_bytes(small_trace.read_bytes())
    (tmp_path / "b.parquet").write_bytes(small_trace.read_bytes()[:5000])
    r = cli("traces", "info", str(tmp_path))
    assert_one_line_error(r, "b.parquet", "not a readable Parquet file")
    assert r.stdout == ""


def test_an_empty_trace_path_is_refused_not_read_as_the_current_folder(small_trace, tmp_path):
    (tmp_path / "a.parquet").write_bytes(small_trace.read_bytes())
    for command in ("info", "validate"):
        assert_one_line_error(cli("traces", command, "", cwd=tmp_path), "the trace path is empty")


def test_import_knows_the_bundled_zoos_that_collect_knows(tmp_path):
    qwen2 = load_zoo("qwen2")  # the name `collect traces --zoo qwen2` takes
    path = tmp_path / "wide.csv"
    cols = {"sample_id": ["a", "b"], "prompt": ["p a", "p b"], "eval_name": ["e", "e"]}
    for k, name in enumerate(qwen2.names):
        cols[name] = [1, k % 2]
        cols[f"{name}|total_cost"] = [0.1 * (k + 1)] * 2
    pl.DataFrame(cols).write_csv(path)
    out = tmp_path / "q.parquet"
    r = cli("traces", "import", "wide", str(path), "--zoo", "qwen2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert read_trace(out).zoo == qwen2  # every entry kept (hf_id, backend, ...), not just the names
    assert qwen2.models[0].hf_id == "Qwen/Qwen2-0.5B-Instruct" and qwen2.models[0].backend == "vllm"
    bad = cli("traces", "import", "wide", str(path), "--zoo", "qwen3", "--out", str(tmp_path / "q3.parquet"))
    assert_one_line_error(bad, "qwen3: zoo file not found", "bundled zoos: paper-llama, qwen2")
    again = cli("traces", "import", "wide", str(path), "--zoo", "qwen2", "--out", str(out))  # no silent replacing
    assert_one_line_error(again, "q.parquet: a file is already there; pass --overwrite")
    assert (
        cli("traces", "import", "wide", str(path), "--zoo", "qwen2", "--out", str(out), "--overwrite").returncode == 0
    )


def test_import_lmeval_missing_folder_is_one_line(tmp_path):
    r = cli("traces", "import", "lmeval", str(tmp_path / "nope"), "--out", str(tmp_path / "o.parquet"))
    assert_one_line_error(r, "nope: folder not found")
