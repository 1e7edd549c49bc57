import json

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from messplus.sim.results import KEY as RESULTS_KEY
from tests.conftest import cli
from tests.test_cli_traces import assert_one_line_error

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep_dir(small_trace, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    args = [
        "--traces",
        str(small_trace),
        "--bench",
        "logiqa,sciq",
        "--seeds",
        "1,2,3",
        "--V",
        "1e-3,1e-2",
        "--c",
        "0.2,1",
    ]
    r = cli("sim", "sweep", *args, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_table_matches_a_direct_computation_from_runs(sweep_dir, tmp_path):
    r = cli("analysis", "table", str(sweep_dir), "--format", "csv", "--out", str(tmp_path / "t.csv"))
    assert r.returncode == 0, r.stderr
    table = pl.read_csv(tmp_path / "t.csv")
    runs = pl.read_parquet(sweep_dir / "runs.parquet")
    mess = runs.filter(
        pl.col("bench") == "sciq", pl.col("method") == "messplus", pl.col("V") == 1e-2, pl.col("c") == 1.0
    )
    row = table.filter(pl.col("bench") == "sciq", pl.col("label") == "messplus V=0.01 c=1.0")
    assert row.height == 1 and mess.height == 3
    assert row["cost_MJ"][0] == pytest.approx(mess["total_cost"].mean() / 1e6)
    assert row["cost_MJ_std"][0] == pytest.approx(mess["total_cost"].std() / 1e6)
    assert row["satisfaction_pct"][0] == pytest.approx(100 * mess["satisfaction"].mean())
    assert row["sla_met"][0] == mess["sla_met"].all()
    shares = np.array(mess["call_ratio"].to_list()).mean(0)
    assert row["share_llama-3.3-70b"][0] == pytest.approx(100 * shares[2])
    avg = table.filter(pl.col("bench") == "average", pl.col("label") == "educated")
    per_bench = table.filter(pl.col("bench") != "average", pl.col("label") == "educated")
    assert avg["satisfaction_pct"][0] == pytest.approx(per_bench["satisfaction_pct"].mean())


def test_report_writes_tables_summary_and_readable_figures(sweep_dir, tmp_path):
    r = cli("analysis", "report", str(sweep_dir), "--out", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stderr
    rep = tmp_path / "rep"
    text = (rep / "report.md").read_text()
    assert "| bench | alpha | method |" in text and "E_OPT" in text
    predictor = text[text.index("## MESS+ predictor") :].splitlines()
    rows = [line for line in predictor if line.startswith(("| logiqa |", "| sciq |"))]
    assert len(rows) >= 2 and all("(z " in row for row in rows)  # one row per bench and c, a cell per model
    assert "\\rowcolor{" in (rep / "table.tex").read_text()
    assert "logiqa (alpha" in (rep / "summary.txt").read_text()
    pngs = sorted((rep / "figures").glob("*.png"))
    assert {p.stem for p in pngs} == {
        "plane",
        "calls",
        "dynamics_logiqa",
        "dynamics_sciq",
        "learning_logiqa",
        "learning_sciq",
    }
    for p in pngs:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000, p
        assert f"figures/{p.name}" in text
        assert p.with_suffix(".svg").stat().st_size > 10_000


def test_single_plot_command(sweep_dir, tmp_path):
    r = cli("analysis", "plot", "dynamics", str(sweep_dir), "--bench", "sciq", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "dynamics_sciq.png").read_bytes().startswith(PNG)
    bad = cli("analysis", "plot", "learning", str(sweep_dir), "--bench", "boolq", "--out", str(tmp_path))
    assert_one_line_error(bad, "no MESS+ runs for bench 'boolq'")


def test_missing_folder_and_older_schema_are_one_line_errors(sweep_dir, tmp_path):
    assert_one_line_error(cli("analysis", "report", str(tmp_path / "nope")), "results folder not found")
    old = tmp_path / "old"
    old.mkdir()
    for name in ("runs", "steps", "predictions"):
        table = pq.read_table(sweep_dir / f"{name}.parquet")
        meta = json.loads(table.schema.metadata[RESULTS_KEY])
        meta["results_version"] = 0
        pq.write_table(table.replace_schema_metadata({RESULTS_KEY: json.dumps(meta)}), old / f"{name}.parquet")
    assert_one_line_error(cli("analysis", "table", str(old)), "results schema v0", "rerun `sim sweep`")


def test_latex_escapes_hostile_model_names_and_numbers_share_their_decimals():
    from messplus.analysis.tables import latex_escape, pm

    hostile = "R&D #1 {50%} $x_y^2~\\"
    assert latex_escape(hostile) == r"R\&D \#1 \{50\%\} \$x\_y\textasciicircum{}2\textasciitilde{}\textbackslash{}"
    assert latex_escape("84.1 ± 0.3") == r"84.1 $\pm$ 0.3"
    assert pm(0.0004011, 5e-07) == "0.0004011 ± 0.0000005"
    assert pm(1234.5, 12.25) == "1234 ± 12" or pm(1234.5, 12.25) == "1235 ± 12"
    assert pm(0.0, 0.0) == "0.00 ± 0.00"
