"""`--ray`: sweeps and plans on a Ray cluster are the same bytes as in one process, and survive a dying worker."""

import os
import sys
import time
import warnings
from contextlib import contextmanager

import polars as pl
import pytest

from messplus.common import UserError
from messplus.sim import cli as sim_cli
from messplus.sim import distributed
from messplus.sim.cli import DEMO, bare_ray
from messplus.sim.plan import PlanConfig, run_plan
from tests.conftest import cli
from tests.test_cli_traces import assert_one_line_error

FILES = ("runs.parquet", "steps.parquet", "predictions.parquet", "checksums.json")
SWEEP = ("--bench", "boolq,piqa", "--seeds", "1,2", "--c", "0.1,1")


@pytest.fixture(scope="module")
def local_ray():
    """Ray, with a two-CPU cluster in this process, which `--ray` then uses as it is."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Ray's notes on its own future defaults
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The sweep's result set made in one process, as bytes."""
    out = tmp_path_factory.mktemp("one") / "set"
    assert cli("sim", "sweep", *SWEEP, "--out", str(out)).returncode == 0
    return {name: (out / name).read_bytes() for name in FILES}


def sweep_on_ray(tmp_path, *extra):
    return cli("sim", "sweep", *SWEEP, "--out", str(tmp_path / "set"), "--ray", *extra)


def assert_ends_in_one_error(result, *fragments):
    """Exit code 2 and one `error:` line, the last (progress lines may come before it: the tasks take seconds)."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0]), result.stderr
    assert all(f in errors[0] for f in fragments), errors[0]


def test_a_sweep_on_ray_is_the_same_bytes_as_in_one_process(local_ray, one_process, tmp_path):
    r = sweep_on_ray(tmp_path)
    assert r.returncode == 0, r.stderr
    assert {name: (tmp_path / "set" / name).read_bytes() for name in FILES} == one_process


def test_a_plan_on_ray_is_the_same_as_in_one_process(local_ray):
    cfg = PlanConfig(benches=("piqa", "sciq"), seeds="0-11", confidence=0.75, Vs=(1e-3, 1e-4), margins=(0.0, 0.02),
                     validate_seeds="100-103")  # fmt: skip
    plan, candidates = run_plan(cfg, DEMO)
    with distributed.cluster("auto") as spread:
        plan_ray, candidates_ray = run_plan(cfg, DEMO, replays=spread.replays())
    assert plan_ray.equals(plan) and all(candidates_ray[b].equals(candidates[b]) for b in candidates)
    picks = plan.filter(pl.col("pick"))  # a MESS+ setting and a single model, each replayed on the fresh orders
    assert set(picks["family"]) == {"messplus", "single"} and picks["p_meet_validated"].is_not_null().all()


def test_a_task_whose_worker_dies_runs_again_and_the_set_is_whole(local_ray, one_process, tmp_path, monkeypatch):
    died = tmp_path / "died"
    real = distributed.trajectory

    def dies_first(*args):
        try:  # the first task to start dies, once: its retry and every other task run as usual
            os.close(os.open(died, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return real(*args)
        os._exit(1)

    monkeypatch.setattr(distributed, "trajectory", dies_first)
    r = sweep_on_ray(tmp_path)
    assert r.returncode == 0, r.stderr
    assert died.exists()
    assert {name: (tmp_path / "set" / name).read_bytes() for name in FILES} == one_process


def test_a_task_that_keeps_failing_or_raises_is_one_line_naming_it_and_writes_nothing(local_ray, tmp_path,
                                                                                      monkeypatch):  # fmt: skip
    real = distributed.trajectory

    def dies():
        os._exit(1)

    def raises():
        raise UserError("the predictor's predictions went non-finite")

    monkeypatch.setattr(distributed, "RETRIES", 1)
    for fail, said in ((dies, "failed on each of its 2 tries (WorkerCrashedError"), (raises, "went non-finite")):

        def fails_on_one(b, draws, bounds, cfg, fail=fail):
            if (b.name, cfg.seeds, cfg.cs) == ("piqa", (2,), (1.0,)):
                fail()
            return real(b, draws, bounds, cfg)

        monkeypatch.setattr(distributed, "trajectory", fails_on_one)
        assert_ends_in_one_error(sweep_on_ray(tmp_path), "sweep: bench piqa, seed 2, c=1, k=0.25: ", said)
        assert os.listdir(tmp_path) == []  # no set, not even a temporary


def test_ctrl_c_cancels_every_task_and_keeps_the_previous_set(local_ray, one_process, tmp_path, monkeypatch):
    out = tmp_path / "set"
    out.mkdir()
    for name, data in one_process.items():
        (out / name).write_bytes(data)

    def sleeps(*args):
        time.sleep(60)

    @contextmanager
    def ctrl_c(console):  # at the first look at the tasks (half a second in)
        def start(label, total):
            def advance(n):
                raise KeyboardInterrupt

            return advance

        yield start

    monkeypatch.setattr(distributed, "trajectory", sleeps)
    monkeypatch.setattr(sim_cli, "progress_bars", ctrl_c)
    r = sweep_on_ray(tmp_path, "--overwrite")
    assert r.returncode == 130 and "error: interrupted" in r.stderr
    for _ in range(100):  # cancelled: every CPU free again, long before a sleeper would wake
        if local_ray.available_resources().get("CPU") == 2:
            break
        time.sleep(0.1)
    assert local_ray.available_resources().get("CPU") == 2
    assert {name: (out / name).read_bytes() for name in FILES} == one_process


def test_without_ray_installed_ray_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` then fails as where it is not installed
    assert_one_line_error(sweep_on_ray(tmp_path), "--ray needs Ray", 'pip install -e ".[ray]"')
    r = cli("sim", "plan", "--bench", "sciq", "--seeds", "0-3", "--confidence", "0.5", "--out", str(tmp_path / "p"),
            "--ray", "auto")  # fmt: skip
    assert_one_line_error(r, "--ray needs Ray")
    assert os.listdir(tmp_path) == []


def test_ray_alone_means_a_cluster_on_this_machine():
    assert bare_ray(["sweep", "--ray"]) == ["sweep", "--ray", "local"]
    assert bare_ray(["sweep", "--ray", "--bench", "boolq"]) == ["sweep", "--ray", "local", "--bench", "boolq"]
    assert bare_ray(["sweep", "--ray", "auto"]) == ["sweep", "--ray", "auto"]
    assert bare_ray(["sweep", "--ray=ray://head:10001"]) == ["sweep", "--ray=ray://head:10001"]
