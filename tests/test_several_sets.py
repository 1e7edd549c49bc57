"""`analysis` reads several result sets of one trace as one: sweeps of other seeds (say, made on other machines)
give the table one sweep of all their seeds gives."""

import io

import polars as pl
import polars.selectors as cs
import pytest
from polars.testing import assert_frame_equal

from messplus.common import UserError
from messplus.sim.results import open_sets
from messplus.traces.io import write_trace
from messplus.traces.synth import synth_trace
from tests.conftest import cli
from tests.test_cli_traces import assert_one_line_error

SWEEP = ("--bench", "logiqa", "--methods", "messplus,routellm,single,opt", "--c", "0.2,1")


def sweep(trace, out, seeds, *extra):
    r = cli("sim", "sweep", "--traces", str(trace), *SWEEP, "--seeds", seeds, "--out", str(out), *extra)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def sets(small_trace, tmp_path_factory):
    """Seeds 1 and 2 as two sets, and both as one."""
    tmp = tmp_path_factory.mktemp("sets")
    return [sweep(small_trace, tmp / name, seeds) for name, seeds in (("s1", "1"), ("s2", "2"), ("both", "1,2"))]


def test_two_sets_give_the_table_of_one_sweep_of_both(sets, tmp_path):
    s1, s2, both = sets
    tables = [cli("analysis", "table", *map(str, given), "--format", "csv") for given in ((s1, s2), (both,))]
    assert all(t.returncode == 0 for t in tables), tables[0].stderr
    merged, one = (pl.read_csv(io.StringIO(t.stdout)) for t in tables)
    # the same runs (tests/test_distributed.py: a seed's runs are the same bytes in any sweep); polars' std over a
    # group of rows can differ in its last bits with where the group's rows lie in the frame
    assert_frame_equal(merged, one, check_exact=False, rel_tol=1e-12)
    assert merged.drop(cs.ends_with("_std")).equals(one.drop(cs.ends_with("_std")))
    merged = open_sets([s1, s2])
    runs = merged.runs.collect()
    assert runs["run_id"].to_list() == list(range(runs.height))
    assert runs.group_by("set").len().sort("set").rows() == [(str(s1), runs.height // 2), (str(s2), runs.height // 2)]
    steps = merged.steps.collect()
    assert steps["run_id"].unique().sort().to_list() == runs.filter(pl.col("kind") == "policy")["run_id"].to_list()
    assert merged.meta["config"]["seeds"] == [1, 2] and merged.meta["sets"] == [str(s1), str(s2)]
    assert set(merged.predictions.collect()["set"]) == {str(s1), str(s2)}


def test_a_report_and_figures_of_two_sets(sets, tmp_path):
    s1, s2, _ = sets
    r = cli("analysis", "report", str(s1), str(s2), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "seeds [1, 2]" in (tmp_path / "reports" / "s1+s2" / "report.md").read_text()
    r = cli("analysis", "plot", "dynamics", str(s1), str(s2), "--out", str(tmp_path / "figures"))
    assert r.returncode == 0, r.stderr


def test_sets_that_do_not_belong_together_are_refused(sets, small_trace, tmp_path):
    s1, _, both = sets
    assert_one_line_error(cli("analysis", "table", str(s1), str(both)), "run messplus of bench logiqa, seed 1 is in "
                          f"{s1} and in {both}, so it would count twice")  # fmt: skip
    assert_one_line_error(cli("analysis", "table", str(s1), str(s1)), "count twice")
    latency = sweep(small_trace, tmp_path / "latency", "2", "--cost", "latency_s")
    assert_one_line_error(cli("analysis", "report", str(s1), str(latency)), "another cost column than in")
    other = write_trace(synth_trace(["logiqa"], seed=1, scale=0.15), tmp_path / "small.parquet")  # same name
    other_set = sweep(other, tmp_path / "other", "2")
    assert_one_line_error(cli("analysis", "plot", "plane", str(s1), str(other_set)), "another trace than in")
    with pytest.raises(UserError, match="results folder not found"):
        open_sets([s1, tmp_path / "missing"])
