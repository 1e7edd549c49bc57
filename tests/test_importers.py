import csv
import json
import math
import pickle
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from messplus.common import UserError
from messplus.traces.dense import to_arrays
from messplus.traces.importers.lmeval import import_lmeval, short_name
from messplus.traces.importers.messplus import import_messplus
from messplus.traces.importers.wide import import_wide
from messplus.traces.io import read_trace, write_trace

TIERS = ("xsmall", "small", "medium", "large")


def messplus_records(n=4, repeat=(1,)):
    recs = []
    for i in list(range(n)) + list(repeat):
        r = {"Unnamed: 0": float("nan"), "doc_id": float(i), "input_text": f"question {i}", "benchmark_name": "toy"}
        for j, t in enumerate(TIERS):
            r[f"label_{t}"] = float((i + j) % 2)
            r[f"acc_{t}"] = r[f"label_{t}"]
            r[f"energy_consumption_{t}"] = 10.0 * (j + 1) + (5.0 if i in repeat and len(recs) >= n else 0.0)
            r[f"inference_time_{t}"] = 0.1 * (j + 1)
        recs.append(r)
    return recs


def test_messplus_json_with_nan_tokens_dedupes_and_averages(tmp_path):
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(messplus_records()))  # json.dumps writes bare NaN, like the published files
    assert "NaN" in path.read_text()
    trace, report = import_messplus([path], ["s", "m", "l", "xl"])
    assert trace.zoo.names == ("s", "m", "l", "xl")
    arrays = to_arrays(trace, "toy")
    assert arrays.shape == (4, 4)
    assert arrays.cost("energy_j")[1, 0] == pytest.approx(12.5)  # (10 + 15) / 2 for the repeated doc 1
    assert arrays.cost("energy_j")[0, 0] == pytest.approx(10.0)
    assert any("1 request appeared more than once" in line for line in report)
    assert set(trace.df["energy_source"].unique()) == {"imported"}


def test_messplus_csv_batches_match_json(tmp_path):
    recs = messplus_records(repeat=())
    folder = tmp_path / "toy"
    folder.mkdir()
    for k, part in enumerate((recs[:2], recs[2:])):
        pl.DataFrame(part).write_csv(folder / f"batch_{k}.csv")
    (tmp_path / "toy.json").write_text(json.dumps(recs))
    from_csv = import_messplus([folder], None)[0]
    from_json = import_messplus([tmp_path / "toy.json"], None)[0]
    assert from_csv.zoo.names == TIERS
    a, b = to_arrays(from_csv, "toy"), to_arrays(from_json, "toy")
    np.testing.assert_array_equal(a.satisfied, b.satisfied)
    np.testing.assert_allclose(a.cost("energy_j"), b.cost("energy_j"))


def test_messplus_repeats_keep_every_pass_as_the_reference_replays_them(tmp_path):
    """A folder of CSV batches holding two passes over the same docs: keep makes every row a request (the k-th row
    of a doc as <doc_id>#k), merge the distinct docs; the second pass's energy readings differ."""
    one = messplus_records(n=3, repeat=())
    two = [dict(r, **{f"energy_consumption_{t}": r[f"energy_consumption_{t}"] + 1 for t in TIERS}) for r in one]
    folder = tmp_path / "toy"
    folder.mkdir()
    pl.DataFrame(one).write_csv(folder / "batch_0.csv")
    pl.DataFrame(two).write_csv(folder / "batch_1.csv")
    kept, report = import_messplus([folder], None, repeats="keep")
    merged = import_messplus([folder], None)[0]
    a, b = to_arrays(kept, "toy"), to_arrays(merged, "toy")
    assert a.shape == (6, 4) and b.shape == (3, 4)
    assert list(a.doc_ids) == ["0", "1", "2", "0#2", "1#2", "2#2"]
    assert a.cost("energy_j")[3, 0] == a.cost("energy_j")[0, 0] + 1  # each pass keeps its own reading
    assert b.cost("energy_j")[0, 0] == pytest.approx(a.cost("energy_j")[0, 0] + 0.5)  # merge averages them
    assert any("kept 3 repeated rows" in line for line in report)
    assert kept.provenance["repeats"] == "keep"


def test_messplus_disagreeing_repeats_are_an_error(tmp_path):
    recs = messplus_records()
    recs[-1]["label_large"] = 1.0 - recs[-1]["label_large"]
    (tmp_path / "toy.json").write_text(json.dumps(recs))
    with pytest.raises(UserError, match="doc_id 1: repeated rows disagree on whether 'large' satisfied it"):
        import_messplus([tmp_path / "toy.json"], None)


def test_wide_table_multiline_cells_duplicates_and_empty_cells(tmp_path):
    path = tmp_path / "wide.csv"
    header = ["", "sample_id", "prompt", "eval_name", "big", "tiny", "big|total_cost", "tiny|total_cost"]
    rows = [
        [0, "q0", "['line one\\nline two']", "e", 1, 0, 0.2, 0.01],  # a list literal with an escaped newline
        [1, "q1", "plain\nspans lines", "e", 1, 1, 0.2, 0.01],  # a quoted field over two lines
        [2, "q2", "half row", "e", 1, "", 0.2, 0.01],  # merged with the next row
        [3, "q2", "half row", "e", "", 0, 0.4, 0.03],
        [4, "q3", "no tiny", "e", 0, "", 0.2, ""],  # stays incomplete: dropped
    ]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    trace, report = import_wide(path, None)
    assert trace.zoo.names == ("tiny", "big")  # cost order
    arrays = to_arrays(trace, "e")
    assert arrays.doc_ids.tolist() == ["q0", "q1", "q2"]
    assert arrays.texts[:2] == ["line one\nline two", "plain\nspans lines"]
    np.testing.assert_allclose(arrays.cost("cost_usd")[2], [0.02, 0.3])
    assert any("dropped 1 incomplete requests" in line for line in report)


def test_wide_table_refuses_a_repeated_header_and_a_cost_without_correctness(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("sample_id,prompt,eval_name,big,tiny,big,big|total_cost,tiny|total_cost\nq0,hi,e,1,0,0,0.2,0.1\n")
    with pytest.raises(UserError, match="column 'big' appears twice in the header"):
        import_wide(path, None)
    path.write_text("sample_id,prompt,eval_name,big,big|total_cost,tyni|total_cost\nq0,hi,e,1,0.2,0.1\n")
    with pytest.raises(UserError, match=re.escape("column 'tyni|total_cost' has no correctness column 'tyni'")):
        import_wide(path, ["big"])  # even when the model is not asked for: a misspelt column is a defect


def write_lmeval_samples(folder: Path, task: str, correct: list[int]) -> None:
    folder.mkdir(parents=True)
    with (folder / f"samples_{task}_2026-01-01T00-00-00.000000.jsonl").open("w") as f:
        for i, c in enumerate(correct):
            args = {"gen_args_0": {"arg_0": f"Question {i}?", "arg_1": " yes"}}
            f.write(json.dumps({"doc_id": i, "arguments": args, "filter": "none", "acc": c, "acc_norm": 1 - c}) + "\n")


def test_lmeval_samples_merge_with_metric_choice_and_cost_table(tmp_path):
    write_lmeval_samples(tmp_path / "small" / "org__small", "toy", [1, 0, 0])
    write_lmeval_samples(tmp_path / "large", "toy", [1, 1, 0])
    costs = tmp_path / "costs.csv"
    pl.DataFrame({"model": ["org/small", "large"], "energy_j": [5.0, 50.0]}).write_csv(costs)
    trace, _ = import_lmeval([tmp_path / "small", tmp_path / "large"], None, metric="acc", costs=costs)
    assert trace.zoo.names == ("org/small", "large")  # the model folder's name, un-sanitized
    arrays = to_arrays(trace, "toy")
    np.testing.assert_array_equal(arrays.satisfied, [[1, 1], [0, 1], [0, 0]])
    assert arrays.texts[1] == "Question 1?"
    assert set(trace.df["energy_source"].unique()) == {"estimated"}  # per-model constants are estimates
    auto, _ = import_lmeval([tmp_path / "small", tmp_path / "large"], None)
    assert to_arrays(auto, "toy").satisfied[0, 0] == 0  # auto prefers acc_norm
    assert auto.df["energy_j"].null_count() == auto.df.height  # no cost table, no energy


# --- lm-eval's own layout: <output_path>/<sanitized model name>/samples_<task>_<date>.jsonl + results_<date>.json --


def lm_sanitize(name: str) -> str:
    """lm-eval's folder name for a model name (its utils.sanitize_model_name)."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def lm_sample(doc_id: int, kind: str, ok: int, gen: str = "") -> dict:
    """One line of a samples file as lm-eval 0.4 writes it (EvaluationTracker.save_results_samples)."""
    ctx = f"Question {doc_id}: is the river near the mill?"
    if kind == "mc":  # multiple_choice: one loglikelihood request per choice
        args = {f"gen_args_{i}": {"arg_0": ctx, "arg_1": c} for i, c in enumerate([" yes", " no", " maybe"])}
        resps = [[["-1.5", "False"]] for _ in args]
        metrics = {"acc": ok, "acc_norm": ok}
    else:  # generate_until: context and generation settings, the generated text in resps
        args = {"gen_args_0": {"arg_0": ctx, "arg_1": {"until": ["\n"], "do_sample": False}}}
        resps = [[gen]]
        metrics = {"exact_match": ok}
    return {
        "doc_id": doc_id, "doc": {"question": ctx}, "target": "0", "arguments": args, "resps": resps,
        "filtered_resps": [r[0] for r in resps], "filter": "none", "metrics": list(metrics), "doc_hash": "d",
        "prompt_hash": "p", "target_hash": "t", **metrics,
    }  # fmt: skip


def lm_run(out: Path, model: str, correct: list[int], *, kind: str = "mc", task: str = "toy", n_params: int | None = None,
           date: str = "2026-01-01T00-00-00.000000", results: bool = True, gen: str = "the old mill") -> Path:  # fmt: skip
    """One model's lm-eval --output_path files: samples and (unless `results` is False) the results file."""
    folder = out / lm_sanitize(model)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [lm_sample(i, kind, c, gen) for i, c in enumerate(correct)]
    (folder / f"samples_{task}_{date}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if results:
        config = {"model": "hf", "model_args": {"pretrained": model, "dtype": "float32"}, "batch_size": 1}
        if n_params is not None:
            config["model_num_parameters"] = n_params
        data = {"results": {task: {"alias": task}}, "config": config, "model_name": model,
                "model_name_sanitized": lm_sanitize(model), "model_source": "hf"}  # fmt: skip
        (folder / f"results_{date}.json").write_text(json.dumps(data, indent=2))
    return folder


def test_lmeval_output_path_with_several_models_imports_each_named_from_its_results(tmp_path):
    out = tmp_path / "out"
    lm_run(out, "org/big-7b", [1, 1, 1], n_params=7_000_000_000)
    lm_run(out, "/scratch/ckpt/tiny-x", [0, 0, 1], n_params=1_000_000)
    lm_run(out, "org/small-1b", [1, 0, 1], n_params=1_000_000_000)
    assert (out / "__scratch__ckpt__tiny-x").is_dir()  # the name lm-eval gives a local path's folder
    trace, report = import_lmeval([out], None)
    assert trace.zoo.names == ("tiny-x", "org/small-1b", "org/big-7b")  # cheapest first by recorded parameters
    assert [m.hf_id for m in trace.zoo.models] == ["/scratch/ckpt/tiny-x", "org/small-1b", "org/big-7b"]
    np.testing.assert_array_equal(to_arrays(trace, "toy").satisfied, [[0, 1, 1], [0, 0, 1], [1, 1, 1]])
    assert any("3 models, cheapest first by the parameter counts" in line for line in report)
    assert any("no token counts" in line for line in report)
    assert trace.df["prompt_tokens"].null_count() == trace.df.height
    renamed, _ = import_lmeval([out], ["s", "m", "l"])  # --models names them in the order found
    assert renamed.zoo.names == ("s", "m", "l") and renamed.zoo.models[0].hf_id == "/scratch/ckpt/tiny-x"


def test_lmeval_names_without_a_results_file_and_from_model_args(tmp_path):
    out = tmp_path / "out"
    lm_run(out, "/tmp/eco/fx/tiny-a", [1, 0], results=False)
    lm_run(out, "Qwen/Qwen2-0.5B", [1, 1], results=False)
    trace, report = import_lmeval([out], None)
    assert trace.zoo.names == ("Qwen/Qwen2-0.5B", "tiny-a")  # un-sanitized folder names, ordered by folder name
    assert any("cheapest first by folder name" in line for line in report)
    older = tmp_path / "older"  # a results file without model_name, model_args as lm-eval's older "k=v,..." text
    folder = lm_run(older, "org/m", [1, 0], results=False)
    (folder / "results_2026-01-01T00-00-00.000000.json").write_text(
        json.dumps({"config": {"model": "hf", "model_args": "pretrained=org/other,dtype=float32"}})
    )
    assert import_lmeval([older], None)[0].zoo.names == ("org/other",)
    assert short_name("/home/u/.cache/huggingface/hub/models--Qwen--Qwen2-0.5B/snapshots/abc123") == "Qwen/Qwen2-0.5B"
    assert short_name("data/models/tiny-b/") == "tiny-b" and short_name("org/model") == "org/model"


def test_lmeval_keeps_the_newest_run_per_task_and_tells(tmp_path):
    out = tmp_path / "out"
    lm_run(out, "org/a", [0, 0], date="2026-01-01T00-00-00.000000")
    lm_run(out, "org/a", [1, 1], date="2026-02-01T00-00-00.000000")
    trace, report = import_lmeval([out], None)
    assert to_arrays(trace, "toy").satisfied[:, 0].tolist() == [1, 1]
    assert any("1 older not read" in line for line in report)


@pytest.mark.parametrize(
    ("build", "args", "expect"),
    [
        (lambda out: None, ["nope"], "nope: folder not found"),
        (lambda out: (out / "f.txt").write_text("x"), ["f.txt"], "not a folder"),
        (lambda out: None, ["."], "no lm-eval samples_<task>_<date>.jsonl files"),
        (
            lambda out: (lm_run(out, "/a/tiny", [1]), lm_run(out, "/b/tiny", [0])),
            ["."],
            "two model folders are both named 'tiny'",
        ),
        (lambda out: lm_run(out, "org/a", [1]), [".", "org__a"], "this model folder is given twice"),
        (
            lambda out: (lm_run(out, "org/a", [1]), lm_run(out / "org__a", "org/b", [1])),
            ["org__a"],
            "holds samples files itself and in model folders below it",
        ),
        (
            lambda out: (
                lm_run(out, "org/a", [1]),
                (out / "org__a" / "results_2026-03-01T00-00-00.000000.json").write_text('{"model_name": "org/b"}'),
            ),
            ["."],
            "results files record different models (org/a, org/b)",
        ),
        (
            lambda out: (lm_run(out, "org/a", [1]), lm_run(out, "org/b", [0])),
            [".", "--models", "x"],
            "1 model names for 2 folders",
        ),
    ],
)
def test_lmeval_layout_problems_are_one_line(tmp_path, build, args, expect):
    out = tmp_path / "out"
    out.mkdir()
    build(out)
    paths = [out / a for a in args if not a.startswith("--")]
    names = [args[args.index("--models") + 1]] if "--models" in args else None
    if names:
        paths = [out]
    with pytest.raises(UserError, match=re.escape(expect)):
        import_lmeval(paths, names)


def test_lmeval_token_counts_with_a_tokenizer_make_token_costs(tmp_path, monkeypatch):
    from messplus.collect.quickcheck import tiny_tokenizer
    from messplus.traces import hub

    def probed(endpoint):
        raise AssertionError(f"a local tokenizer folder probed the hub at {endpoint}")

    monkeypatch.setattr(hub, "_reachable", probed)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub.offline.cache_clear()

    tok_dir = tmp_path / "tok"
    tok = tiny_tokenizer(tok_dir)
    out = tmp_path / "out"
    for model, n in (("org/small", 10), ("org/large", 20)):
        lm_run(out, model, [1, 0], kind="mc", task="mc", n_params=n)
        lm_run(out, model, [0, 1], kind="gen", task="gen", n_params=n, gen=f"the old mill {model}")
    trace, report = import_lmeval([out], None, tokenizer=str(tok_dir))
    n = lambda text: len(tok.encode(text, add_special_tokens=False))  # noqa: E731
    df = trace.df.sort("bench", "model", "doc_id")
    ctx = "Question 1: is the river near the mill?"
    mc = df.filter((pl.col("bench") == "mc") & (pl.col("doc_id") == "1")).row(0, named=True)
    assert mc["prompt_tokens"] == sum(n(ctx + c) for c in (" yes", " no", " maybe")) and mc["completion_tokens"] == 0
    gen = df.filter((pl.col("bench") == "gen") & (pl.col("model") == "org/large") & (pl.col("doc_id") == "1"))
    assert gen.row(0, named=True)["prompt_tokens"] == n(ctx)
    assert gen.row(0, named=True)["completion_tokens"] == n("the old mill org/large") > 0
    arrays = to_arrays(trace, "gen")  # what `sim sweep --cost tokens` replays
    np.testing.assert_array_equal(
        arrays.cost("tokens")[1], [n(ctx) + n("the old mill org/small"), n(ctx) + n("the old mill org/large")]
    )
    assert any("tokens counted with" in line for line in report)
    with pytest.raises(UserError, match="3 tokenizers for 2 models"):
        import_lmeval([out], None, tokenizer=f"{tok_dir},{tok_dir},{tok_dir}")
    with pytest.raises(UserError, match=r"--tokenizer for org/small: .*nowhere: folder not found"):
        import_lmeval([out], None, tokenizer=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match=r"--tokenizer model: .* has no lm-eval results file"):
        bare = tmp_path / "bare"
        lm_run(bare, "org/c", [1], results=False)
        import_lmeval([bare], None, tokenizer="model")


def test_pickles_are_refused_with_a_conversion_hint(tmp_path):
    path = tmp_path / "trace.csv"  # the content, not the name, gives it away
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UserError, match=r"refusing to load a pickle.*to_parquet"):
        import_wide(path, None)


# --- the real published traces in ../shared ---------------------------------------------------------------


def source_figures_messplus(path: Path) -> dict[str, tuple[float, float]]:
    """Per tier: mean label and mean energy over unique doc_ids (repeats averaged), straight from the JSON."""
    records = json.loads(path.read_text())
    by_doc = defaultdict(list)
    for r in records:
        by_doc[r["doc_id"]].append(r)
    out = {}
    for t in TIERS:
        labels = [rs[0][f"label_{t}"] for rs in by_doc.values()]
        energy = [sum(r[f"energy_consumption_{t}"] for r in rs) / len(rs) for rs in by_doc.values()]
        out[t] = (sum(labels) / len(labels), sum(energy) / len(energy))
    return out


def test_every_shared_messplus_trace_imports_with_source_figures(shared, tmp_path):
    files = sorted((shared / "qwen2-zoo").glob("*.json"))
    assert len(files) == 8
    trace, report = import_messplus(files, None)
    back = read_trace(write_trace(trace, tmp_path / "qwen2.parquet"))
    for f in files:
        arrays = to_arrays(back, f.stem)
        expect = source_figures_messplus(f)
        for m, t in enumerate(TIERS):
            assert arrays.satisfied[:, m].mean() == pytest.approx(expect[t][0], abs=1e-12)
            assert arrays.cost("energy_j")[:, m].mean() == pytest.approx(expect[t][1], rel=1e-12)
    assert any("social_iqa.json: 1954 requests appeared more than once" in line for line in report)


def test_shared_routerbench_table_imports_with_source_figures(shared, tmp_path):
    path = shared / "routerbench-11" / "arc_challenge_test.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    models = [c[: -len("|total_cost")] for c in rows[0] if c.endswith("|total_cost")]
    merged: dict[str, dict] = defaultdict(dict)
    for r in rows:  # the documented rule: merge repeats cell by cell, then keep complete requests
        for m in models:
            for col in (m, m + "|total_cost"):
                if r[col] != "":
                    merged[r["sample_id"]].setdefault(col, []).append(float(r[col]))
    complete = {k: v for k, v in merged.items() if all(m in v and m + "|total_cost" in v for m in models)}
    trace, _ = import_wide(path, None)
    back = read_trace(write_trace(trace, tmp_path / "rb.parquet"))
    arrays = to_arrays(back, "arc-challenge")
    assert arrays.shape == (len(complete), 11)
    for j, m in enumerate(arrays.models):
        acc = sum(v[m][0] for v in complete.values()) / len(complete)
        cost = sum(sum(v[m + "|total_cost"]) / len(v[m + "|total_cost"]) for v in complete.values()) / len(complete)
        assert arrays.satisfied[:, j].mean() == pytest.approx(acc, abs=1e-12)
        assert arrays.cost("cost_usd")[:, j].mean() == pytest.approx(cost, rel=1e-9)
    means = arrays.cost("cost_usd").mean(0)
    assert np.all(np.diff(means) >= 0) and not math.isnan(means.sum())  # zoo in cost order


def test_dense_arrays_number_requests_by_first_appearance_whatever_the_row_order():
    from messplus.traces.io import Trace
    from messplus.traces.synth import synth_trace

    trace = synth_trace(["boolq", "piqa"], n_features=3, scale=0.02)
    shuffled = Trace(trace.df.sample(fraction=1.0, shuffle=True, seed=7), trace.zoo, trace.synthetic)
    a, b = to_arrays(trace, "piqa"), to_arrays(shuffled, "piqa")
    rows = shuffled.df.filter(pl.col("bench") == "piqa")
    assert list(b.doc_ids) == list(rows["doc_id"].unique(maintain_order=True))  # first appearance, not sorted
    assert sorted(b.doc_ids) == sorted(a.doc_ids) and list(b.doc_ids) != list(a.doc_ids)
    at = {d: i for i, d in enumerate(a.doc_ids)}
    same = np.array([at[d] for d in b.doc_ids])  # b's requests in a's order
    np.testing.assert_array_equal(b.satisfied, a.satisfied[same])
    np.testing.assert_array_equal(b.features, a.features[same])
    assert b.costs.keys() == a.costs.keys() and b.texts == [a.texts[i] for i in same]
    for name in a.costs:
        np.testing.assert_array_equal(b.cost(name), a.cost(name)[same])
    row = rows.row(5, named=True)  # one row read back from its place: the request's row, the model's column
    i, m = list(b.doc_ids).index(row["doc_id"]), trace.zoo.names.index(row["model"])
    assert b.satisfied[i, m] == row["satisfied"] and b.cost("energy_j")[i, m] == row["energy_j"]
