"""A results folder holds one complete set: whatever stops a write, a reader finds the old set or the new one."""

import os

import polars as pl
import pytest

from messplus.common import UserError
from messplus.sim import results
from messplus.sim.config import SweepConfig
from messplus.sim.results import open_results
from messplus.sim.sweep import run_sweep


class Killed(BaseException):
    """Stands for a kill: not an Exception, so no handler on the way catches it."""


@pytest.fixture(scope="module")
def two_sets(small_trace):
    base = dict(benches=("piqa",), seeds=(1,), methods=("messplus", "opt"), cs=(1.0,))
    return run_sweep(SweepConfig(**base, alphas=(0.7,)), small_trace), run_sweep(
        SweepConfig(**base, alphas=(0.8,)), small_trace
    )


def alphas(folder) -> list[float]:
    return open_results(folder).runs.select("alpha").unique().collect()["alpha"].to_list()


@pytest.mark.parametrize("where", ["after runs", "after steps", "after predictions", "between renames"])
def test_a_kill_during_a_write_leaves_one_complete_set(two_sets, tmp_path, monkeypatch, where):
    old, new = two_sets
    out = tmp_path / "r"
    old.write(out)
    files = {"after runs": 1, "after steps": 2, "after predictions": 3}
    written = []
    real_write, real_rename = results.write_parquet, os.rename

    def write(df, path, meta):
        real_write(df, path, meta)
        written.append(path)
        if len(written) == files.get(where):
            raise Killed

    def rename(src, dst):
        if where == "between renames" and str(dst) == str(out):
            raise Killed  # the old set is already moved aside
        real_rename(src, dst)

    monkeypatch.setattr(results, "write_parquet", write)
    monkeypatch.setattr(os, "rename", rename)  # atomic_folder (messplus.common) does the renames
    with pytest.raises(Killed):
        new.write(out)
    monkeypatch.undo()
    assert alphas(out) == [0.7]  # the old set, whole (put back in place where the kill came between renames)
    new.write(out)  # and the next write goes through, leaving no temporaries
    assert alphas(out) == [0.8]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_a_full_disk_is_one_line_and_keeps_the_old_set(two_sets, tmp_path, monkeypatch):
    old, new = two_sets
    out = tmp_path / "r"
    old.write(out)

    def full(df, path, meta):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results, "write_parquet", full)
    with pytest.raises(UserError, match="No space left on device"):
        new.write(out)
    assert alphas(out) == [0.7] and sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_files_of_two_sweeps_are_refused(two_sets, tmp_path):
    old, new = two_sets
    old.write(tmp_path / "a")
    new.write(tmp_path / "b")
    os.replace(tmp_path / "b" / "steps.parquet", tmp_path / "a" / "steps.parquet")  # mixed by hand
    with pytest.raises(UserError, match="different sweeps"):
        open_results(tmp_path / "a")
    assert pl.read_parquet(tmp_path / "a" / "runs.parquet").height > 0
