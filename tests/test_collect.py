"""Collection on CPU with no downloads: tiny random Llamas, a local lm-eval task, lm-eval's hf backend."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

pytest.importorskip("lm_eval", reason="the optional 'collect' extra (lm-eval[hf]) is not installed")

from messplus.collect.energy import Reading, open_meter
from messplus.collect.metered import apportion, split
from messplus.collect.quickcheck import tiny_zoo, toy_task
from messplus.collect.run import CollectConfig, collect
from messplus.traces.io import read_trace
from messplus.traces.zoo import load_zoo
from tests.conftest import cli
from tests.test_cli_traces import assert_one_line_error

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
DETERMINISTIC = ["doc_id", "model", "text", "satisfied", "prompt_tokens", "completion_tokens"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("collect")
    return root, tiny_zoo(root), toy_task(root / "task")


def run(setup, out, *extra, wait=True):
    _, zoo, task = setup
    args = ["traces", "--bench", "toyqa", "--zoo", str(zoo), "--include-path", str(task), "--out", str(out), *extra]
    if wait:
        return cli("collect", *args)
    code = f"import sys; from messplus.collect.cli import main; sys.argv = {['collect', *args]!r}; main()"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def full(setup):
    out = setup[0] / "full"
    r = run(setup, out, "--chunk", "4")
    assert r.returncode == 0, r.stderr
    return out


def test_cli_end_to_end_matches_lm_eval_scoring(setup, full):
    import lm_eval
    from lm_eval.tasks import TaskManager

    trace = read_trace(full / "toyqa.parquet")
    df = trace.df
    assert trace.zoo.names == ("tiny-a", "tiny-b") and df.height == 2 * 12
    assert set(df["energy_source"]) == {"none"} and df["energy_j"].null_count() == df.height  # no GPU, no number
    for host in ("cpu_energy", "dram_energy"):  # RAPL is readable on some machines and not on others
        assert ((df[f"{host}_source"] == "none") == df[f"{host}_j"].is_null()).all()
    assert set(df["latency_source"]) == {"measured"} and (df["latency_s"] > 0).all()
    assert (df["prompt_tokens"] > 0).all() and (df["completion_tokens"] == 0).all()
    assert df.filter(pl.col("doc_id") == "0")["text"][0] == "Is the bridge near the mill?"
    res = lm_eval.simple_evaluate(  # the same model scored by lm-eval alone
        model="hf", model_args=f"pretrained={setup[0] / 'tiny-b'},dtype=float32", tasks=["toyqa"], num_fewshot=0,
        log_samples=True, task_manager=TaskManager(include_path=str(setup[2])), device="cpu",
    )  # fmt: skip
    expect = {str(s["doc_id"]): s["acc_norm"] for s in res["samples"]["toyqa"]}
    got = dict(df.filter(pl.col("model") == "tiny-b").select("doc_id", "satisfied").iter_rows())
    assert got == expect
    info = cli("traces", "info", str(full / "toyqa.parquet"))
    assert "e:none l:measured" in info.stdout


def test_resume_after_kill_matches_an_uninterrupted_run(setup, full):
    out = setup[0] / "killed"
    proc = run(setup, out, "--chunk", "2", wait=False)
    parts = out / "toyqa" / "tiny-a"
    deadline = time.time() + 120
    while len(list(parts.glob("part-*.parquet"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("part-*.parquet")))
    assert 2 <= done_before < 6 and not (out / "toyqa.parquet").exists()
    r = run(setup, out, "--chunk", "2")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in parts.glob("part-*.parquet"))
    assert len(names) == 6 and len(set(names)) == 6  # finished chunks were kept, not redone
    resumed = read_trace(out / "toyqa.parquet").df.select(DETERMINISTIC)
    uninterrupted = read_trace(full / "toyqa.parquet").df.select(DETERMINISTIC)
    assert resumed.sort("model", "doc_id").equals(uninterrupted.sort("model", "doc_id"))


def test_resuming_with_other_settings_is_refused(setup, full):
    r = run(setup, full, "--metric", "acc")
    assert_one_line_error(r, "collected with metric='acc_norm', now metric='acc'", "choose another --out")


def test_batched_mode_apportions_and_labels_estimates(setup):
    out = setup[0] / "batched"
    r = run(setup, out, "--mode", "batched", "--batch-size", "3", "--assumed-power-w", "50", "--limit", "6")
    assert r.returncode == 0, r.stderr
    df = read_trace(out / "toyqa.parquet").df
    assert df["doc_id"].n_unique() == 6
    assert set(df["energy_source"]) == {"estimated"} and set(df["latency_source"]) == {"apportioned"}
    np.testing.assert_allclose(df["energy_j"].to_numpy(), 50 * df["latency_s"].to_numpy(), rtol=1e-9)


def test_unknown_task_and_offline_dataset_are_one_line_errors(setup, tmp_path):
    _, zoo, _ = setup
    assert_one_line_error(
        cli("collect", "traces", "--bench", "no_such_task", "--zoo", str(zoo), "--out", str(tmp_path)),
        "unknown lm-eval task 'no_such_task'",
    )
    r = cli("collect", "traces", "--bench", "boolq", "--zoo", str(zoo), "--out", str(tmp_path))
    assert_one_line_error(r, "task boolq: dataset", "not available offline", "--include-path")


def offline_env(**extra) -> dict:
    """This environment as on a machine without network whose user set nothing: no HF_*_OFFLINE, no proxy, and a
    hub endpoint that refuses connections (where huggingface_hub would retry for half a minute)."""
    drop = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    return {k: v for k, v in os.environ.items() if k not in drop} | {"HF_ENDPOINT": "http://127.0.0.1:9"} | extra


def test_offline_probe_switches_the_libraries_to_offline_mode():
    code = "import os; from messplus.traces import hub; print(hub.offline(), os.environ['HF_DATASETS_OFFLINE'])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=offline_env())
    assert r.stdout.split() == ["True", "1"], r.stderr
    online = offline_env(HTTPS_PROXY="http://proxy.invalid:3128")  # behind a proxy nothing is probed
    r = subprocess.run([sys.executable, "-c", code.replace(", os.environ['HF_DATASETS_OFFLINE']", "")],
                       capture_output=True, text=True, env=online)  # fmt: skip
    assert r.stdout.split() == ["False"], r.stderr


def test_offline_collect_of_an_uncached_hub_model_is_one_quiet_line(setup, tmp_path):
    _, _, task = setup
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[models]]\nname = "hub"\nhf_id = "messplus-test/not-cached-model"\ndtype = "float32"\n')
    args = ["traces", "--bench", "toyqa", "--zoo", str(zoo), "--include-path", str(task), "--out", str(tmp_path / "o")]
    code = f"import sys; from messplus.collect.cli import main; sys.argv = {['collect', *args]!r}; main()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=offline_env())
    # no hub retries logged: the error is the only line, and the probe found the hub unreachable before any load
    assert_one_line_error(r, "model 'hub': 'messplus-test/not-cached-model' is not in the local Hugging Face cache",
                          "the hub cannot be reached", "hf download messplus-test/not-cached-model")  # fmt: skip
    assert not (tmp_path / "o" / "toyqa" / "hub").exists()


def test_real_lm_eval_cli_output_path_with_two_models_imports_both_with_tokens(setup, full, tmp_path):
    """`lm-eval run` (hf backend) writes both tiny models into one --output_path; the import finds both, names them
    from lm-eval's results files, and counts tokens exactly as `collect` did for the same docs."""
    root, _, task = setup
    out = tmp_path / "lm-out"

    def lm_eval_run(model: str) -> subprocess.Popen:
        args = ["run", "--model", "hf", "--model_args", f"pretrained={root / model},dtype=float32", "--tasks",
                "toyqa", "--include_path", str(task), "--output_path", str(out), "--log_samples", "--device", "cpu"]  # fmt: skip
        cmd = [sys.executable, "-m", "lm_eval", *args]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    procs = [lm_eval_run(m) for m in ("tiny-b", "tiny-a")]  # both at once, into one output path
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == 2 and all(f.startswith("__") and "__tiny-" in f for f in folders)  # lm-eval's own names
    trace_path = tmp_path / "lm.parquet"
    r = cli("traces", "import", "lmeval", str(out), "--tokenizer", "model", "--out", str(trace_path))
    assert r.returncode == 0, r.stderr
    assert "cheapest first by the parameter counts lm-eval recorded: tiny-a, tiny-b" in r.stdout
    trace = read_trace(trace_path)
    assert trace.zoo.names == ("tiny-a", "tiny-b")
    assert [m.hf_id for m in trace.zoo.models] == [str(root / "tiny-a"), str(root / "tiny-b")]
    cols = ["doc_id", "model", "text", "satisfied", "prompt_tokens", "completion_tokens"]
    imported = trace.df.select(cols).sort("model", "doc_id")
    collected = read_trace(full / "toyqa.parquet").df.select(cols).sort("model", "doc_id")
    assert imported.equals(collected)
    assert (imported["prompt_tokens"] > 0).all()
    from messplus.traces.dense import to_arrays

    tokens = to_arrays(trace, "toyqa").cost("tokens")  # `sim sweep --cost tokens` works on the import
    assert tokens.shape == (12, 2) and np.isfinite(tokens).all()


def test_apportion_by_tokens_and_a_batch_reading_split_figure_by_figure():
    assert apportion(10.0, [1, 3]) == pytest.approx([2.5, 7.5])
    assert apportion(None, [1, 3]) == [None, None]
    assert apportion(6.0, [0, 0, 0]) == pytest.approx([2.0, 2.0, 2.0])
    parts = split(Reading(seconds=2.0, energy_j=10.0, cpu_energy_j=4.0, dram_energy_j=None), [1, 3])
    assert parts == [Reading(0.5, 2.5, 1.0, None), Reading(1.5, 7.5, 3.0, None)]


def test_collect_records_host_energy_where_rapl_is_readable(setup, monkeypatch):
    """A CPU collection with Zeus reading RAPL (fake packages behind Zeus's device interface): every request is
    one window, so each doc's three choices cost three counter steps, and the meter lands in the provenance."""
    pytest.importorskip("zeus.monitor", reason="zeus (the 'dev' and 'gpu' extras) is not installed")
    from tests.zeus_fakes import FakeCPUs, FakeGPUs, FakeRAPLPackage, install, ticking

    root, zoo, task = setup
    install(monkeypatch, FakeGPUs(), FakeCPUs(FakeRAPLPackage(ticking(1000), ticking(100))))
    cfg = CollectConfig(bench="toyqa", zoo=load_zoo(str(zoo)), out=root / "rapl", include_path=str(task), limit=2,
                        device="cpu")  # fmt: skip
    trace = read_trace(collect(cfg))
    df = trace.df
    assert df["cpu_energy_j"].to_list() == pytest.approx([3.0] * 4)
    assert df["dram_energy_j"].to_list() == pytest.approx([0.3] * 4)
    assert set(df["cpu_energy_source"]) == set(df["dram_energy_source"]) == {"measured"}
    assert set(df["energy_source"]) == {"none"} and df["energy_j"].null_count() == 4  # no GPU: no GPU energy
    env = trace.provenance["environment"]  # as run.json has it
    assert (env["meter"], env["meter_version"], env["cpu_packages"]) == ("zeus", "0.16.0", 1)


def test_zeus_on_a_real_gpu():
    """Runs only where Zeus and an NVIDIA GPU are present (never in CI): the real counter moves over half a second."""
    pytest.importorskip("zeus.monitor", reason="zeus (the 'gpu' extra) is not installed")
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pytest.skip("no NVIDIA GPU/driver on this machine")
    meter = open_meter((0,))
    assert meter.source == "measured" and meter.name == "zeus" and meter.info()["driver"]
    with meter.measure() as r:
        time.sleep(0.5)
    assert r.energy_j is not None and r.energy_j > 0
    meter.close()


def test_a_collection_on_disk_asks_no_network(setup, tmp_path):
    """Local model folders and an --include-path task reading local files, in a fresh process with no offline
    setting and a proxy set: Python's audit hook sees no DNS query and no connection (before: the hub probe, and
    three CONNECTs to a dataset host through the proxy). A finished trace of other docs is not replaced without
    --overwrite."""
    _, zoo, task = setup
    args = ["collect", "traces", "--bench", "toyqa", "--zoo", str(zoo), "--include-path", str(task), "--out",
            str(tmp_path / "o"), "--limit", "6"]  # fmt: skip
    code = (
        "import atexit, sys\nasked = []\n"
        "sys.addaudithook(lambda e, a: asked.append(e) if e in ('socket.connect', 'socket.getaddrinfo') else None)\n"
        "atexit.register(lambda: print('NETWORK', len(asked), file=sys.stderr))\n"
        f"sys.argv = {args!r}\nfrom messplus.collect.cli import main\nmain()"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")} | {"HTTPS_PROXY": "http://127.0.0.1:9"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "NETWORK 0" in r.stderr, r.stderr[-2000:]
    shrink = run(setup, tmp_path / "o", "--limit", "3")
    assert_one_line_error(shrink, "holds a finished collection of 6 docs, and this run would write 3")
    assert read_trace(tmp_path / "o" / "toyqa.parquet").df["doc_id"].n_unique() == 6
    assert run(setup, tmp_path / "o", "--limit", "3", "--overwrite").returncode == 0
    assert read_trace(tmp_path / "o" / "toyqa.parquet").df["doc_id"].n_unique() == 3
