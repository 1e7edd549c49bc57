"""Bad inputs and faults, one row per case, across the four CLIs: each answers with exit code 2 and exactly one
stderr line `error: ...`, never a traceback, and leaves every file as it was (hashed before and after, new files
counted too). Every case is checked before any real work starts, so each costs one process start.

The cases run in this process, one after another, in a module fixture (tests.conftest.run_main: the console
script's main() with its argv, stdout, stderr and logging captured, and its working directory); each test then
checks its own case. A process start costs more than most cases (imports of torch, polars, numba), and the CLIs'
own process-level behaviour (a kill, a signal, a broken stdout) is tested separately below with real processes. A
case's folder is its working directory (so a default output would land there and be caught) and holds `file.txt`
(a plain file, for `--out` a file / under a file) and, where a case uses it, `ro/`, a folder nobody may write to
(immutable where the tests run as root, for whom permission bits mean nothing).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from messplus.collect.quickcheck import toy_task
from messplus.sim.results import KEY as RESULTS_KEY
from messplus.sim.results import VERSION as RESULTS_VERSION
from messplus.sim.results import write_checksums
from messplus.traces.io import Trace, write_trace
from messplus.traces.schema import META_KEY
from messplus.traces.synth import synth_trace
from messplus.traces.zoo import Zoo
from tests.conftest import Ran, run_main

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # lm-eval's datasets never reach for the hub here


# --- the shared inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Env:
    """Inputs every case may read (never write): hashed before all cases and after."""

    root: Path
    trace: Path  # tiny synthetic trace: logiqa and sciq, 3 models, 8 features
    results: Path  # a small sweep of that trace (every method, one seed)
    zoo: Path  # a CPU zoo for collect (its models are never loaded: every case fails before)
    task: Path  # a local lm-eval task folder (toyqa)
    no_tokenizer: Path  # an encoder folder with weights but no tokenizer


def _tiny_encoder(path: Path, tokenizer: bool = False) -> Path:
    """A one-layer random ModernBERT, with a word-level tokenizer where asked."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast

    cfg = ModernBertConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, max_position_embeddings=32, pad_token_id=0, cls_token_id=2,
                           sep_token_id=3, bos_token_id=2, eos_token_id=3)  # fmt: skip
    ModernBertModel(cfg).save_pretrained(path)
    if tokenizer:
        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        words = [
            "the",
            "a",
            "bird",
            "town",
            "rain",
            "sat",
            "by",
            "river",
            "and",
            "mill",
            "synthetic",
            "sciq",
            "logiqa",
            "request",
        ]
        tok.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                       sep_token="[SEP]")  # fmt: skip
        fast.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> str:
    return str(_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"), tokenizer=True))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    return make_env(tmp_path_factory.mktemp("shared"))


def make_env(root: Path) -> Env:
    """The shared inputs, built in root (also for benchmarks/bad_inputs_table.py)."""
    from messplus.sim.config import SweepConfig
    from messplus.sim.sweep import run_sweep

    trace = write_trace(synth_trace(["logiqa", "sciq"], scale=0.05), root / "tiny.parquet")
    run_sweep(SweepConfig(benches=("logiqa",), seeds=(1,)), trace).write(root / "results")
    zoo = root / "zoo.toml"
    zoo.write_text(
        '[[models]]\nname = "tiny-a"\nhf_id = "/nowhere/tiny-a"\ndtype = "float32"\n\n'
        '[[models]]\nname = "tiny-b"\nhf_id = "/nowhere/tiny-b"\ndtype = "float32"\n'
    )
    return Env(root, trace, root / "results", zoo, toy_task(root / "task"), _tiny_encoder(root / "no-tokenizer"))


# --- what a case is, and how one runs -----------------------------------------------------------------------

Setup = Callable[[Env, Path], None]


@dataclass(frozen=True)
class Case:
    """One bad input: `args` may name {trace} {results} {zoo} {task} {encoder} (shared inputs), {w} (the case's
    folder), {file} (a plain file in it) and {ro} (a read-only folder in it); `expect` is a fragment of the one
    error line."""

    id: str
    tool: str
    args: tuple[str, ...]
    expect: str
    setup: Setup | None = None
    needs_no_gpu: bool = False  # the case is about a missing GPU

    def argv(self, env: Env, w: Path) -> list[str]:
        names = {
            "trace": env.trace,
            "results": env.results,
            "zoo": env.zoo,
            "task": env.task,
            "encoder": env.no_tokenizer,
            "w": w,
            "file": w / "file.txt",
            "ro": w / "ro",
        }
        return [a.format(**names) for a in self.args]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder below `folder`: its path -> content hash (folders: "dir")."""
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def make_read_only(folder: Path) -> None:
    """A folder no one may create files in: immutable for root (who ignores permission bits), else mode 555."""
    folder.mkdir(exist_ok=True)
    (folder / "keep.txt").write_text("kept\n")
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    else:
        folder.chmod(0o555)


def release(folder: Path) -> None:
    """Undo make_read_only, so the temporary folders can be removed."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
    folder.chmod(0o755)


def prepare(case: Case, env: Env, w: Path) -> list[str]:
    w.mkdir(parents=True)
    (w / "file.txt").write_text("a plain file\n")
    if case.setup is not None:
        case.setup(env, w)
    if any("{ro}" in a for a in case.args):
        make_read_only(w / "ro")
    return case.argv(env, w)


@dataclass
class Outcome:
    result: Ran
    before: dict[str, str]
    after: dict[str, str]


def selected_cases(session) -> list[Case]:
    """The cases of this session's test_bad_input items (all of them, or those -k picked)."""
    params = [getattr(item, "callspec", None) for item in session.items]
    return [p.params["case"] for p in params if p is not None and "case" in p.params]


@pytest.fixture(scope="module")
def outcomes(request, env, tmp_path_factory):
    """Every selected case, in this process; the shared inputs' hashes before and after all of them."""
    chosen = selected_cases(request.session)
    root = tmp_path_factory.mktemp("cases")
    shared_before = snapshot(env.root)
    try:
        argv = {c.id: prepare(c, env, root / c.id) for c in chosen}
        before = {c.id: snapshot(root / c.id) for c in chosen}
        results = {c.id: run_main(c.tool, *argv[c.id], cwd=root / c.id) for c in chosen}
        found = {c.id: Outcome(results[c.id], before[c.id], snapshot(root / c.id)) for c in chosen}
        yield found, shared_before, snapshot(env.root)
    finally:
        for ro in root.glob("*/ro"):
            release(ro)


# --- builders for bad files ---------------------------------------------------------------------------------


def write_text(name: str, text: str | bytes) -> Setup:
    def setup(env: Env, w: Path) -> None:
        path = w / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return setup


def setups(*steps: Setup) -> Setup:
    def setup(env: Env, w: Path) -> None:
        for s in steps:
            s(env, w)

    return setup


def trace_file(name: str = "bad.parquet", rows=None, meta=None, table=None) -> Setup:
    """A trace written behind the writer's back: the shared trace with its rows (a polars function), its metadata
    JSON (a function of the dict, or raw bytes) or its Arrow table changed."""

    def setup(env: Env, w: Path) -> None:
        src = pq.read_table(env.trace)
        df = pl.from_arrow(src)
        arrow = (rows(df) if rows else df).to_arrow()
        arrow = table(arrow) if table else arrow
        raw = src.schema.metadata[META_KEY]
        if meta is not None:
            raw = meta if isinstance(meta, bytes) else json.dumps(meta(json.loads(raw))).encode()
        path = w / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(arrow.replace_schema_metadata({META_KEY: raw}), path)

    return setup


def boolq_trace(n_features: int = 8, models: tuple[str, ...] | None = None, features: bool = True):
    """A second small trace (bench boolq) for folder cases: another zoo, other features or none."""
    trace = synth_trace(["boolq"], scale=0.01, n_features=n_features)
    df, zoo = trace.df, trace.zoo
    if models:
        df = df.with_columns(pl.col("model").replace(dict(zip(zoo.names, models, strict=True))))
        zoo = Zoo.from_names(models)
    return Trace(df if features else df.drop("features"), zoo, synthetic=True)


def folder(*others) -> Setup:
    """A folder `traces/` holding the shared trace and the given other traces."""

    def setup(env: Env, w: Path) -> None:
        (w / "traces").mkdir()
        shutil.copy(env.trace, w / "traces" / "a.parquet")
        for i, other in enumerate(others):
            if other == "copy":
                shutil.copy(env.trace, w / "traces" / f"b{i}.parquet")
            else:
                write_trace(other(), w / "traces" / f"b{i}.parquet")

    return setup


def set_row(col: str, value, row: int = 0, dtype=None):
    """rows -> rows with one cell changed (the column cast to `dtype` first, where given)."""

    def rows(df: pl.DataFrame) -> pl.DataFrame:
        c = pl.col(col).cast(dtype) if dtype is not None else pl.col(col)
        return df.with_columns(pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value)).otherwise(c).alias(col))

    return rows


def not_utf8(arrow: pa.Table) -> pa.Table:
    """The text column with a Latin-1 byte in it, still typed as a string (as a foreign writer may leave it)."""
    texts = [t.encode() for t in arrow.column("text").to_pylist()]
    texts[3] = "café".encode("latin-1")
    raw = pa.array(texts, pa.binary())
    bad = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())
    return arrow.set_column(arrow.schema.get_field_index("text"), "text", bad)


def features_of(change):
    """rows -> rows whose feature lists went through `change` (a function that edits the list of lists)."""

    def rows(df: pl.DataFrame) -> pl.DataFrame:
        feats = df["features"].to_list()
        change(feats)
        return df.with_columns(pl.Series("features", feats, dtype=pl.List(pl.Float32)))

    return rows


def plain_parquet(name: str) -> Setup:
    """The shared trace's rows without the trace metadata."""

    def setup(env: Env, w: Path) -> None:
        pq.write_table(pq.read_table(env.trace).replace_schema_metadata(None), w / name)

    return setup


def cut(name: str, keep: int = 3000) -> Setup:
    """The shared trace cut short, as a crashed copy leaves it."""

    def setup(env: Env, w: Path) -> None:
        (w / name).write_bytes(env.trace.read_bytes()[:keep])

    return setup


INF, NAN = float("inf"), float("nan")


def zoo_meta(field: str, value):
    def meta(m: dict) -> dict:
        m["zoo"][0][field] = value
        return m

    return meta


def validate_case(cid: str, expect: str, **bad) -> Case:
    return Case(f"traces-validate-{cid}", "traces", ("validate", "{w}/bad.parquet"), expect, trace_file(**bad))


TRACE_CONTENT = [
    validate_case("inf-cost", "column 'energy_j' row 5: infinite cost", rows=set_row("energy_j", INF, 5)),
    validate_case("minus-inf-latency", "column 'latency_s' row 2: infinite cost", rows=set_row("latency_s", -INF, 2)),
    validate_case("nan-cost", "column 'energy_j' row 4: NaN cost", rows=set_row("energy_j", NAN, 4)),
    validate_case("negative-cost", "column 'energy_j' row 1: negative cost", rows=set_row("energy_j", -1.0, 1)),
    validate_case("text-not-utf8", "column 'text' holds text that is not valid UTF-8", table=not_utf8),
    validate_case(
        "costs-as-strings",
        "column 'energy_j' has type String, expected numbers",
        rows=lambda df: df.with_columns(pl.col("energy_j").cast(pl.String)),
    ),
    validate_case(
        "satisfied-as-strings",
        "column 'satisfied' has type String",
        rows=lambda df: df.with_columns(pl.col("satisfied").cast(pl.String)),
    ),
    validate_case(
        "text-as-bytes",
        "column 'text' has type Binary, expected UTF-8 text",
        rows=lambda df: df.with_columns(pl.col("text").cast(pl.Binary)),
    ),
    validate_case("metadata-bad-json", "trace metadata is not valid JSON", meta=b"{not json"),
    validate_case("metadata-a-list", "trace metadata is a JSON list", meta=lambda m: [m]),
    validate_case(
        "metadata-no-zoo", "trace metadata has no zoo", meta=lambda m: {k: v for k, v in m.items() if k != "zoo"}
    ),
    validate_case("metadata-zoo-not-list", "trace metadata has no zoo", meta=lambda m: m | {"zoo": {"a": 1}}),
    validate_case("metadata-zoo-gpus-0", "'gpus' must be a non-empty list", meta=zoo_meta("gpus", 0)),
    validate_case("metadata-zoo-dtype", "'dtype' must be one of", meta=zoo_meta("dtype", "float99")),
    validate_case("metadata-schema-v2", "trace schema v2", meta=lambda m: m | {"schema_version": 2}),
    validate_case("metadata-provenance-list", "'provenance' must be an object", meta=lambda m: m | {"provenance": [1]}),
    Case(
        "traces-validate-no-metadata",
        "traces",
        ("validate", "{w}/plain.parquet"),
        "no trace metadata",
        plain_parquet("plain.parquet"),
    ),
    validate_case("zero-rows", "the trace holds no rows", rows=lambda df: df.head(0)),
    validate_case(
        "ragged-features",
        "column 'features' row 7: 9 values, while row 0 has 8",
        rows=features_of(lambda f: f[7].append(1.0)),
    ),
    validate_case(
        "nan-feature",
        "column 'features' row 4: a NaN, infinite or missing value",
        rows=features_of(lambda f: f[4].__setitem__(2, NAN)),
    ),
    validate_case(
        "inf-feature",
        "column 'features' row 5: a NaN, infinite or missing value",
        rows=features_of(lambda f: f[5].__setitem__(0, INF)),
    ),
    validate_case(
        "features-missing-on-a-row",
        "column 'features' row 6: no features",
        rows=features_of(lambda f: f.__setitem__(6, None)),
    ),
    validate_case(
        "empty-feature-lists",
        "an empty feature list",
        rows=features_of(lambda f: f.__setitem__(slice(None), [[] for _ in f])),
    ),
    validate_case("empty-bench-name", "column 'bench' row 0: empty name", rows=set_row("bench", "")),
    validate_case("blank-model-name", "column 'model' row 0: empty name", rows=set_row("model", "  ")),
    validate_case("empty-doc-id", "column 'doc_id' row 3: empty name", rows=set_row("doc_id", "", 3)),
    validate_case("null-text", "column 'text' row 3: empty value", rows=set_row("text", None, 3)),
    validate_case("satisfied-2", "column 'satisfied' row 2: value 2 is not 0 or 1", rows=set_row("satisfied", 2, 2)),
    validate_case("duplicated-row", "duplicated (bench, doc_id, model)", rows=lambda df: pl.concat([df, df.head(1)])),
    validate_case("missing-model-row", "no row for model", rows=lambda df: df.filter(pl.int_range(pl.len()) != 4)),
    validate_case("unknown-model", "unknown model 'gpt-9'", rows=set_row("model", "gpt-9")),
    validate_case(
        "fractional-tokens",
        "is not a whole number of tokens",
        rows=lambda df: df.with_columns(pl.lit(10.5).alias("prompt_tokens")),
    ),
    validate_case("unknown-source", "'guessed' is not one of", rows=set_row("energy_source", "guessed")),
    validate_case(
        "metadata-synthetic-a-word", "'synthetic' must be true or false", meta=lambda m: m | {"synthetic": "yes"}
    ),
    Case(
        "traces-info-inf-cost",
        "traces",
        ("info", "{w}/bad.parquet"),
        "infinite cost",
        trace_file(rows=set_row("cost_usd", INF, 0, pl.Float64)),
    ),
    Case(
        "traces-info-text-not-utf8",
        "traces",
        ("info", "{w}/bad.parquet"),
        "not valid UTF-8",
        trace_file(table=not_utf8),
    ),
]

TRACE_FILES = [
    Case(
        "traces-info-truncated",
        "traces",
        ("info", "{w}/cut.parquet"),
        "not a readable Parquet file",
        cut("cut.parquet"),
    ),
    Case(
        "traces-info-empty-file",
        "traces",
        ("info", "{w}/e.parquet"),
        "not a readable Parquet file",
        write_text("e.parquet", b""),
    ),
    Case(
        "traces-info-text-file",
        "traces",
        ("info", "{w}/t.parquet"),
        "not a readable Parquet file",
        write_text("t.parquet", "bench,doc_id\nx,1\n"),
    ),
    Case(
        "traces-info-pickle",
        "traces",
        ("info", "{w}/t.pkl"),
        "refusing to load a pickle",
        write_text("t.pkl", b"\x80\x04K\x01."),
    ),
    Case("traces-info-missing-file", "traces", ("info", "{w}/nope.parquet"), "trace file not found"),
    Case(
        "traces-info-empty-folder",
        "traces",
        ("info", "{w}/empty"),
        "folder holds no .parquet trace files",
        lambda env, w: (w / "empty").mkdir(),
    ),
    Case("traces-frob-no-such-command", "traces", ("frobnicate",), "No such command 'frobnicate'"),
    Case("traces-info-missing-argument", "traces", ("info",), "Missing argument"),
    Case("traces-info-unknown-option", "traces", ("info", "{trace}", "--bogus"), "No such option: --bogus"),
    Case(
        "traces-info-folder-with-a-bad-file",  # every file is read before any table is printed
        "traces",
        ("info", "{w}/traces"),
        "not a readable Parquet file",
        setups(folder(), cut("traces/b.parquet")),
    ),
    Case("traces-validate-empty-path", "traces", ("validate", ""), "the trace path is empty"),
]

# the same folder problems through each reader of `--traces`: traces validate, sim sweep, sim embed
FOLDERS = {
    "bench-in-two-files": ("bench 'logiqa' is in both", folder("copy")),
    "two-zoos": ("have different zoos", folder(lambda: boolq_trace(models=("x", "y", "z")))),
    "features-and-none": ("have different features", folder(lambda: boolq_trace(features=False))),
    "feature-widths": ("(4 features vs 8 features)", folder(lambda: boolq_trace(n_features=4))),
}
SWEEP = (
    "sweep",
    "--traces",
    "{trace}",
    "--bench",
    "logiqa",
    "--seeds",
    "1",
    "--methods",
    "messplus",
    "--out",
    "{w}/out",
)
EMBED = ("embed", "--traces", "{trace}", "--bench", "logiqa", "--cache-dir", "{w}/cache", "--device", "cpu")
TRACE_FOLDERS = [
    Case(f"{tool}-{name}", tool.split("-")[0], (*args, "{w}/traces"), expect, setup)
    for name, (expect, setup) in FOLDERS.items()
    for tool, args in (
        ("traces-validate", ("validate",)),
        ("sim-sweep", ("sweep", *SWEEP[5:], "--traces")),  # every bench: the files must replay together
        ("sim-embed", ("embed", *EMBED[5:], "--traces")),
    )
    if tool != "sim-embed" or name == "two-zoos"
]


def mp_records(n: int = 4) -> list[dict]:
    """MESS+ reference-format records (four tiers)."""
    recs = []
    for i in range(n):
        r = {"doc_id": float(i), "input_text": f"question {i}", "benchmark_name": "toy"}
        for j, t in enumerate(("xsmall", "small", "medium", "large")):
            r |= {
                f"label_{t}": float((i + j) % 2),
                f"energy_consumption_{t}": 10.0 * (j + 1),
                f"inference_time_{t}": 0.1 * (j + 1),
            }
        recs.append(r)
    return recs


def mp_json(change=None, raw: bytes | None = None) -> Setup:
    """{w}/toy.json: MESS+ records, changed in place by `change(records)`, or raw bytes."""

    def setup(env: Env, w: Path) -> None:
        recs = mp_records()
        if change:
            change(recs)
        (w / "toy.json").write_bytes(raw if raw is not None else json.dumps(recs).encode())

    return setup


def set_record(i: int, **fields):
    return lambda recs: recs[i].update(fields)


def messplus_case(cid: str, expect: str, setup: Setup | None = None, *extra: str) -> Case:
    args = ("import", "messplus", "{w}/toy.json", "--out", "{w}/out.parquet", *extra)
    return Case(f"traces-import-messplus-{cid}", "traces", args, expect, setup or mp_json())


IMPORT_MESSPLUS = [
    messplus_case("not-utf8", "not UTF-8 text", mp_json(raw='[{"input_text": "caf\xe9"}]'.encode("latin-1"))),
    messplus_case("truncated-json", "invalid JSON at line 1", mp_json(raw=b'[{"doc_id": 1.0, ')),
    messplus_case("json-object", "expected a non-empty JSON list of records", mp_json(raw=b'{"doc_id": 1}')),
    messplus_case("empty-list", "expected a non-empty JSON list of records", mp_json(raw=b"[]")),
    messplus_case("records-not-objects", "record 0 is a JSON int, expected an object", mp_json(raw=b"[1, 2]")),
    messplus_case(
        "label-a-string", "column 'label_small' row 1: 'yes' is not a number", mp_json(set_record(1, label_small="yes"))
    ),
    messplus_case(
        "energy-a-string",
        "column 'energy_consumption_large' row 2: 'abc' is not a number",
        mp_json(set_record(2, energy_consumption_large="abc")),
    ),
    messplus_case(
        "doc-id-a-fraction", "column 'doc_id' row 1: 1.5 is not a whole number", mp_json(set_record(1, doc_id=1.5))
    ),
    messplus_case(
        "doc-id-a-word", "column 'doc_id' row 3: 'abc' is not a number", mp_json(set_record(3, doc_id="abc"))
    ),
    messplus_case("energy-infinite", "column 'energy_j' row", mp_json(set_record(0, energy_consumption_small=INF))),
    messplus_case("energy-negative", "negative cost", mp_json(set_record(0, energy_consumption_small=-3.0))),
    messplus_case(
        "empty-bench-name",
        "column 'bench' row 0: empty name",
        mp_json(lambda recs: [r.update(benchmark_name="") for r in recs]),
    ),
    messplus_case("energy-a-list", "records do not form a table", mp_json(set_record(1, energy_consumption_small=[1]))),
    messplus_case(
        "no-input-text", "missing column 'input_text'", mp_json(lambda recs: [r.pop("input_text") for r in recs])
    ),
    messplus_case("no-labels", "missing columns 'label_<tier>'", mp_json(raw=b'[{"doc_id": 1.0, "input_text": "q"}]')),
    messplus_case("unknown-tier", "unknown tier 'huge'", mp_json(set_record(0, label_huge=1.0))),
    messplus_case("models-for-tiers", "2 model names given for 4 tiers", None, "--models", "a,b"),
    messplus_case("models-and-zoo", "give either --models or --zoo", None, "--models", "a,b,c,d", "--zoo", "{zoo}"),
    messplus_case(
        "zoo-yaml-error",
        "cannot parse zoo file",
        setups(mp_json(), write_text("z.yaml", "models: [\n  - name")),
        "--zoo",
        "{w}/z.yaml",
    ),
    messplus_case("out-a-folder", "is a folder; give a file name", None, "--out", "{w}"),
    messplus_case("out-under-a-file", "is a file, not a folder", None, "--out", "{file}/t.parquet"),
    messplus_case("out-read-only", "is not writable", None, "--out", "{ro}/t.parquet"),
    messplus_case("out-not-parquet", "must end in .parquet", None, "--out", "{w}/t.csv"),
    Case(
        "traces-import-messplus-missing",
        "traces",
        ("import", "messplus", "{w}/nope.json", "--out", "{w}/o.parquet"),
        "not found",
    ),
    Case(
        "traces-import-messplus-empty-folder",
        "traces",
        ("import", "messplus", "{w}/d", "--out", "{w}/o.parquet"),
        "holds no MESS+ traces",
        lambda env, w: (w / "d").mkdir(),
    ),
]


def wide_csv(text: str | bytes | None = None, **cells) -> Setup:
    """{w}/wide.csv: a RouterBench-style table (models big and tiny); `cells` replace row 0's values."""
    row = {
        "sample_id": "q0",
        "prompt": "hello",
        "eval_name": "e",
        "big": "1",
        "tiny": "0",
        "big|total_cost": "0.2",
        "tiny|total_cost": "0.01",
    } | cells
    second = "q1,again,e,0,1,0.2,0.01\n"
    body = text if text is not None else ",".join(row) + "\n" + ",".join(map(str, row.values())) + "\n" + second
    return write_text("wide.csv", body)


def wide_case(cid: str, expect: str, setup: Setup | None = None, *extra: str, src: str = "{w}/wide.csv") -> Case:
    args = ("import", "wide", src, "--out", "{w}/out.parquet", *extra)
    return Case(f"traces-import-wide-{cid}", "traces", args, expect, setup or wide_csv())


IMPORT_WIDE = [
    wide_case("not-utf8", "cannot read table", wide_csv(b"sample_id,prompt\nq0,caf\xe9\n")),
    wide_case("correctness-a-word", "column 'big' row 0: 'yes' is not a number", wide_csv(big="yes")),
    wide_case(
        "cost-a-word",
        "column 'tiny|total_cost' row 0: 'cheap' is not a number",
        wide_csv(**{"tiny|total_cost": "cheap"}),
    ),
    wide_case("cost-infinite", "column 'cost_usd' row", wide_csv(**{"big|total_cost": "inf"})),
    wide_case("correctness-2", "is not 0 or 1", wide_csv(big="2")),
    wide_case("no-id-column", "missing column 'id'", None, "--id-col", "id"),
    wide_case("no-model-columns", "no model columns", wide_csv("sample_id,prompt,eval_name\nq0,hi,e\n")),
    wide_case("unknown-model", "unknown model 'huge'", None, "--models", "tiny,huge"),
    wide_case("empty-bench", "column 'bench' row 0: empty name", None, "--bench", ""),
    wide_case("xlsx", "unsupported table format '.xlsx'", write_text("t.xlsx", "x"), src="{w}/t.xlsx"),
    wide_case("pickle", "refusing to load a pickle", write_text("p.csv", b"\x80\x04K\x01."), src="{w}/p.csv"),
    wide_case("missing", "file not found", src="{w}/nope.csv"),
    wide_case("empty-file", "cannot read table", wide_csv("")),
    wide_case(
        "zoo-gpus-0",
        "'gpus' must be a non-empty list",
        setups(wide_csv(), write_text("z.toml", '[[models]]\nname = "tiny"\ngpus = 0\n')),
        "--zoo",
        "{w}/z.toml",
    ),
    wide_case("out-read-only", "is not writable", None, "--out", "{ro}/t.parquet"),
    wide_case(
        "header-twice",
        "column 'big' appears twice in the header",
        wide_csv("sample_id,prompt,eval_name,big,big,big|total_cost\nq0,hi,e,1,0,0.2\n"),
    ),
    wide_case(
        "cost-without-correctness",
        "column 'tiny|total_cost' has no correctness column 'tiny'",
        wide_csv("sample_id,prompt,eval_name,big,big|total_cost,tiny|total_cost\nq0,hi,e,1,0.2,0.01\n"),
    ),
]


def sample(i: int, **change) -> dict:
    """One lm-eval --log_samples record."""
    args = {"gen_args_0": {"arg_0": f"Question {i}?", "arg_1": " yes"}}
    return {"doc_id": i, "arguments": args, "filter": "none", "acc": i % 2, "acc_norm": 1} | change


def lm_samples(body: str | bytes | None = None, drop: str | None = None, **change) -> Setup:
    """{w}/small and {w}/large, one samples file each: the small model's is `body`, or three samples with sample 1
    changed (`drop` removes a field)."""

    def setup(env: Env, w: Path) -> None:
        for model in ("small", "large"):
            rows = [sample(i, **(change if model == "small" and i == 1 else {})) for i in range(3)]
            if drop and model == "small":
                rows[1].pop(drop)
            text = "\n".join(json.dumps(r) for r in rows) + "\n"
            data = body if model == "small" and body is not None else text
            (w / model).mkdir()
            path = w / model / "samples_toy_2026-01-01T00-00-00.000000.jsonl"
            path.write_bytes(data if isinstance(data, bytes) else data.encode())

    return setup


def lmeval_case(cid: str, expect: str, setup: Setup | None = None, *extra: str) -> Case:
    args = ("import", "lmeval", "{w}/small", "{w}/large", "--out", "{w}/out.parquet", *extra)
    return Case(f"traces-import-lmeval-{cid}", "traces", args, expect, setup or lm_samples())


LINES = "\n".join(json.dumps(sample(i)) for i in range(3))
IMPORT_LMEVAL = [
    lmeval_case("not-utf8", "not UTF-8 text", lm_samples(b'{"doc_id": 0, "arguments": "caf\xe9"}\n')),
    lmeval_case(
        "line-a-list",
        "line 2 is a JSON list, expected an object",
        lm_samples(LINES.replace(json.dumps(sample(1)), "[1, 2]")),
    ),
    lmeval_case("line-a-number", "line 1 is a JSON int", lm_samples("3\n" + LINES)),
    lmeval_case("line-not-json", "line 4 is not valid JSON", lm_samples(LINES + '\n{"doc_id": 3, "argu')),
    lmeval_case("no-arguments", "sample 1: no 'arguments' field", lm_samples(drop="arguments")),
    lmeval_case("no-doc-id", "sample 1: no 'doc_id' field", lm_samples(drop="doc_id")),
    lmeval_case("odd-arguments", "'arguments' is neither lm-eval layout", lm_samples(arguments=5)),
    lmeval_case("metric-a-word", "row 1: 'abc' is not a number", lm_samples(acc_norm="abc")),
    lmeval_case("metric-a-list", "row 1: '[1]' is not a number", lm_samples(acc_norm=[1])),
    lmeval_case("metric-2", "value 2.0 is not 0 or 1", lm_samples(acc_norm=2)),
    lmeval_case("metric-missing", "sample 1: no 'acc_norm' field", lm_samples(drop="acc_norm")),
    lmeval_case("metric-not-logged", "no 'f1' field", None, "--metric", "f1"),
    lmeval_case("empty-file", "no samples", lm_samples(b"")),
    lmeval_case("names-for-folders", "1 model names for 2 folders", None, "--models", "a"),
    lmeval_case("unknown-task", "no samples for task 'nope'", None, "--task", "nope"),
    lmeval_case("unknown-filter", "no samples for filter 'strict'", None, "--filter", "strict"),
    lmeval_case(
        "costs-a-word",
        "column 'energy_j' row 1: 'lots' is not a number",
        setups(lm_samples(), write_text("c.csv", "model,energy_j\nsmall,5\nlarge,lots\n")),
        "--costs",
        "{w}/c.csv",
    ),
    lmeval_case(
        "costs-no-model",
        "cost table needs a 'model' column",
        setups(lm_samples(), write_text("c.csv", "who,energy_j\nsmall,5\n")),
        "--costs",
        "{w}/c.csv",
    ),
    lmeval_case(
        "costs-infinite",
        "infinite cost",
        setups(lm_samples(), write_text("c.csv", "model,energy_j\nsmall,inf\nlarge,5\n")),
        "--costs",
        "{w}/c.csv",
    ),
    lmeval_case("costs-missing", "file not found", None, "--costs", "{w}/nope.csv"),
    lmeval_case("out-under-a-file", "is a file, not a folder", None, "--out", "{file}/t.parquet"),
    Case(
        "traces-import-lmeval-no-samples",
        "traces",
        ("import", "lmeval", "{w}/none", "--out", "{w}/o.parquet"),
        "no lm-eval samples_<task>_<date>.jsonl files",
        lambda env, w: (w / "none").mkdir(),
    ),
]


def synth_case(cid: str, expect: str, *args: str) -> Case:
    return Case(f"traces-synth-{cid}", "traces", ("synth", "--bench", "logiqa", *args), expect)


SYNTH = [
    synth_case("scale-0", "--scale: 0.0 is outside (0, 100]", "--scale", "0"),
    synth_case("scale-negative", "--scale: -1.0 is outside (0, 100]", "--scale", "-1"),
    synth_case("scale-nan", "--scale: must be a finite number", "--scale", "nan"),
    synth_case("scale-inf", "--scale: must be a finite number", "--scale", "inf"),
    synth_case("scale-huge", "--scale: 1000.0 is outside (0, 100]", "--scale", "1000"),
    synth_case("scale-a-word", "Invalid value for '--scale'", "--scale", "abc"),
    synth_case("n-features-0", "--n-features: 0 is outside [1, 65536]", "--n-features", "0"),
    synth_case("seed-negative", "--seed: -1 is outside [0, inf)", "--seed", "-1"),
    synth_case("unknown-bench", "unknown bench 'mmlu'", "--bench", "mmlu"),
    synth_case("bench-twice", "--bench logiqa is given twice", "--bench", "logiqa"),
    synth_case("out-a-folder", "is a folder; give a file name", "--out", "{w}"),
    synth_case("out-under-a-file", "is a file, not a folder", "--out", "{file}/s.parquet"),
    synth_case("out-read-only", "is not writable", "--out", "{ro}/s.parquet"),
    synth_case("out-not-parquet", "must end in .parquet", "--out", "{w}/s.csv"),
    synth_case(
        "n-features-beyond-int64",
        "--n-features: 99999999999999999999999 does not fit a 64-bit integer",
        "--n-features",
        "99999999999999999999999",
    ),
    synth_case("n-features-huge", "--n-features: 1000000000 is outside [1, 65536]", "--n-features", "1000000000"),
    Case("traces-synth-bench-empty", "traces", ("synth", "--bench", ""), "--bench: empty list"),
]


def old_results(**meta) -> Setup:
    """{w}/out: the shared results set, its metadata keys set to `meta` in every file."""

    def setup(env: Env, w: Path) -> None:
        shutil.copytree(env.results, w / "out")
        for path in (w / "out").glob("*.parquet"):
            table = pq.read_table(path)
            raw = json.loads(table.schema.metadata[RESULTS_KEY]) | meta
            pq.write_table(table.replace_schema_metadata({RESULTS_KEY: json.dumps(raw)}), path)
        write_checksums(w / "out")

    return setup


def sweep_case(cid: str, expect: str, *args: str, setup: Setup | None = None) -> Case:
    return Case(f"sim-sweep-{cid}", "sim", (*SWEEP, *args), expect, setup)


def embed_case(cid: str, expect: str, *args: str, setup: Setup | None = None, needs_no_gpu: bool = False) -> Case:
    return Case(f"sim-embed-{cid}", "sim", (*EMBED, *args), expect, setup, needs_no_gpu)


PLAN_ARGS = ("plan", "--traces", "{trace}", "--bench", "logiqa", "--seeds", "0-3", "--confidence", "0.5", "--V", "1e-3",
             "--c", "0.5", "--margins", "0", "--out", "{w}/out")  # fmt: skip


def plan_case(cid: str, expect: str, *args: str, setup: Setup | None = None) -> Case:
    return Case(f"sim-plan-{cid}", "sim", (*PLAN_ARGS, *args), expect, setup)


PLAN = [
    plan_case("alpha-above-1", "--alpha: 1.5 is outside (0, 1]", "--alpha", "1.5"),
    plan_case("alpha-nan", "--alpha: must be a finite number", "--alpha", "nan"),
    plan_case("alpha-a-word", "--alpha: expected a number or one of mid, paper, got 'high'", "--alpha", "high"),
    plan_case("alpha-empty", "--alpha: give at least one value", "--alpha", ""),
    plan_case("by-0", "--by: 0 is outside [1, inf)", "--by", "0"),
    plan_case("by-past-the-stream", "bench logiqa: --by 100000 lies past the scored stream", "--by", "100000"),
    plan_case("every-0", "--every: 0 is outside [1, inf)", "--every", "0"),
    plan_case("confidence-0", "--confidence: 0.0 is outside (0, 1)", "--confidence", "0"),
    plan_case("confidence-1.5", "--confidence: 1.5 is outside (0, 1)", "--confidence", "1.5"),
    plan_case("confidence-1", "--confidence: 1.0 is outside (0, 1)", "--confidence", "1"),
    plan_case("confidence-nan", "--confidence: must be a finite number", "--confidence", "nan"),
    plan_case("seeds-0", "--seeds 0 names 1 order, too few", "--seeds", "0"),
    plan_case("seeds-too-few", "--seeds 0-3 names 4 orders, too few for --confidence 0.95", "--confidence", "0.95"),
    plan_case("seeds-billion", "--seeds 0-1000000000: 1000000001 seeds, at most", "--seeds", "0-1000000000"),
    plan_case("seeds-overlap", "--validate-seeds shares seed 2 with --seeds", "--validate-seeds", "2-5"),
    plan_case("validate-seeds-reversed", "--validate-seeds 5-1: FIRST is above LAST", "--validate-seeds", "5-1"),
    plan_case("validate-seeds-repeat", "--validate-seeds: values repeat", "--validate-seeds", "3,3"),
    plan_case("validate-seeds-billion", "1000000001 seeds, at most", "--validate-seeds", "0-1000000000"),
    plan_case("validate-seeds-a-word", "expected FIRST-LAST or a comma list", "--validate-seeds", "a-b"),
    plan_case("validate-seeds-only-commas", "--validate-seeds ',' names no seeds", "--validate-seeds", ","),
    plan_case("margins-empty", "--margins: give at least one value", "--margins", ""),
    plan_case("margins-above-1", "--margins: 2.0 is outside [0, 1]", "--margins", "2"),
    plan_case("bench-empty", "--bench: give at least one value", "--bench", ""),
    plan_case("encoder-empty", "--encoder: empty", "--encoder", ""),
    plan_case("out-a-file", "exists and is not a folder", "--out", "{file}"),
    plan_case("out-under-a-file", "is a file, not a folder", "--out", "{file}/plan"),
    plan_case("out-read-only", "is not writable", "--out", "{ro}/plan"),
    plan_case(
        "out-the-trace-folder", "is the trace folder", "--traces", "{w}/traces", "--out", "{w}/traces", setup=folder()
    ),
    plan_case("traces-missing", "trace file not found", "--traces", "{w}/nope.parquet"),
]

SIM = [
    sweep_case("V-nan", "--V: must be a finite number", "--V", "nan"),
    sweep_case("V-inf", "--V: must be a finite number", "--V", "inf"),
    sweep_case("V-a-word", "--V: expected a number", "--V", "fast"),
    sweep_case("lr-nan", "--lr: must be a finite number", "--lr", "nan"),
    sweep_case("lr-negative", "--lr: -1.0 is outside (0, 10]", "--lr", "-1"),
    sweep_case("momentum-5", "--momentum: 5.0 is outside [0, 1)", "--momentum", "5"),
    sweep_case("weight-decay-negative", "--weight-decay: -1.0 is outside [0, 1]", "--weight-decay", "-1"),
    sweep_case("seeds-fraction", "--seeds: expected an integer", "--seeds", "1.5"),
    sweep_case("seeds-repeat", "--seeds: values repeat", "--seeds", "42,42"),
    sweep_case("seeds-empty", "--seeds: give at least one value", "--seeds", ""),
    sweep_case("seeds-negative", "--seeds: -1 is outside [0, 9.22337e+18]", "--seeds", "-1"),
    sweep_case("steps-every-0", "--steps-every: 0 is outside [1, 9.22337e+18]", "--steps-every", "0"),
    sweep_case("alpha-empty", "--alpha: give at least one value", "--alpha", ""),
    sweep_case("alpha-above-1", "--alpha: 1.5 is outside (0, 1]", "--alpha", "1.5"),
    sweep_case("methods-empty", "--methods: give at least one value", "--methods", ""),
    sweep_case("methods-unknown", "--methods: 'magic' is not one of", "--methods", "messplus,magic"),
    sweep_case("c-nan", "--c: must be a finite number", "--c", "nan"),
    sweep_case("k-nan", "--k: must be a finite number", "--k", "nan"),
    sweep_case("epochs-negative", "--epochs: -1 is outside [1, 100]", "--epochs", "-1"),
    sweep_case("epochs-a-word", "Invalid value for '--epochs'", "--epochs", "abc"),
    sweep_case("feedback-2", "--feedback: 2.0 is outside [0, 1]", "--feedback", "2"),
    sweep_case("calib-frac-0.95", "--calib-frac: 0.95 is outside [0, 0.9]", "--calib-frac", "0.95"),
    sweep_case("cost-unknown", "--cost: 'watts' is not one of", "--cost", "watts"),
    sweep_case("dtype-float16", "--dtype: 'float16' is not one of", "--dtype", "float16"),
    sweep_case("preset-unknown", "--preset: 'nope' is not one of", "--preset", "nope"),
    sweep_case("cost-estimate-unknown", "--cost-estimate: 'magic' is not one of", "--cost-estimate", "magic"),
    sweep_case("v-unit-unknown", "--v-unit: 'magic' is not one of", "--v-unit", "magic"),
    sweep_case("pooling-unknown", "--pooling: 'max' is not one of", "--pooling", "max"),
    sweep_case("input-dropout-1", "--input-dropout: 1.0 is outside [0, 1)", "--input-dropout", "1"),
    sweep_case("max-length-0", "--max-length: 0 is outside [1, 8192]", "--max-length", "0"),
    sweep_case("k-huge", "--k: 1e+308 is outside [0, 10]", "--k", "1e308"),
    sweep_case("c-huge", "--c: 1e+308 is outside (0, 1e+09]", "--c", "1e308"),
    sweep_case("V-huge", "--V: 1e+308 is outside [0, 1e+12]", "--V", "1e308"),
    sweep_case("lr-huge", "--lr: 1000000.0 is outside (0, 10]", "--lr", "1e6"),
    sweep_case("epochs-huge", "--epochs: 1000000000 is outside [1, 100]", "--epochs", "1000000000"),
    sweep_case("out-a-file", "exists and is not a folder", "--out", "{file}"),
    sweep_case("out-under-a-file", "is a file, not a folder", "--out", "{file}/out"),
    sweep_case("out-read-only", "is not writable", "--out", "{ro}/out"),
    sweep_case("traces-missing", "trace file not found", "--traces", "{w}/nope.parquet"),
    sweep_case(
        "traces-inf-cost",
        "infinite cost",
        "--traces",
        "{w}/bad.parquet",
        setup=trace_file(rows=set_row("energy_j", INF, 3)),
    ),
    sweep_case("bench-unknown", "unknown bench 'mmlu'", "--bench", "mmlu"),
    embed_case("encoder-unknown-offline", "cannot load encoder 'no-such/encoder'", "--encoder", "no-such/encoder"),
    embed_case("encoder-without-tokenizer", "cannot load encoder", "--encoder", "{encoder}"),
    embed_case("dtype-float16", "--dtype must be one of float32, bfloat16", "--dtype", "float16"),
    embed_case("max-length-negative", "--max-length: -5 is outside [1, inf)", "--max-length", "-5"),
    embed_case("batch-size-0", "--batch-size: 0 is outside [1, inf)", "--batch-size", "0"),
    embed_case("pooling-max", "--pooling must be one of cls, mean", "--pooling", "max"),
    embed_case("device-cuda", "torch sees no CUDA GPU", "--device", "cuda", needs_no_gpu=True),
    embed_case("traces-missing", "trace file not found", "--traces", "{w}/nope.parquet"),
    embed_case("bench-unknown", "unknown bench 'mmlu'", "--bench", "mmlu"),
    embed_case("cache-dir-a-file", "is a file, not a folder", "--cache-dir", "{file}"),
    embed_case("cache-dir-read-only", "is not writable", "--cache-dir", "{ro}/cache"),
    sweep_case("bench-empty", "--bench: give at least one value", "--bench", ""),
    sweep_case("bench-repeat", "--bench: values repeat", "--bench", "logiqa,logiqa"),
    sweep_case("V-repeat", "--V: values repeat (0.001, 0.001)", "--V", "1e-3,0.001"),
    sweep_case("alpha-mid-twice", "--alpha: values repeat", "--alpha", "mid,mid"),
    sweep_case("cost-estimate-repeat", "--cost-estimate: values repeat", "--cost-estimate", "mean,mean"),
    sweep_case(
        "seeds-beyond-int64",
        "--seeds: 99999999999999999999999 does not fit a 64-bit integer",
        "--seeds",
        "99999999999999999999999",
    ),
    sweep_case("steps-every-beyond-int64", "does not fit a 64-bit integer", "--steps-every", str(10**21)),
    sweep_case("encoder-empty", "--encoder: empty", "--encoder", ""),
    sweep_case("cache-dir-empty", "--cache-dir: empty", "--cache-dir", ""),
    sweep_case(
        "out-damaged-results",
        "runs.parquet: not a readable Parquet file (",
        setup=setups(old_results(), write_text("out/runs.parquet", "not parquet")),
    ),
    sweep_case("out-options-not-an-object", "holds results of another configuration", setup=old_results(options=[1])),
    sweep_case("out-through-missing-folder", "is a file, not a folder", "--out", "{w}/nope/../file.txt/out"),
    embed_case("bench-empty", "--bench: give at least one bench name", "--bench", ""),
    embed_case("bench-only-commas", "--bench: give at least one bench name", "--bench", ",,"),
    embed_case("bench-repeat", "--bench logiqa is given twice", "--bench", "logiqa,logiqa"),
    embed_case("pooling-empty", "--pooling must be one of cls, mean, not ''", "--pooling", ""),
    embed_case("revision-empty", "--revision: empty", "--revision", ""),
    embed_case("encoder-empty", "--encoder: empty", "--encoder", ""),
    *PLAN,
    Case("sim-no-such-command", "sim", ("frobnicate",), "No such command 'frobnicate'"),
]


def results_copy(rows=None, meta=None, only: str | None = None, after: Setup | None = None, steps=None) -> Setup:
    """{w}/res: the shared results set with the runs' and steps' rows (polars functions) and the metadata (a
    function of the dict, returning a JSON value or raw bytes; only in file `only` where given) changed, then
    `after` applied."""

    def setup(env: Env, w: Path) -> None:
        shutil.copytree(env.results, w / "res")
        for name in ("runs", "steps", "predictions"):
            table = pq.read_table(w / "res" / f"{name}.parquet")
            raw = json.loads(table.schema.metadata[RESULTS_KEY])
            df = pl.from_arrow(table)
            df = rows(df) if rows and name == "runs" else df
            df = steps(df) if steps and name == "steps" else df
            raw = meta(raw) if meta and only in (None, name) else raw
            raw = raw if isinstance(raw, bytes) else json.dumps(raw)
            out = df.to_arrow().replace_schema_metadata({RESULTS_KEY: raw})
            pq.write_table(out, w / "res" / f"{name}.parquet")
        write_checksums(w / "res")  # sealed as a sweep would have written it: odd content, not damage
        if after:
            after(env, w)

    return setup


def damage(name: str, how: str) -> Setup:
    """{w}/res/<name>.parquet cut short, replaced by garbage, deleted, one data byte flipped, or its rows doubled;
    or the set's checksums deleted (name "checksums")."""

    def setup(env: Env, w: Path) -> None:
        path = w / "res" / f"{name}.parquet"
        if name == "checksums":
            (w / "res" / "checksums.json").unlink()
        elif how == "cut":
            path.write_bytes(path.read_bytes()[:-200])
        elif how == "garbage":
            path.write_bytes(b"not parquet at all")
        elif how == "flip":  # a byte in the data pages, not the footer: the file still reads
            data = bytearray(path.read_bytes())
            data[len(data) // 3] ^= 0xFF
            path.write_bytes(bytes(data))
        elif how == "double":  # a well-formed file, rows repeated: a 2-seed sweep would read as 4
            table = pq.read_table(path)
            pq.write_table(pa.concat_tables([table, table]), path)
        else:
            path.unlink()

    return setup


def analysis_case(cid: str, expect: str, *args: str, setup: Setup | None = None) -> Case:
    return Case(f"analysis-{cid}", "analysis", args, expect, setup or results_copy())


REPORT = ("report", "{w}/res", "--out", "{w}/rep")
ANALYSIS = [
    analysis_case(
        "report-flipped-steps",
        "steps.parquet: does not match the checksum",
        *REPORT,
        setup=results_copy(after=damage("steps", "flip")),
    ),
    analysis_case(
        "table-doubled-runs",
        "runs.parquet: does not match the checksum",
        "table",
        "{w}/res",
        setup=results_copy(after=damage("runs", "double")),
    ),
    analysis_case(
        "table-no-checksums",
        "no checksums.json, so its files cannot be checked",
        "table",
        "{w}/res",
        setup=results_copy(after=damage("checksums", "")),
    ),
    analysis_case("report-missing-results", "results folder not found", "report", "{w}/nope"),
    analysis_case("report-results-a-file", "results folder not found", "report", "{file}"),
    analysis_case(
        "report-truncated-runs",
        "runs.parquet: not a readable Parquet file",
        *REPORT,
        setup=results_copy(after=damage("runs", "cut")),
    ),
    analysis_case(
        "report-garbage-runs",
        "runs.parquet: not a readable Parquet file",
        *REPORT,
        setup=results_copy(after=damage("runs", "garbage")),
    ),
    analysis_case(
        "report-missing-steps", "steps.parquet: missing", *REPORT, setup=results_copy(after=damage("steps", "delete"))
    ),
    analysis_case(
        "report-old-version",
        "results schema v0",
        *REPORT,
        setup=results_copy(meta=lambda m: m | {"results_version": 0}),
    ),
    analysis_case(
        "report-mixed-sweeps",
        "come from different sweeps",
        *REPORT,
        setup=results_copy(meta=lambda m: m | {"sweep_id": "other"}, only="steps"),
    ),
    analysis_case(
        "report-zero-runs", "the results hold no runs", *REPORT, setup=results_copy(rows=lambda df: df.head(0))
    ),
    analysis_case(
        "report-inf-cost", "has total_cost = inf", *REPORT, setup=results_copy(rows=set_row("total_cost", INF, 2))
    ),
    analysis_case(
        "report-nan-satisfaction",
        "has satisfaction = nan",
        *REPORT,
        setup=results_copy(rows=set_row("satisfaction", NAN, 1)),
    ),
    analysis_case("report-out-a-file", "exists and is not a folder", *REPORT[:2], "--out", "{file}"),
    analysis_case("report-out-under-a-file", "is a file, not a folder", *REPORT[:2], "--out", "{file}/rep"),
    analysis_case("report-out-read-only", "is not writable", *REPORT[:2], "--out", "{ro}/rep"),
    analysis_case("report-out-read-only-itself", "is not writable", *REPORT[:2], "--out", "{ro}"),
    analysis_case(
        "report-out-foreign-folder",
        "holds 'notes.txt', so it is not a report folder",
        *REPORT[:2],
        "--out",
        "{w}/mine",
        setup=setups(results_copy(), write_text("mine/notes.txt", "mine")),
    ),
    analysis_case("table-out-a-folder", "is a folder; give a file name", "table", "{w}/res", "--out", "{w}"),
    analysis_case("table-out-under-a-file", "is a file, not a folder", "table", "{w}/res", "--out", "{file}/t.md"),
    analysis_case("table-out-read-only", "is not writable", "table", "{w}/res", "--out", "{ro}/t.md"),
    analysis_case("table-out-dev-full", "is not a regular file", "table", "{w}/res", "--out", "/dev/full"),
    analysis_case("table-format-xls", "Invalid value for '--format'", "table", "{w}/res", "--format", "xls"),
    analysis_case(
        "table-paper-needs-every-step",
        "paper accounting needs every step",
        "table",
        "{w}/res",
        "--accounting",
        "paper",
        setup=results_copy(meta=lambda m: m | {"config": m["config"] | {"steps_every": 2}}),
    ),
    analysis_case(
        "table-zero-runs",
        "the results hold no runs",
        "table",
        "{w}/res",
        setup=results_copy(rows=lambda df: df.head(0)),
    ),
    analysis_case(
        "table-truncated-predictions",
        "predictions.parquet: not a readable Parquet file",
        "table",
        "{w}/res",
        setup=results_copy(after=damage("predictions", "cut")),
    ),
    analysis_case("plot-out-a-file", "exists and is not a folder", "plot", "plane", "{w}/res", "--out", "{file}"),
    analysis_case("plot-out-under-a-file", "is a file, not a folder", "plot", "plane", "{w}/res", "--out", "{file}/f"),
    analysis_case("plot-out-read-only", "is not writable", "plot", "plane", "{w}/res", "--out", "{ro}"),
    analysis_case("plot-unknown-kind", "Invalid value for 'kind'", "plot", "pie", "{w}/res"),
    analysis_case(
        "plot-unknown-bench",
        "no MESS+ runs for bench 'mmlu'",
        "plot",
        "dynamics",
        "{w}/res",
        "--bench",
        "mmlu",
        "--out",
        "{w}/f",
    ),
    analysis_case(
        "plot-learning-short-stream", "too few for the learning figure", "plot", "learning", "{w}/res", "--out", "{w}/f"
    ),
    analysis_case(
        "plot-calls-single-only",
        "no routing policy besides single-model baselines",
        "plot",
        "calls",
        "{w}/res",
        "--out",
        "{w}/f",
        setup=results_copy(rows=lambda df: df.filter(pl.col("method").str.contains(":"))),
    ),
    analysis_case(
        "plot-plane-zero-runs",
        "the results hold no runs",
        "plot",
        "plane",
        "{w}/res",
        "--out",
        "{w}/f",
        setup=results_copy(rows=lambda df: df.head(0)),
    ),
    analysis_case(
        "table-metadata-a-list",
        "results metadata is a JSON list",
        "table",
        "{w}/res",
        setup=results_copy(meta=lambda m: [m]),
    ),
    analysis_case(
        "table-metadata-not-json",
        "results metadata is not valid JSON",
        "table",
        "{w}/res",
        setup=results_copy(meta=lambda m: b"{oops", only="steps"),
    ),
    analysis_case(
        "report-metadata-no-config",
        "results metadata has no valid 'config'",
        *REPORT,
        setup=results_copy(meta=lambda m: {k: v for k, v in m.items() if k != "config"}),
    ),
    analysis_case(
        "table-metadata-no-models",
        "results metadata has no valid 'models'",
        "table",
        "{w}/res",
        setup=results_copy(meta=lambda m: {k: v for k, v in m.items() if k != "models"}),
    ),
    analysis_case(
        "table-version-a-string",
        f"'results_version' is '{RESULTS_VERSION}', not a version number",
        "table",
        "{w}/res",
        setup=results_copy(meta=lambda m: m | {"results_version": str(m["results_version"])}),
    ),
    analysis_case(
        "table-runs-column-missing",
        "runs.parquet: no column 'cost_vs_opt'",
        "table",
        "{w}/res",
        setup=results_copy(rows=lambda df: df.drop("cost_vs_opt")),
    ),
    analysis_case(
        "report-models-cut-short",
        "has call shares for 3 models, while the metadata names 1",
        *REPORT,
        setup=results_copy(meta=lambda m: m | {"models": m["models"][:1]}),
    ),
    analysis_case(
        "report-steps-empty",
        "steps.parquet holds no step of its MESS+ runs",
        *REPORT,
        setup=results_copy(steps=lambda df: df.head(0)),
    ),
    analysis_case(
        "table-bounds-only",
        "the results hold only bounds",
        "table",
        "{w}/res",
        setup=results_copy(rows=lambda df: df.filter(pl.col("kind") == "bound")),
    ),
    analysis_case(
        "report-bounds-only",
        "no routing policy to tabulate",
        *REPORT,
        setup=results_copy(rows=lambda df: df.filter(pl.col("kind") == "bound")),
    ),
    analysis_case(
        "plot-dynamics-no-mess",
        "no MESS+ runs, so no dynamics figure",
        "plot",
        "dynamics",
        "{w}/res",
        "--out",
        "{w}/f",
        setup=results_copy(rows=lambda df: df.filter(pl.col("method") != "messplus")),
    ),
    analysis_case("plot-bench-empty", "--bench: empty", "plot", "dynamics", "{w}/res", "--bench", "", "--out", "{w}/f"),
    analysis_case(
        "plot-out-the-results", "lies inside the results folder", "plot", "plane", "{w}/res", "--out", "{w}/res"
    ),
    analysis_case(
        "table-out-over-runs", "lies inside the results folder", "table", "{w}/res", "--out", "{w}/res/runs.parquet"
    ),
    analysis_case("report-out-inside-results", "lies inside the results folder", *REPORT[:2], "--out", "{w}/res/rep"),
    Case("analysis-no-such-command", "analysis", ("frobnicate",), "No such command 'frobnicate'"),
]

COLLECT = (
    "traces",
    "--bench",
    "toyqa",
    "--zoo",
    "{zoo}",
    "--include-path",
    "{task}",
    "--out",
    "{w}/out",
    "--device",
    "cpu",
)
TINY = '[[models]]\nname = "a"\nhf_id = "/nowhere/a"\n'


def zoo_file(text: str | bytes, name: str = "zoo.toml") -> Setup:
    return write_text(name, text)


def collected(**change) -> Setup:
    """{w}/out/toyqa/tiny-a/settings.json as an earlier run with --assumed-power-w 50 wrote it, `change`d."""

    def setup(env: Env, w: Path) -> None:
        from messplus.collect.checks import settings
        from messplus.collect.run import CollectConfig, Task
        from messplus.traces.zoo import load_zoo

        cfg = CollectConfig(bench="toyqa", zoo=load_zoo(env.zoo), out=w / "out", assumed_power_w=50.0)
        wanted = settings(cfg, cfg.zoo.models[0], Task(None, 12, "1.0", "acc_norm"), "cpu") | change
        folder = w / "out" / "toyqa" / "tiny-a"
        folder.mkdir(parents=True)
        (folder / "settings.json").write_text(json.dumps(wanted))

    return setup


def collect_case(cid: str, expect: str, *args: str, setup: Setup | None = None, needs_no_gpu: bool = False) -> Case:
    return Case(f"collect-{cid}", "collect", (*COLLECT, *args), expect, setup, needs_no_gpu)


def zoo_case(cid: str, expect: str, text: str | bytes, name: str = "zoo.toml") -> Case:
    return collect_case(f"zoo-{cid}", expect, "--zoo", f"{{w}}/{name}", setup=zoo_file(text, name))


COLLECTS = [
    collect_case("assumed-power-negative", "--assumed-power-w: -5.0 is outside (0, inf)", "--assumed-power-w", "-5"),
    collect_case("assumed-power-zero", "--assumed-power-w: 0.0 is outside (0, inf)", "--assumed-power-w", "0"),
    collect_case("assumed-power-nan", "--assumed-power-w: must be a finite number", "--assumed-power-w", "nan"),
    collect_case("assumed-power-inf", "--assumed-power-w: must be a finite number", "--assumed-power-w", "inf"),
    collect_case("chunk-0", "--chunk: 0 is outside [1, inf)", "--chunk", "0"),
    collect_case("batch-size-0", "--batch-size: 0 is outside [1, inf)", "--batch-size", "0"),
    collect_case("limit-0", "--limit: 0 is outside [1, inf)", "--limit", "0"),
    collect_case("mode-unknown", "--mode must be one of exact, batched", "--mode", "fast"),
    collect_case("bench-empty", "--bench: give an lm-eval task name", "--bench", ""),
    collect_case("include-path-missing", "not a folder", "--include-path", "{w}/nope"),
    collect_case("include-path-a-file", "not a folder", "--include-path", "{file}"),
    collect_case("device-cuda-without-gpu", "torch sees no CUDA GPU", "--device", "cuda", needs_no_gpu=True),
    collect_case("device-tpu", "--device must be auto, cpu or cuda", "--device", "tpu"),
    collect_case("out-a-file", "exists and is not a folder", "--out", "{file}"),
    collect_case("out-under-a-file", "is a file, not a folder", "--out", "{file}/out"),
    collect_case("out-read-only", "is not writable", "--out", "{ro}/out"),
    collect_case("out-read-only-itself", "is not writable", "--out", "{ro}"),
    collect_case("bench-folder-a-file", "bench folder", setup=write_text("out/toyqa", "x")),
    collect_case(
        "trace-file-a-folder", "trace file", setup=lambda env, w: (w / "out" / "toyqa.parquet").mkdir(parents=True)
    ),
    collect_case("zoo-missing", "zoo file not found", "--zoo", "{w}/nope.toml"),
    zoo_case("bad-toml", "cannot parse zoo file", "[[models]\nname = 'a'\n"),
    zoo_case("bad-yaml", "cannot parse zoo file", "models:\n  - name: a\n   hf_id: [\n", "zoo.yaml"),
    zoo_case("gpus-0", "'gpus' must be a non-empty list of GPU indices", TINY + "gpus = 0\n"),
    zoo_case("gpus-repeat", "'gpus' lists a GPU twice", TINY + "gpus = [0, 0]\n"),
    zoo_case(
        "gpu-memory-high",
        "'gpu_memory_fraction' must be a number in (0, 1], not 'high'",
        TINY + 'gpu_memory_fraction = "high"\n',
    ),
    zoo_case(
        "gpu-memory-2", "'gpu_memory_fraction' must be a number in (0, 1], not 2", TINY + "gpu_memory_fraction = 2\n"
    ),
    zoo_case("dtype-float99", "'dtype' must be one of auto, float16", TINY + 'dtype = "float99"\n'),
    zoo_case("backend-unknown", "'backend' must be one of hf, vllm", TINY + 'backend = "tensorrt"\n'),
    zoo_case("max-length-negative", "'max_length' must be a positive integer", TINY + "max_length = -1\n"),
    zoo_case("unknown-field", "unknown model field 'colour'", TINY + 'colour = "red"\n'),
    zoo_case("no-models", "needs a 'models' list", 'name = "a"\n'),
    zoo_case("models-not-tables", "each model must be a table", "models = [1, 2]\n"),
    zoo_case("duplicate-names", "zoo lists model 'a' twice", TINY + TINY),
    zoo_case("empty-name", "'name' must be a non-empty string", '[[models]]\nname = ""\n'),
    zoo_case("not-utf8", "zoo file is not UTF-8 text", b'[[models]]\nname = "caf\xe9"\n'),
    zoo_case("json-suffix", "zoo file must be .toml, .yaml or .yml", "{}", "zoo.json"),
    zoo_case("no-hf-id", "the zoo file gives no hf_id", '[[models]]\nname = "a"\n'),
    zoo_case("vllm-here", "backend vllm", TINY + 'backend = "vllm"\n'),
    collect_case(
        "settings-damaged", "settings.json: damaged", setup=write_text("out/toyqa/tiny-a/settings.json", '{"hf_id": ')
    ),
    collect_case("settings-a-list", "settings.json: damaged", setup=write_text("out/toyqa/tiny-b/settings.json", "[]")),
    collect_case(
        "resume-other-assumed-power",
        "collected with assumed_power_w=50.0, now assumed_power_w=60.0",
        "--assumed-power-w",
        "60",
        setup=collected(),
    ),
    collect_case(
        "resume-without-assumed-power",
        "collected with assumed_power_w=50.0, now assumed_power_w=None",
        setup=collected(),
    ),
    collect_case(
        "resume-other-mode",
        "collected with mode='batched', now mode='exact'",
        "--assumed-power-w",
        "50",
        setup=collected(mode="batched"),
    ),
    collect_case(
        "resume-other-dtype",
        "collected with dtype='bfloat16', now dtype='float32'",
        "--assumed-power-w",
        "50",
        setup=collected(dtype="bfloat16"),
    ),
    collect_case("metric-unknown", "no per-sample metric 'f1'", "--metric", "f1"),
    collect_case(
        "limit-beyond-int64", "--limit: 99999999999999999999999 does not fit", "--limit", "99999999999999999999999"
    ),
    Case("collect-no-such-command", "collect", ("frobnicate",), "No such command 'frobnicate'"),
]


# --- the table --------------------------------------------------------------------------------------------------

CASES = [
    *TRACE_CONTENT,
    *TRACE_FILES,
    *TRACE_FOLDERS,
    *IMPORT_MESSPLUS,
    *IMPORT_WIDE,
    *IMPORT_LMEVAL,
    *SYNTH,
    *SIM,
    *ANALYSIS,
    *COLLECTS,
]


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _params(cases: list[Case]) -> list:
    """Every case (in process, each costs milliseconds to a second); a case about a missing GPU is skipped where
    there is one."""
    gpu = pytest.mark.skipif(_has_gpu(), reason="this machine has a GPU")
    return [pytest.param(case, id=case.id, marks=[gpu] if case.needs_no_gpu else []) for case in cases]


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input(case: Case, outcomes):
    found, _, _ = outcomes
    out = found[case.id]
    r = out.result
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, f"exit code {r.returncode}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    assert case.expect in lines[0], lines[0]
    assert out.after == out.before, "files changed"


def test_shared_inputs_unchanged(outcomes):
    _, before, after = outcomes
    assert after == before


# --- faults that need more than one process start: a full disk, a kill ---------------------------------------

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def run_in_process(tool: str, *args: str) -> int:
    """A console script's main() in this process (so a test can break the disk under it): its exit code."""
    from importlib import import_module

    old = sys.argv
    sys.argv = [tool, *args]
    try:
        import_module(f"messplus.{tool}.cli").main()
    except SystemExit as e:
        return e.code
    finally:
        sys.argv = old
    return 0


def one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_a_full_disk_under_traces_synth_is_one_line_and_keeps_the_old_trace(tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.parquet"
    out.write_bytes(b"the old trace")

    def full(table, where, **kw):
        Path(where).write_bytes(b"PAR1 half")  # a partial write, then the disk is full
        raise ENOSPC

    monkeypatch.setattr(pq, "write_table", full)
    code = run_in_process("traces", "synth", "--bench", "logiqa", "--scale", "0.05", "--out", str(out), "--overwrite")
    assert code == 2
    one_error_line(capsys.readouterr().err, "s.parquet: cannot write (No space left on device)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"] and out.read_bytes() == b"the old trace"


def test_a_full_disk_under_analysis_report_keeps_the_old_report(env, tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "report.md").write_text("the old report")
    monkeypatch.setattr(Figure, "savefig", lambda *a, **k: (_ for _ in ()).throw(ENOSPC))
    assert run_in_process("analysis", "report", str(env.results), "--out", str(rep)) == 2
    one_error_line(capsys.readouterr().err, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"] and list(rep.iterdir()) == [rep / "report.md"]
    assert (rep / "report.md").read_text() == "the old report"


def test_a_full_disk_behind_stdout_is_one_line(env, tmp_path):
    """/dev/full as stdout: the table does not fit, which is said once, with exit code 2."""
    code = (
        f"import sys; from messplus.traces.cli import main; sys.argv = ['traces', 'info', {str(env.trace)!r}]; main()"
    )
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-c", code], stdout=full, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    assert r.returncode == 2
    one_error_line(r.stderr, "No space left on device")


def test_a_kill_during_sim_embed_keeps_the_finished_shards(tiny_encoder, env, tmp_path, monkeypatch):
    """`sim embed` saves shards as it goes (here every 4 texts, slowed to 0.2 s a batch); after a kill -9 a rerun
    embeds only what no shard holds, and the result equals an uninterrupted run's, byte for byte."""
    import messplus.sim.embed as embed
    from messplus.traces.dense import to_arrays
    from messplus.traces.io import read_trace

    cache = tmp_path / "cache"
    argv = ["sim", "embed", "--traces", str(env.trace), "--bench", "sciq", "--encoder", tiny_encoder,
            "--pooling", "cls", "--max-length", "16", "--batch-size", "2", "--cache-dir", str(cache), "--device", "cpu"]  # fmt: skip
    code = (
        "import sys, time; import messplus.sim.embed as e; e.SHARD_TEXTS = 4; real = e.compute\n"
        "def slow(*a, **k):\n    for batch in real(*a, **k):\n        time.sleep(0.2)\n        yield batch\n"
        f"e.compute = slow; sys.argv = {argv!r}\nfrom messplus.sim.cli import main; main()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(cache.rglob("part-*.parquet")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    texts = to_arrays(read_trace(env.trace), "sciq").texts
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    kept = embed.Cache(folder).load()
    assert 4 <= len(kept) < len(set(texts))  # finished shards survived the kill; the run had not finished
    computed = []
    real = embed.compute
    monkeypatch.setattr(embed, "compute", lambda todo, *a, **k: computed.extend(todo) or real(todo, *a, **k))
    kw = {"pooling": "cls", "max_length": 16, "batch_size": 2}
    resumed, _ = embed.embed_texts(texts, tiny_encoder, "sciq", cache_dir=cache, **kw)
    assert sorted(computed) == sorted({t for t in texts if embed.text_keys([t])[0] not in kept})
    fresh, _ = embed.embed_texts(texts, tiny_encoder, "sciq", cache_dir=tmp_path / "fresh", **kw)
    assert resumed.tobytes() == fresh.tobytes()


def test_an_embedding_does_not_depend_on_its_batch(tiny_encoder, tmp_path):
    """Texts are batched by exact token length, never padded: a text's embedding is the same bytes alone, in a
    small batch or in a large one."""
    from messplus.sim.embed import embed_texts

    texts = [
        f"the {w} sat by the river {'and the mill ' * (i % 4)}" for i, w in enumerate(["bird", "town", "rain"] * 6)
    ]
    together, _ = embed_texts(texts, tiny_encoder, max_length=32, cache_dir=tmp_path / "all", batch_size=64)
    small, _ = embed_texts(texts, tiny_encoder, max_length=32, cache_dir=tmp_path / "small", batch_size=3)
    assert together.tobytes() == small.tobytes()
    for i in (0, 5, 11):
        alone, _ = embed_texts([texts[i]], tiny_encoder, max_length=32, cache_dir=tmp_path / f"alone{i}")
        assert alone[0].tobytes() == together[i].tobytes()


def test_an_unknown_encoder_fails_at_once_without_a_network(tmp_path, monkeypatch):
    """Offline mode unset, and no hub answering: the encoder is refused after one quick connection attempt, not
    after the hub client's retries."""
    from messplus.common import UserError
    from messplus.sim.embed import embed_texts

    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=r"cannot load encoder 'no-such/encoder' .* offline"):
        embed_texts(["a text"], "no-such/encoder", cache_dir=tmp_path)
    assert time.perf_counter() - t0 < 10


# --- recoveries that are not errors ---------------------------------------------------------------------------


def test_a_damaged_part_file_is_collected_again(tmp_path, caplog):
    from messplus.collect.run import done_docs
    from messplus.traces.io import write_parquet

    write_parquet(pl.DataFrame({"doc_id": ["0", "1"]}), tmp_path / "part-0000000-2.parquet", {})
    bad = write_parquet(pl.DataFrame({"doc_id": ["2", "3"]}), tmp_path / "part-0000002-2.parquet", {})
    bad.write_bytes(bad.read_bytes()[:-30])  # truncated behind our back
    with caplog.at_level("WARNING"):
        assert done_docs(tmp_path) == {0, 1}  # docs 2 and 3 will be collected again
    assert not bad.exists() and "damaged part file" in caplog.text


def test_a_report_of_single_model_runs_is_whole(env, tmp_path):
    from messplus.analysis.report import write_report
    from messplus.sim.config import SweepConfig
    from messplus.sim.results import open_results
    from messplus.sim.sweep import run_sweep

    run_sweep(SweepConfig(benches=("sciq",), seeds=(1,), methods=("single", "opt")), env.trace).write(tmp_path / "r")
    path = write_report(open_results(tmp_path / "r"), tmp_path / "rep")
    text = path.read_text()
    assert "no call-share figure" in text and (tmp_path / "rep" / "figures" / "plane.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "rep"]


def test_a_report_of_two_request_streams_thinned_to_one_step_is_whole(tmp_path):
    """The shortest stream a sweep accepts (2 requests), with only its last step kept: every figure it can show is
    drawn (each point marked), the learning figure is left out with a note."""
    from messplus.analysis.report import write_report
    from messplus.sim.config import SweepConfig
    from messplus.sim.results import open_results
    from messplus.sim.sweep import run_sweep

    trace = write_trace(synth_trace(["sciq"], scale=0.005), tmp_path / "t.parquet")
    cfg = SweepConfig(seeds=(1,), methods=("messplus", "single"), calib_frac=0.9, steps_every=1000)
    res = run_sweep(cfg, trace)
    assert res.runs["n_requests"].max() == 2
    res.write(tmp_path / "r")
    text = write_report(open_results(tmp_path / "r"), tmp_path / "rep").read_text()
    assert "no learning figure for sciq: its stream has 2 requests" in text
    assert (tmp_path / "rep" / "figures" / "dynamics_sciq.png").is_file()


def test_a_report_that_fails_midway_leaves_the_old_one(env, tmp_path, monkeypatch):
    from messplus.analysis import plots
    from messplus.analysis.report import write_report
    from messplus.sim.results import open_results

    res = open_results(env.results)
    write_report(res, tmp_path / "rep")
    before = snapshot(tmp_path / "rep")
    monkeypatch.setattr(plots, "dynamics", lambda *a: (_ for _ in ()).throw(RuntimeError("a bug while drawing")))
    with pytest.raises(RuntimeError):
        write_report(res, tmp_path / "rep")
    assert snapshot(tmp_path / "rep") == before and sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


# --- numeric options, generated (hypothesis: optional, not in the dev extras) -------------------------------------


def _numbers(st):
    return st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**6), 10**6)


def test_check_range_accepts_exactly_the_finite_values_in_range():
    from messplus.common import UserError, check_range

    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies

    @hyp.settings(max_examples=300, deadline=None)
    @hyp.given(value=_numbers(st), lo=st.one_of(st.none(), st.floats(-10, 10)), lo_open=st.booleans())
    def check(value, lo, lo_open):
        ok = math.isfinite(value) and (lo is None or (value > lo if lo_open else value >= lo))
        if ok:
            check_range(value, "--x", lo, lo_open=lo_open)
            return
        with pytest.raises(UserError, match=r"^--x: ") as e:
            check_range(value, "--x", lo, lo_open=lo_open)
        assert "\n" not in str(e.value)

    check()


def test_sweep_options_refuse_every_non_finite_or_out_of_range_number():
    from messplus.common import UserError
    from messplus.common.options import validate
    from messplus.sim.config import SweepConfig

    hyp = pytest.importorskip("hypothesis")

    @hyp.settings(max_examples=200, deadline=None)
    @hyp.given(V=_numbers(hyp.strategies), lr=_numbers(hyp.strategies))
    def check(V, lr):
        cfg = SweepConfig(Vs=(float(V),), lr=float(lr))
        if math.isfinite(V) and 0 <= V <= 1e12 and math.isfinite(lr) and 0 < lr <= 10:
            validate(cfg)
            return
        with pytest.raises(UserError, match=r"^--(V|lr): "):
            validate(cfg)

    check()


@pytest.mark.parametrize(
    ("target", "args"),
    [
        ("messplus.sim.sweep.run_sweep", ("sim", "sweep", "--traces", "{trace}", "--out", "{out}", "--overwrite")),
        (
            "messplus.sim.plan.run_plan",
            ("sim", "plan", "--traces", "{trace}", "--seeds", "0-3", "--confidence", "0.5", "--out", "{out}"),
        ),
        ("messplus.sim.embed.embed_texts", ("sim", "embed", "--traces", "{trace}", "--encoder", "{encoder}")),
    ],
    ids=["sweep", "plan", "embed"],
)
def test_ctrl_c_is_one_interrupted_line_and_exit_130(target, args, env, tiny_encoder, tmp_path, monkeypatch):
    """Ctrl-C (a KeyboardInterrupt wherever the work is) says so in one line, exits 130, and leaves what was at
    --out before as it was."""
    import importlib

    out = tmp_path / "out"
    shutil.copytree(env.results, out)  # something to keep: results, or for a plan an earlier plan's files
    if "plan" in args:
        shutil.rmtree(out)
        out.mkdir()
        (out / "plan.parquet").write_bytes((env.results / "runs.parquet").read_bytes())
        (out / "risk_logiqa.png").write_bytes(b"an earlier figure")
    before = snapshot(out)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, interrupted)
    argv = [a.format(trace=env.trace, out=out, encoder=tiny_encoder) for a in args]
    r = run_main(*argv, cwd=tmp_path)
    assert r.returncode == 130
    one_error_line(r.stderr, "interrupted")
    assert snapshot(out) == before
