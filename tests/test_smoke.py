"""One real process per console script, as a user starts it: the entry points import, run and exit as they should.
Every other CLI test calls main() in process (tests.conftest.cli), which shares this interpreter's imports."""

import polars as pl

from tests.conftest import cli_process


def test_each_console_script_runs_in_a_process_of_its_own(tmp_path, small_trace):
    trace, out = tmp_path / "t.parquet", tmp_path / "r"
    r = cli_process("traces", "synth", "--bench", "sciq", "--scale", "0.05", "--out", str(trace))
    assert r.returncode == 0 and trace.is_file(), r.stderr
    r = cli_process(
        "sim", "sweep", "--traces", str(trace), "--seeds", "1", "--methods", "messplus,opt", "--out", str(out)
    )
    assert r.returncode == 0 and "sweep summary" in r.stdout, r.stderr
    assert set(pl.read_parquet(out / "runs.parquet")["method"]) == {"messplus", "opt"}
    r = cli_process("analysis", "table", str(out), "--format", "csv")
    assert r.returncode == 0 and r.stdout.startswith("bench,"), r.stderr
    r = cli_process("collect", "traces", "--help")
    assert r.returncode == 0 and "--bench" in r.stdout, r.stderr
    bad = cli_process("sim", "sweep", "--traces", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "o"))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1
