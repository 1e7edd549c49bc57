"""Speed of `sim sweep` on the paper's grid, against the per-request reference. Prints figures; asserts nothing.

Grid: 8 benchmarks x 3 seeds x 3 alpha x 3 c x 3 V = 648 MESS+ runs on 768-dim inputs. Satisfaction and energy
come from the real Qwen2 traces in ../shared when present (else the bundled synthetic zoo); the inputs are fixed
random 768-dim vectors standing in for cached ModernBERT embeddings (content does not change the work done).

    python benchmarks/sweep_speed.py [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from messplus.sim.config import RunConfig, SweepConfig
from messplus.sim.inputs import Inputs
from messplus.sim.reference import simulate_reference
from messplus.sim.sweep import load, run_sweep
from messplus.traces.importers.messplus import import_messplus
from messplus.traces.io import read_trace, write_trace

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "qwen2-zoo"
DEMO = Path(__file__).resolve().parents[1] / "traces" / "data" / "demo.parquet"


def trace_path(tmp: Path) -> tuple[Path, str]:
    if SHARED.is_dir():
        return write_trace(
            import_messplus(sorted(SHARED.glob("*.json")), None)[0], tmp / "qwen2.parquet"
        ), "qwen2-zoo (real)"
    return DEMO, "synthetic demo (../shared absent)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=768)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path, label = trace_path(Path(tmp))
        trace = read_trace(path)
        rng = np.random.default_rng(0)
        inputs = {}
        for b in trace.benches:
            T = trace.df.filter(trace.df["bench"] == b)["doc_id"].n_unique()
            X = rng.standard_normal((T, args.dim)).astype(np.float32)
            inputs[b] = Inputs(X, f"random-{args.dim}", "paper")  # the paper's predictor settings
        cfg = SweepConfig(
            benches=tuple(trace.benches),
            alphas=(0.6, 0.7, 0.8),
            Vs=(1e-4, 1e-3, 1e-2),
            cs=(0.1, 0.5, 1.0),
            seeds=(42, 43, 44),
            methods=("messplus",),
        )
        fast_times = []
        for _ in range(3):  # fastest of 3, as for the reference below
            t0 = time.perf_counter()
            res = run_sweep(cfg, path, inputs=inputs)
            fast_times.append(time.perf_counter() - t0)
        fast = min(fast_times)
        n_runs = res.runs.height
        n_req = int(res.runs["n_requests"].sum())
        explore = res.runs.group_by("c").agg(pl.col("n_explore").mean()).sort("c")

        # The reference on a subset: one run per c on the smallest bench. An exploration (3 training epochs) costs
        # far more than an exploitation, and short streams explore more often, so per-request time does not carry
        # over between benches; fit a time per exploration and per exploitation and extrapolate with the grid's counts.
        small = min(trace.benches, key=lambda b: inputs[b].X.shape[0])
        b = load(cfg, trace, small, inputs[small])
        d = b.draws[42]
        X64 = b.X.astype(np.float64)
        warm = RunConfig(alpha=0.7, V=1e-3, c=1.0, seed=42)  # first calls pay torch's start-up; keep it out
        simulate_reference(X64, b.arrays.satisfied, b.E, d, warm, b.pred)
        counts, times = [], []
        for c in cfg.cs:  # fastest of 3: noise only ever slows the reference, which would flatter the speed-up
            run = RunConfig(alpha=0.7, V=1e-3, c=c, seed=42)
            best = np.inf
            for _ in range(3):
                t1 = time.perf_counter()
                out = simulate_reference(X64, b.arrays.satisfied, b.E, d, run, b.pred, dtype=torch.float32)
                best = min(best, time.perf_counter() - t1)
            n_explore = int(out.explored.sum())
            counts.append((len(d.stream) - n_explore, n_explore))
            times.append(best)
        (t_exploit, t_explore), *_ = np.linalg.lstsq(np.array(counts, float), np.array(times), rcond=None)
        n_explore = res.runs["n_explore"].to_numpy()
        ref_total = float(((res.runs["n_requests"].to_numpy() - n_explore) * t_exploit + n_explore * t_explore).sum())
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

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
        f"reference: {1e3 * t_exploit:.2f} ms per exploitation, {1e3 * t_explore:.2f} ms per exploration "
        f"(least squares over c = {', '.join(map(str, cfg.cs))} on {small}, {len(d.stream)} requests, fastest of 3; "
        f"measured {', '.join(f'{t:.2f}' for t in times)} s)"
    )
    print(f"reference, extrapolated to the grid: {ref_total:,.0f} s = {ref_total / 3600:.2f} h")
    print(f"speed-up: {ref_total / fast:,.0f}x")
    print(f"peak memory (max RSS): {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
