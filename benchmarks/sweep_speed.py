"""Speed of `sim sweep` on the paper's grid, against the per-request reference. Prints figures; asserts nothing.

Grid: 8 benchmarks x 3 seeds x 3 alpha x 3 c x 3 V = 648 MESS+ runs on 768-dim inputs. Satisfaction and energy
come from the real Qwen2 traces in ../shared when present (else the bundled synthetic zoo); the inputs are fixed
random 768-dim vectors standing in for cached ModernBERT embeddings (content does not change the work done).

The reference is timed on whole runs: one run drawn at random from each (bench, c) cell of the grid, its time
scaled by the number of runs in its cell. Bench (stream length, epochs) and c (how often a run explores and trains)
set a run's cost; seed, alpha and V barely touch it.

    python benchmarks/sweep_speed.py [--threads 2] [--per-cell 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import torch

from messplus.sim.bench import load
from messplus.sim.config import RunConfig, SweepConfig
from messplus.sim.inputs import Inputs
from messplus.sim.reference import simulate_reference
from messplus.sim.sweep import run_sweep
from messplus.traces.importers.messplus import import_messplus
from messplus.traces.io import Trace, read_trace, write_trace

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "qwen2-zoo"
DEMO = Path(__file__).resolve().parents[1] / "traces" / "data" / "demo.parquet"


def trace_path(tmp: Path) -> tuple[Path, str]:
    """The real Qwen2 zoo written as one trace file when ../shared has it, else the bundled demo."""
    if SHARED.is_dir():
        return write_trace(
            import_messplus(sorted(SHARED.glob("*.json")), None)[0], tmp / "qwen2.parquet"
        ), "qwen2-zoo (real)"
    return DEMO, "synthetic demo (../shared absent)"


def random_inputs(trace: Trace, dim: int) -> dict[str, Inputs]:
    """Per bench, fixed random [T, dim] inputs with the paper's predictor settings: content does not change the work."""
    rng = np.random.default_rng(0)
    inputs = {}
    for b in trace.benches:
        T = trace.df.filter(trace.df["bench"] == b)["doc_id"].n_unique()
        inputs[b] = Inputs(rng.standard_normal((T, dim)).astype(np.float32), f"random-{dim}", "paper")
    return inputs


def paper_grid(trace: Trace) -> SweepConfig:
    """The paper's MESS+ grid over every bench of the trace: 3 seeds x 3 alpha x 3 c x 3 V per bench."""
    return SweepConfig(
        benches=tuple(trace.benches),
        alphas=(0.6, 0.7, 0.8),
        Vs=(1e-4, 1e-3, 1e-2),
        cs=(0.1, 0.5, 1.0),
        seeds=(42, 43, 44),
        methods=("messplus",),
    )


def timed(fn, repeats: int) -> tuple[list[float], object]:
    """Seconds of each of `repeats` calls, and the last result. Callers keep the fastest: noise on a shared machine
    only ever slows a call, and the first call also pays one-off start-up (torch, compiled kernels)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def sample_runs(runs: pl.DataFrame, per_cell: int, seed: int = 0) -> pl.DataFrame:
    """`per_cell` runs drawn at random from each (bench, c) cell, each with `cell_runs`, the runs of its cell."""
    cells = runs.with_columns(cell_runs=pl.len().over("bench", "c"))
    return cells.filter(pl.int_range(pl.len()).shuffle(seed).over("bench", "c") < per_cell)


def time_reference(cfg: SweepConfig, trace: Trace, inputs: dict[str, Inputs], sample: pl.DataFrame, repeats: int):
    """[n] seconds for each sampled run of the per-request reference, in the sweep's arithmetic (fastest of repeats)."""
    dtype = getattr(torch, cfg.dtype)
    benches = {name: load(cfg, trace, name, inputs[name]) for name in sample["bench"].unique(maintain_order=True)}
    times = []
    for row in sample.iter_rows(named=True):
        b = benches[row["bench"]]
        run = RunConfig(
            alpha=row["alpha"], V=row["V"], c=row["c"], k=row["k"], feedback=row["feedback"],
            cost_estimate=row["cost_estimate"], seed=row["seed"],
        )  # fmt: skip
        ref = partial(simulate_reference, b.X, b.arrays.satisfied, b.E, b.draws[run.seed], run, b.pred, dtype)
        times.append(min(timed(ref, repeats)[0]))
    return np.array(times)


def scaled_to_grid(sample: pl.DataFrame, ref_times: np.ndarray) -> float:
    """Seconds for the whole grid: each cell's mean sampled time x the runs of that cell (no model, so never < 0)."""
    cells = sample.with_columns(t=ref_times).group_by("bench", "c")
    return float(cells.agg(pl.col("t").mean() * pl.col("cell_runs").first()).get_column("t").sum())


def report(label: str, args, cfg: SweepConfig, runs: pl.DataFrame, fast_times: list[float], sample, ref_times) -> None:
    """Print the figures; sample [n rows of runs] and ref_times [n] are the timed reference runs."""
    n_runs, n_req, fast = runs.height, int(runs["n_requests"].sum()), min(fast_times)
    explore = runs.group_by("c").agg(pl.col("n_explore").mean()).sort("c")
    ref_total = scaled_to_grid(sample, ref_times)
    cell = sample["cell_runs"].max()
    print(f"trace: {label}; inputs: {args.dim}-dim; torch threads: {args.threads}")
    print(
        f"grid: {len(cfg.benches)} benches x 3 seeds x 3 alpha x 3 c x 3 V = {n_runs} MESS+ runs, {n_req:,} request-steps"
    )
    print("mean explorations per run by c: " + ", ".join(f"c={c}: {n:.0f}" for c, n in explore.iter_rows()))
    print(
        f"fast engine: {fast:.2f} s for the whole grid, fastest of {', '.join(f'{t:.2f}' for t in fast_times)} s "
        f"({n_req / fast:,.0f} request-steps/s)"
    )
    print(
        f"reference: {ref_times.mean():.2f} s per run on a sample of {len(ref_times)} whole runs ({args.per_cell} drawn "
        f"at random from each bench x c cell of {cell} runs), {int(sample['n_requests'].sum()):,} request-steps, "
        f"fastest of {args.repeats}; measured {', '.join(f'{t:.2f}' for t in ref_times)} s"
    )
    print(
        f"reference, extrapolated to the grid: {ref_total:,.0f} s = {ref_total / 3600:.2f} h "
        "(each cell's mean sampled time x its runs)"
    )
    print(f"speed-up: {ref_total / fast:,.0f}x")
    print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--per-cell", type=int, default=1, help="reference runs timed per (bench, c) cell")
    ap.add_argument("--repeats", type=int, default=3, help="timings of the sweep and of each reference run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path, label = trace_path(Path(tmp))
        trace = read_trace(path)
        inputs = random_inputs(trace, args.dim)
        cfg = paper_grid(trace)
        fast_times, res = timed(lambda: run_sweep(cfg, path, inputs=inputs), args.repeats)
        sample = sample_runs(res.runs, args.per_cell)
        ref_times = time_reference(cfg, trace, inputs, sample, args.repeats)
    report(label, args, cfg, res.runs, fast_times, sample, ref_times)


if __name__ == "__main__":
    main()
