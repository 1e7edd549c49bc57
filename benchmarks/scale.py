"""How one MESS+ run scales with the stream: T in {10k, 100k, 1M} requests, 3 models, 768-dim random inputs passed
in memory, c in {0.1, 1}, one seed. Prints figures; asserts nothing.

Each (T, c) runs in a fresh process, so its peak resident memory (VmHWM) is its own. The per-request reference
(sim/reference.py) is then timed directly on whole runs of the 10k stream, in this process.

    python benchmarks/scale.py [--T 10000,100000,1000000] [--c 0.1,1] [--threads 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from messplus.sim.bench import load
from messplus.sim.config import RunConfig, SweepConfig
from messplus.sim.inputs import Inputs
from messplus.sim.reference import simulate_reference
from messplus.sim.sweep import run_sweep
from messplus.traces.io import load_benches, write_trace
from messplus.traces.synth import PAPER_TABLE2, synth_trace

BENCH, DIM = "boolq", 768


def trace_file(T: int, folder: Path) -> Path:
    """A synthetic BoolQ stream of about T requests (3 models) as a trace file."""
    return write_trace(synth_trace([BENCH], n_features=1, scale=T / PAPER_TABLE2[BENCH][0]), folder / f"T{T}.parquet")


def inputs_for(path: Path) -> dict[str, Inputs]:
    """[T, 768] fixed random inputs with the paper's predictor settings: content does not change the work done."""
    T = load_benches(path)[BENCH].df["doc_id"].n_unique()
    X = np.random.default_rng(0).standard_normal((T, DIM), dtype=np.float32)
    return {BENCH: Inputs(X, f"random-{DIM}", "paper")}


def config(c: float) -> SweepConfig:
    return SweepConfig(benches=(BENCH,), seeds=(42,), cs=(c,), methods=("messplus",), steps_every=1000)


def one(path: Path, c: float, threads: int, out: mp.Queue) -> None:
    """In a child process: seconds of the sweep, request-steps, and peak resident memory (MiB)."""
    torch.set_num_threads(threads)
    inputs = inputs_for(path)
    t0 = time.perf_counter()
    runs = run_sweep(config(c), path, inputs=inputs).runs
    seconds = time.perf_counter() - t0
    out.put((seconds, int(runs["n_requests"].sum()), peak_mib()))


def peak_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec; ru_maxrss would carry over the
    parent's peak (it holds every stream's trace) into the spawned child."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reference_costs(path: Path, c: float) -> tuple[float, int, int]:
    """Seconds of one whole reference run on the stream, and its explored and exploited request counts."""
    cfg = config(c)
    b = load(cfg, load_benches(path)[BENCH], BENCH, inputs_for(path)[BENCH])
    run = RunConfig(alpha=b.alphas[0], V=1e-3, c=c, seed=42)
    t0 = time.perf_counter()
    steps = simulate_reference(b.X, b.arrays.satisfied, b.E, b.draws[42], run, b.pred, torch.float32)
    return time.perf_counter() - t0, int(steps.explored.sum()), int((~steps.explored).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", default="10000,100000,1000000")
    ap.add_argument("--c", default="0.1,1")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    Ts, cs = [int(t) for t in args.T.split(",")], [float(c) for c in args.c.split(",")]
    spawn = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {T: trace_file(T, Path(tmp)) for T in Ts}
        for T in Ts:
            for c in cs:
                q = spawn.Queue()
                p = spawn.Process(target=one, args=(paths[T], c, args.threads, q))
                p.start()
                seconds, steps, mib = q.get()
                p.join()
                print(f"scale T={T} c={c:g}: {seconds:.2f} s, {steps / seconds:,.0f} steps/s, peak {mib:.0f} MiB")
        torch.set_num_threads(args.threads)
        for c in cs:
            seconds, explored, exploited = reference_costs(paths[min(Ts)], c)
            n = explored + exploited  # the scored requests, as the sweep's steps/s counts them
            print(f"reference, whole run T={min(Ts)} c={c:g}: {seconds:.2f} s = {1e3 * seconds / n:.3f} ms per "
                  f"scored request ({explored} explored, {exploited} exploited)")  # fmt: skip


if __name__ == "__main__":
    main()
