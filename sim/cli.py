"""`sim`: replay traces under a grid of configurations (`sim sweep`) and precompute embeddings (`sim embed`)."""

from __future__ import annotations

import inspect
import sys
import time
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from messplus.common import UserError, pick_device, progress_bars, run_cli
from messplus.common.options import command
from messplus.sim import presets
from messplus.sim.config import SweepConfig
from messplus.sim.metrics import predictor_quality, z_critical
from messplus.sim.plan import PlanConfig
from messplus.sim.routers import MESSPLUS

DEMO = files("messplus.traces") / "data" / "demo.parquet"
app = typer.Typer(help="Replay measured traces under routing policies.", no_args_is_help=True)
console = Console(width=150)


@app.callback()
def _root() -> None:
    """Replay measured traces under routing policies."""


def floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{name}: expected a comma list of numbers, got {text!r}") from None


def words(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def summary_table(runs: pl.DataFrame, unit: str) -> Table:
    """Mean +- std over seeds per bench, method and configuration."""
    keys = ["bench", "method", "alpha", "V", "c", "k", "feedback", "cost_estimate"]
    agg = (
        runs.group_by(keys, maintain_order=True)
        .agg(
            pl.len().alias("n"),
            (100 * pl.col("satisfaction")).mean().alias("sat"),
            (100 * pl.col("satisfaction")).std().alias("sat_sd"),
            pl.col("cost_per_request").mean().alias("cost"),
            pl.col("cost_per_request").std().alias("cost_sd"),
            pl.col("cost_vs_opt").mean().alias("vs_opt"),
            pl.col("sla_met").sum().alias("met"),
        )
        .sort(["bench", "alpha"], maintain_order=True)
    )
    table = Table(title="sweep summary: mean ± std over seeds", title_justify="left")
    for col in (
        "bench",
        "method",
        "alpha %",
        "V",
        "c",
        "satisfaction %",
        f"cost/request ({unit})",
        "cost / E_OPT",
        "SLA",
    ):
        table.add_column(col, justify="left" if col in ("bench", "method") else "right", overflow="fold")
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in agg.iter_rows(named=True):
        sla = (
            f"[green]met {r['met']}/{r['n']}[/]"
            if r["met"] == r["n"]
            else f"[red]missed {r['n'] - r['met']}/{r['n']}[/]"
        )
        table.add_row(
            r["bench"],
            r["method"],
            fmt(None if r["alpha"] is None else 100 * r["alpha"], ".2f"),
            fmt(r["V"], "g"),
            fmt(r["c"], "g"),
            f"{fmt(r['sat'], '.2f')} ± {fmt(r['sat_sd'] or 0.0, '.2f')}",
            f"{fmt(r['cost'], '.4g')} ± {fmt(r['cost_sd'] or 0.0, '.3g')}",
            fmt(r["vs_opt"], ".2f"),
            sla,
        )
    return table


def predictor_table(quality: pl.DataFrame, models: list[str]) -> Table:
    """Is the predictor never worse than counting, and does it tell requests apart? Late BCE beside the base rate's,
    the worst calibration gap beside the base rate's, and the AUC per model, means over seeds."""
    table = Table(
        title="MESS+ predictor on the second half of each stream, before each request's update (mean over seeds): "
        "BCE and the worst model's |mean prediction - explored accuracy|, each beside the base rate's (red: worse "
        "than counting, means over seeds); AUC per model (z: standard errors above chance; green: above the 5% level "
        "corrected for the number of models)",
        title_justify="left",
    )
    learns = quality["learn"].n_unique() > 1  # a column only when the sweep compared what the predictor learns from
    cols = ("bench", "c", "k", *(["learn"] if learns else []), "BCE (base rate)", "gap (base rate)", "AUC per model")
    for col in cols:  # one model a line in the last column: a wide zoo adds lines, never splits a model's name
        table.add_column(col, justify="left" if col in ("bench", "learn", "AUC per model") else "right")
    z_crit = z_critical(len(models))
    worst = lambda gaps: max((g for g in gaps if g is not None), default=None)  # noqa: E731
    for r in quality.iter_rows(named=True):
        aucs = "\n".join(
            f"{m}: -" if a is None else f"{m}: [{'green' if z >= z_crit else 'red'}]{a:.3f} (z {z:.1f})[/]"
            for m, a, z in zip(models, r["auc"], r["z"], strict=True)
        )
        colour = "red" if r["worse"] else "green"
        gap, base_gap = worst(r["gap"]), worst(r["base_gap"])
        counting = [
            f"[{colour}]{r['bce']:.4f}[/] ({r['base_bce']:.4f})",
            "-" if gap is None else f"[{colour}]{gap:.3f}[/] ({base_gap:.3f})",
        ]
        table.add_row(r["bench"], f"{r['c']:g}", f"{r['k']:g}", *([r["learn"]] if learns else []), *counting, aucs)
    return table


@app.command()
def embed(
    traces: Annotated[Path, typer.Option(help="Trace file or folder whose request texts to embed.")],
    encoder: Annotated[
        str, typer.Option(help="minilm (offline), modernbert (the paper's), or an HF id/path.")
    ] = "minilm",
    bench: Annotated[str | None, typer.Option(help="Comma list of benches (default: all).")] = None,
    pooling: Annotated[
        str | None, typer.Option(help="cls (first token, the paper's) or mean (default: the encoder's preset).")
    ] = None,
    max_length: Annotated[int | None, typer.Option(help="Encoder max tokens (default: the bench's).")] = None,
    revision: Annotated[str | None, typer.Option(help="Hub revision of the encoder.")] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 64,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Embedding cache folder (default: $MESSPLUS_CACHE if set, else ~/.cache/messplus/embeddings)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[str, typer.Option(help="Encoder arithmetic: float32 or bfloat16 (GPU).")] = "float32",
) -> None:
    """Precompute request embeddings into the cache; `sim sweep` embeds whatever is missing on its own."""
    from messplus.sim.embed import check_settings, embed_texts
    from messplus.traces.dense import to_arrays
    from messplus.traces.io import load_benches

    benches = None if bench is None else words(bench)
    if benches == ():
        raise UserError("--bench: give at least one bench name; leave the option out for every bench")
    for flag, value in (("--encoder", encoder), ("--revision", revision)):
        if value is not None and not value.strip():
            raise UserError(f"{flag}: empty; give a value or leave the option out")
    check_settings("cls" if pooling is None else pooling, max_length, dtype, batch_size)  # before anything loads
    device = pick_device(device)
    found = load_benches(traces, benches)
    for name in found:
        texts = to_arrays(found[name], name).texts
        t0 = time.perf_counter()
        with progress_bars(console) as bars:
            X, enc_id = embed_texts(
                texts, encoder, name, pooling=pooling or presets.preset(presets.family(encoder), name).pooling,
                max_length=max_length, revision=revision,
                device=device, dtype=dtype, batch_size=batch_size, cache_dir=cache_dir, progress=bars,
            )  # fmt: skip
        console.print(f"{name}: {len(texts)} texts -> {X.shape[1]}-dim, {enc_id}, {time.perf_counter() - t0:.2f} s")


def sweep(cfg: SweepConfig, traces: Path, out: Path, overwrite: bool, ray: str | None) -> None:
    """Replay a trace under the Cartesian product of every grid option, for MESS+ and the chosen routers and
    bounds. Options that take a comma list span one axis of the grid each."""
    from messplus.sim.distributed import cluster
    from messplus.sim.results import check_out, options
    from messplus.sim.sweep import run_sweep

    check_out(out, options(cfg, traces), overwrite)
    console.print(header(cfg, traces), highlight=False)
    t0 = time.perf_counter()
    with cluster(ray) as spread, progress_bars(console) as bars:
        results = run_sweep(cfg, traces, bars, tables=None if spread is None else spread.sweep)
    paths = results.write(out)
    console.print(summary_table(results.runs, cfg.cost))
    quality = predictor_quality(results.runs)
    if quality.height:
        console.print(predictor_table(quality, results.meta["models"]))
    for w in results.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    n_mess = results.runs.filter(pl.col("method") == MESSPLUS).height
    elapsed = time.perf_counter() - t0
    console.print(f"{results.runs.height} runs ({n_mess} MESS+) in {elapsed:.1f} s -> {', '.join(map(str, paths))}")


def header(cfg: SweepConfig, traces: Path) -> str:
    """One line that says what is replayed, under which SLA, and where the paper's setting is."""
    demo = traces.resolve() == Path(str(DEMO)).resolve()
    what = (
        "the bundled synthetic demo zoo (Llama 1B/8B/70B, calibrated to the paper's Table 2)" if demo else str(traces)
    )
    rules = {"mid": "mid (halfway between the cheapest and the best model's accuracy, per bench)",
             "paper": "paper (the paper's per-bench alpha)"}  # fmt: skip
    spell = lambda a: f"{a[0]}={a[1]}" if isinstance(a, tuple) else rules.get(a) or f"{a:g}"  # noqa: E731
    alphas = ", ".join(map(spell, cfg.alphas))
    hint = "" if "paper" in cfg.alphas else "; the paper's setting: --alpha paper (README: Reproducing the paper)"
    return f"Replaying {what}; alpha {alphas}{hint}"


SWEEP_PATHS = [
    inspect.Parameter("traces", inspect.Parameter.KEYWORD_ONLY, default=Path(str(DEMO)), annotation=Annotated[
        Path, typer.Option(help="Trace file or folder (default: the bundled synthetic demo zoo).")]),
    inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=Path("results/sweep"), annotation=Annotated[
        Path, typer.Option(help="Results folder: runs.parquet, steps.parquet and predictions.parquet, replaced "
                           "as one set.")]),
    inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option(help="Replace a results folder written with other options (same options: always).")]),
]  # fmt: skip
LOCAL = "local"  # --ray alone: Ray's address for a new cluster on this machine
RAY = inspect.Parameter("ray", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
    str | None, typer.Option(metavar="[ADDRESS]", help="Spread the work over a Ray cluster, with the same results "
                             "as one process: --ray alone starts one on this machine's cores, --ray auto joins the "
                             "running cluster, --ray HOST:PORT (or ray://HOST:PORT) a given one. Needs pip install "
                             "-e '.\\[ray]' (README: More than one machine).")])  # fmt: skip
app.command("sweep")(command(SweepConfig, sweep, [*SWEEP_PATHS, RAY]))


def plan(cfg: PlanConfig, traces: Path, out: Path, ray: str | None) -> None:
    """The cheapest policy, of any family, whose running satisfaction at --by (and every --every requests after)
    meets --alpha on at least --confidence of all orders of the trace, as bounded at --assurance from --seeds orders.
    Candidates: MESS+ settings (alpha handed to it, V, c), every single model, and every deployable router (a
    stationary mix measured on the calibration split, the RouteLLM- and RouterDC-style routers, each handed alpha
    plus each margin). Writes plan.parquet (each family's best per bench, the pick marked) and risk_<bench>.png
    (share of orders that met the SLA against cost). Empirical: it covers orders of this trace, not a stream with
    another mix of requests."""
    from messplus.sim.distributed import cluster
    from messplus.sim.plan import HERE, check_plan_out, risk_figure, run_plan, write_plan
    from messplus.sim.results import UNITS

    check_plan_out(out, traces)
    check_plan(cfg, traces)
    with cluster(ray) as spread, progress_bars(console) as bars:
        table, candidates = run_plan(cfg, traces, bars, HERE if spread is None else spread.replays(bars))
    unit = UNITS.get(cfg.cost, (cfg.cost, 1.0, cfg.cost))[2]
    rows = {b: g.to_dicts() for (b,), g in table.group_by("bench", maintain_order=True)}
    figures = lambda folder: [risk_figure(candidates[b], rows[b], unit, folder) for b in rows]  # noqa: E731
    paths = write_plan(table, cfg, traces, out, figures)
    console.print(plan_table(table, unit))
    console.print(f"-> {', '.join(map(str, paths))}")


def check_plan(cfg: PlanConfig, traces: Path) -> None:
    """What the planner would find only after loading inputs and training, checked before: the seed lists, enough
    --seeds for the bounds, and a given --by within each bench's scored stream."""
    cfg.check_seeds()
    if cfg.by is None:
        return
    from messplus.traces.io import load_benches

    for name, trace in load_benches(traces, cfg.benches or None).items():
        T = trace.df.filter(pl.col("bench") == name)["doc_id"].n_unique()
        S = T - round(cfg.calib_frac * T)  # the scored stream, as sim.bench.load splits it
        if cfg.by > S:
            raise UserError(f"bench {name}: --by {cfg.by} lies past the scored stream ({S} requests)")


def plan_table(table: pl.DataFrame, unit: str) -> Table:
    """Per bench, each family's best candidate, the plan first and marked."""
    r0 = table.row(0, named=True)
    out = Table(title=f"sim plan: per bench, each family's cheapest candidate that keeps the SLA on "
                f"{r0['confidence']:.0%} of orders at {r0['assurance']:.0%} assurance (else its most reliable, in "
                f"red), the plan marked *; cost per request in {unit}, explorations at the whole zoo's cost",
                title_justify="left")  # fmt: skip
    cols = ["bench: alpha by T0", "", "candidate", "alpha handed", "V", "c", "P(meet) [lower]", "cost/req to T0",
            "whole stream", "saves vs single", "validated"]  # fmt: skip
    for col in cols:
        out.add_column(col, justify="left" if col in cols[:3] else "right", overflow="fold")
    f = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for (bench,), g in table.group_by("bench", maintain_order=True):
        for i, r in enumerate(g.sort("pick", descending=True, maintain_order=True).iter_rows(named=True)):
            where = f"{bench}: {r['alpha']:.3f} by {r['by']}" if i == 0 else ""
            saving = "-" if r["saving_vs_single"] is None else f"{r['saving_vs_single']:.0%} ({r['cheapest_single']})"
            meet = f"{f(r['p_meet'], '.2f')} [{f(r['p_meet_lower'], '.2f')}]"
            valid = f"{f(r['p_meet_validated'], '.3f')} of {r['validate_seeds']}" if r["p_meet_validated"] else "-"
            out.add_row(where, "*" if r["pick"] else "", r["method"], f(r["alpha_target"], ".3f"), f(r["V"], "g"),
                        f(r["c"], "g"), meet if r["meets"] else f"[red]{meet}[/]", f(r["cost_per_request"], ".4g"),
                        f(r["cost_per_request_stream"], ".4g"), saving, valid)  # fmt: skip
    return out


PLAN_PATHS = [SWEEP_PATHS[0], inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=Path("results/plan"),
              annotation=Annotated[Path, typer.Option(help="Folder for plan.parquet and the risk figures.")])]  # fmt: skip
app.command("plan")(command(PlanConfig, plan, [*PLAN_PATHS, RAY]))


def bare_ray(args: list[str]) -> list[str]:
    """`--ray` with no address (last, or before another option) means a local cluster: spelled out here, since the
    command line's options take a value or none, never an optional one."""
    out = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--ray" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append(LOCAL)
    return out


def main() -> None:
    sys.argv[1:] = bare_ray(sys.argv[1:])
    run_cli(app)
