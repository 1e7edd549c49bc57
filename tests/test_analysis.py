import json
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from messplus.analysis.cli import app as analysis_app
from messplus.analysis.tables import labelled
from messplus.sim.results import KEY as RESULTS_KEY
from messplus.sim.results import open_results
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


def sweep_in_process(out, *args: str) -> None:
    """`sim sweep` in this process (a subprocess costs seconds of imports)."""
    from messplus.sim.cli import app

    r = CliRunner().invoke(app, ["sweep", *args, "--out", str(out)])
    assert r.exit_code == 0, r.output


def analysis(*args: str) -> None:
    r = CliRunner().invoke(analysis_app, [str(a) for a in args])
    assert r.exit_code == 0, r.output


def analysis_error(monkeypatch, capsys, *args: str) -> str:
    """`analysis ...` in process through its console entry point: the one stderr line of a refusal (exit 2)."""
    from messplus.analysis.cli import main

    monkeypatch.setattr(sys, "argv", ["analysis", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def lean_sweep(small_trace, tmp_path_factory):
    """What crashed the plane figure: no bound, no other policy, one seed, two benches."""
    out = tmp_path_factory.mktemp("lean")
    sweep_in_process(out, "--traces", str(small_trace), "--bench", "boolq,piqa", "--seeds", "42",
                     "--methods", "messplus,single")  # fmt: skip
    return out


@pytest.fixture(scope="module")
def holding_sweep(small_trace, tmp_path_factory):
    """MESS+ alone at a low V and alphas it reaches: every seed settles above alpha, each at its own request."""
    out = tmp_path_factory.mktemp("holding")
    sweep_in_process(out, "--traces", str(small_trace), "--bench", "boolq", "--seeds", "1,2,3", "--V", "1e-4,1e-3",
                     "--alpha", "0.7,0.75", "--methods", "messplus")  # fmt: skip
    return out


def svg_texts(svg: Path) -> set[str]:
    """Every text of an SVG figure (matplotlib keeps text as text: plots sets svg.fonttype none)."""
    return set(re.findall(r">([^<>]+)</text>", svg.read_text()))


def test_report_on_a_sweep_without_bounds_draws_the_plane_with_every_method(lean_sweep, tmp_path):
    analysis("report", lean_sweep, "--out", tmp_path / "rep")
    figures = tmp_path / "rep" / "figures"
    assert (figures / "plane.png").read_bytes().startswith(PNG)
    models = open_results(lean_sweep).models
    assert {"messplus", *(f"single:{m}" for m in models)} <= svg_texts(figures / "plane.svg")


def test_plane_svg_texts_every_method_and_bound(sweep_dir, tmp_path):
    analysis("plot", "plane", sweep_dir, "--out", tmp_path)
    runs = labelled(open_results(sweep_dir).runs).collect()
    policies = set(runs.filter(pl.col("kind") == "policy")["label"])
    bounds = {f"{m} (bound)" for m in runs.filter(pl.col("kind") == "bound")["method"] if m != "opt"}
    assert len(policies) > 5 and bounds
    assert policies | bounds | {"E_OPT (bound) at the SLA"} <= svg_texts(tmp_path / "plane.svg")


def first_holding(steps: pl.DataFrame, alpha: float) -> int | None:
    """From one run's steps: the first t after which running satisfaction stays >= alpha (None: it ends below)."""
    below = steps.filter(pl.col("running_satisfaction") < alpha - 1e-12)["t"]
    if below.len() and below.max() == steps["t"].max():
        return None
    return int(below.max()) + 1 if below.len() else 1


def test_dynamics_marks_the_request_after_which_every_seed_holds(holding_sweep, tmp_path):
    from messplus.analysis.plots import dynamics_runs, hold_from

    runs = dynamics_runs(open_results(holding_sweep), "boolq").runs
    steps = pl.read_parquet(holding_sweep / "steps.parquet")
    marks = hold_from(runs).sort("V", "alpha")
    spread_out = 0  # marks whose seeds settle at different requests: where a mean over seeds would be wrong
    for mark in marks.iter_rows(named=True):
        ids = runs.filter(pl.col("V") == mark["V"], pl.col("alpha") == mark["alpha"])["run_id"]
        firsts = [first_holding(steps.filter(pl.col("run_id") == i).sort("t"), mark["alpha"]) for i in ids]
        assert len(firsts) == 3
        assert mark["t_all"] == (None if None in firsts else max(firsts))
        assert mark["below"] == firsts.count(None)
        spread_out += None not in firsts and min(firsts) < max(firsts)
    assert marks.height == 4 and spread_out >= 1 and marks["t_all"].null_count() >= 1  # both kinds of mark
    analysis("plot", "dynamics", holding_sweep, "--out", tmp_path)
    texts = svg_texts(tmp_path / "dynamics_boolq.svg")
    assert {f"t = {t}" for t in marks["t_all"].drop_nulls()} <= texts
    assert {f"{n} of 3 seeds end below α" for n in marks.filter(pl.col("t_all").is_null())["below"]} <= texts


def test_dynamics_legend_names_the_mark_only_where_one_is_drawn(holding_sweep, tmp_path):
    from messplus.analysis.plots import dynamics_runs, hold_from

    marks = hold_from(dynamics_runs(open_results(holding_sweep), "boolq").runs)
    entry = "t = the first request after which every seed stays ≥ α"
    for held in (marks.filter(pl.col("t_all").is_null()), marks.filter(pl.col("t_all").is_not_null())):
        mark = held.row(0, named=True)
        out = tmp_path / str(mark["t_all"])
        analysis("plot", "dynamics", holding_sweep, "--alpha", str(mark["alpha"]), "--V", str(mark["V"]), "--out", out)
        assert (entry in svg_texts(out / "dynamics_boolq.svg")) == (mark["t_all"] is not None)


def test_plot_dynamics_draws_the_alpha_V_and_c_asked_for(holding_sweep, tmp_path):
    analysis("plot", "dynamics", holding_sweep, "--alpha", "0.75", "--V", "1e-4", "--c", "0.1", "--out", tmp_path)
    texts = svg_texts(tmp_path / "dynamics_boolq.svg")
    assert {"V = 0.0001", "α = 0.750"} <= texts and not {"V = 0.001", "α = 0.700"} & texts


@pytest.mark.parametrize(
    "args, expect",
    [
        (["dynamics", "--alpha", "0.5"], "--alpha 0.5: no MESS+ run of bench boolq has it (have: 0.700, 0.750)"),
        (["dynamics", "--V", "0.5,1e-4"], "--V 0.5: no MESS+ run of bench boolq has it (have: 0.0001, 0.001)"),
        (["dynamics", "--c", "3"], "--c 3: no MESS+ run of bench boolq has it (have: 0.1)"),
        (["dynamics", "--alpha", "high"], "--alpha: expected a number, got 'high'"),
        (["plane", "--V", "1e-4"], "--V: only `analysis plot dynamics` takes it"),
    ],
)
def test_plot_refuses_a_choice_the_results_do_not_hold(holding_sweep, tmp_path, monkeypatch, capsys, args, expect):
    err = analysis_error(monkeypatch, capsys, "plot", args[0], holding_sweep, *args[1:], "--out", tmp_path / "f")
    assert expect in err
    assert not (tmp_path / "f").exists()


def test_learning_figure_says_it_is_a_mean_with_a_seed_band(holding_sweep, tmp_path):
    analysis("plot", "learning", holding_sweep, "--out", tmp_path)
    svg = (tmp_path / "learning_boolq.svg").read_text()
    assert "mean over 3" in svg and "min to max over the 3 seeds" in svg


def test_plot_dynamics_alpha_missing_from_one_of_several_benches_points_to_bench(
    sweep_dir, tmp_path, monkeypatch, capsys
):
    err = analysis_error(monkeypatch, capsys, "plot", "dynamics", sweep_dir, "--alpha", "0.5", "--out", tmp_path / "f")
    assert "no MESS+ run of bench logiqa has it" in err and "pick the bench with --bench" in err
