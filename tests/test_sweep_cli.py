import polars as pl
import pyarrow.parquet as pq

from messplus.sim.results import KEY as RESULTS_KEY
from tests.conftest import cli
from tests.test_cli_traces import assert_one_line_error


def sweep(tmp_path, small_trace, out, *extra):
    args = ["sim", "sweep", "--traces", str(small_trace), "--bench", "logiqa,piqa", "--seeds", "1,2", "--out", str(out)]
    return cli(*args, *extra, cwd=tmp_path)


def test_sweep_writes_parquet_prints_summary_and_is_byte_identical(tmp_path, small_trace):
    a, b = tmp_path / "a", tmp_path / "b"
    r1 = sweep(tmp_path, small_trace, a, "--V", "1e-3,1e-4", "--c", "0.1,1")
    assert r1.returncode == 0, r1.stderr
    assert "sweep summary" in r1.stdout and "messplus" in r1.stdout and "routerdc" in r1.stdout
    assert sweep(tmp_path, small_trace, b, "--V", "1e-3,1e-4", "--c", "0.1,1").returncode == 0
    for name in ("runs.parquet", "steps.parquet", "predictions.parquet"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    runs = pl.read_parquet(a / "runs.parquet")
    mess = runs.filter(pl.col("method") == "messplus")
    assert mess.height == 2 * 2 * 2 * 2  # benches x seeds x V x c
    assert set(runs["method"]) >= {"educated", "routellm", "routerdc", "oracle", "opt", "single:llama-3.2-1b"}
    opt = runs.filter(pl.col("method") == "opt").select("bench", "seed", "cost_per_request")
    joined = mess.join(opt, on=["bench", "seed"], suffix="_opt")
    assert ((joined["cost_vs_opt"] - joined["cost_per_request"] / joined["cost_per_request_opt"]).abs() < 1e-9).all()
    assert (runs.group_by("bench", "seed").agg(pl.col("n_requests").n_unique())["n_requests"] == 1).all()
    meta = pq.read_schema(a / "runs.parquet").metadata[RESULTS_KEY].decode()
    assert '"messplus_version"' in meta and '"Vs": [0.001, 0.0001]' in meta


def test_impossible_alpha_warns_instead_of_crashing(tmp_path, small_trace):
    r = sweep(tmp_path, small_trace, tmp_path / "o", "--alpha", "0.99", "--methods", "messplus,oracle")
    assert r.returncode == 0, r.stderr
    assert "above what even the per-request oracle reaches" in r.stdout


def test_bad_sweep_options_are_one_line_errors(tmp_path, small_trace):
    assert_one_line_error(
        sweep(tmp_path, small_trace, tmp_path / "o", "--methods", "messplus,magic"), "--methods: 'magic' is not one of"
    )
    bad_bench = cli("sim", "sweep", "--traces", str(small_trace), "--bench", "mmlu", cwd=tmp_path)
    assert_one_line_error(bad_bench, "unknown bench 'mmlu'", "available: arc_challenge")
    assert_one_line_error(sweep(tmp_path, small_trace, tmp_path / "o", "--V", "fast"), "--V: expected a number")
    assert_one_line_error(sweep(tmp_path, small_trace, tmp_path / "o", "--cost", "cost_usd"), "cost column 'cost_usd'")


def test_steps_downsampling_keeps_the_last_step(tmp_path, small_trace):
    r = sweep(tmp_path, small_trace, tmp_path / "o", "--steps-every", "25", "--methods", "messplus")
    assert r.returncode == 0, r.stderr
    steps = pl.read_parquet(tmp_path / "o" / "steps.parquet")
    runs = pl.read_parquet(tmp_path / "o" / "runs.parquet")
    last = steps.group_by("run_id").agg(pl.col("t").max()).join(runs.select("run_id", "n_requests"), on="run_id")
    assert (last["t"] == last["n_requests"]).all()
    assert (steps.filter(pl.col("t") != pl.col("t").max().over("run_id"))["t"] % 25 == 0).all()


def test_baselines_alone_keep_the_full_schema(tmp_path, small_trace):
    r = sweep(tmp_path, small_trace, tmp_path / "o", "--methods", "opt")
    assert r.returncode == 0, r.stderr
    runs = pl.read_parquet(tmp_path / "o" / "runs.parquet")
    assert runs.height == 2 * 2 and runs["V"].null_count() == runs.height and "predictor_auc" in runs.columns
    assert pl.read_parquet(tmp_path / "o" / "steps.parquet").height == 0


def test_sweep_reports_whether_the_predictor_tells_requests_apart(tmp_path, small_trace):
    import numpy as np

    from messplus.sim.config import SweepConfig
    from messplus.sim.inputs import Inputs
    from messplus.sim.metrics import predictor_quality
    from messplus.sim.sweep import run_sweep

    fast = ("--lr", "0.1", "--momentum", "0.5", "--epochs", "3")  # a head that learns fast from these 8 features
    r = sweep(tmp_path, small_trace, tmp_path / "o", "--methods", "messplus", "--c", "1", *fast)
    assert r.returncode == 0, r.stderr
    assert "MESS+ predictor on the second half" in r.stdout and "BCE (base rate)" in r.stdout
    assert "does not tell requests apart" not in r.stdout  # the synthetic features carry each request's difficulty
    quality = predictor_quality(pl.read_parquet(tmp_path / "o" / "runs.parquet"))
    assert quality.height == 2 and all(max(z) > 2 for z in quality["z"])

    cfg = SweepConfig(benches=("piqa",), cs=(1.0,), seeds=(1, 2), methods=("messplus",), lr=0.1, momentum=0.5, epochs=3)
    T = pl.read_parquet(small_trace).filter(pl.col("bench") == "piqa")["doc_id"].n_unique()
    noise = {"piqa": Inputs(np.random.default_rng(0).standard_normal((T, 8)).astype(np.float32), "noise", "features")}
    res = run_sweep(cfg, small_trace, inputs=noise)
    assert any("piqa, c=1, k=0.25: the predictor does not tell requests apart" in w for w in res.warnings)


def test_results_of_other_options_are_replaced_only_when_asked(tmp_path, small_trace):
    out = tmp_path / "o"
    fast = ("--methods", "opt", "--bench", "piqa")
    assert sweep(tmp_path, small_trace, out, *fast).returncode == 0
    before = (out / "runs.parquet").read_bytes()
    refused = sweep(tmp_path, small_trace, out, *fast, "--alpha", "0.7")
    assert_one_line_error(refused, "another configuration", "alphas differs", "--overwrite")
    assert (out / "runs.parquet").read_bytes() == before  # nothing touched
    assert sweep(tmp_path, small_trace, out, *fast).returncode == 0  # the same options may always rerun
    assert sweep(tmp_path, small_trace, out, *fast, "--alpha", "0.7", "--overwrite").returncode == 0
    assert pl.read_parquet(out / "runs.parquet")["alpha"].unique().to_list() == [0.7]
    assert not list(tmp_path.glob(".o.*"))  # no temporary folder left behind
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert_one_line_error(sweep(tmp_path, small_trace, tmp_path / "mine", *fast), "not a results folder")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_alpha_paper_and_per_bench_alphas(small_trace):
    """--alpha paper takes the paper's per-bench alpha; BENCH=VALUE sets one bench's; each checked before work."""
    from dataclasses import fields

    from messplus.common import UserError
    from messplus.common.options import from_cli
    from messplus.sim.config import SweepConfig
    from messplus.sim.sweep import run_sweep

    def config(**given):  # as the command line hands the options over: comma lists as text
        text = lambda d: (",".join(map(str, d)) or None) if isinstance(d, tuple) else d  # noqa: E731
        return from_cli(SweepConfig, {f.name: given.get(f.name, text(f.default)) for f in fields(SweepConfig)})

    cfg = config(alphas="paper,logiqa=0.3", benches="logiqa,sciq", methods="messplus", seeds="1")
    assert cfg.alphas == ("paper", ("logiqa", 0.3))
    runs = run_sweep(cfg, small_trace).runs
    got = sorted(runs.select("bench", "alpha").unique().rows())
    assert got == [("logiqa", 0.3), ("logiqa", 0.4), ("sciq", 0.96)]  # the paper's LogiQA 0.40 and SciQ 0.96
    for alphas, message in (
        ("logiqa=0.3", "gives bench sciq no value"),
        ("bolq=0.8,0.5", "names bench 'bolq', which is not replayed here"),
        ("logiqa=1.5", "--alpha for logiqa: 1.5 is outside"),
        ("=0.5", "names no bench"),
    ):
        try:
            run_sweep(config(alphas=alphas, benches="logiqa,sciq", methods="messplus", seeds="1"), small_trace)
        except UserError as e:
            assert message in str(e), (alphas, e)
        else:
            raise AssertionError(f"--alpha {alphas} was accepted")
