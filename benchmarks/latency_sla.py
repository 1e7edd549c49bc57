"""MESS+ with two SLAs: satisfaction at least alpha and mean latency at most L, kept by two virtual queues. Per
bench, L lies between the fastest and the slowest model's mean latency (halfway, or at --at of the way); alpha mid,
V = 1e-3, c = 0.1, seeds 42-44. One row per bench: MESS+'s satisfaction, mean latency and cost per request (means
over seeds), and whether it ends within 1% of both (satisfaction >= alpha - 0.01, latency <= 1.01 L).

    python benchmarks/latency_sla.py --traces data/traces/qwen2.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

from messplus.sim.cli import DEMO
from messplus.sim.config import SweepConfig
from messplus.sim.sweep import run_sweep
from messplus.traces.dense import to_arrays
from messplus.traces.io import load_benches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=Path, default=Path(str(DEMO)))
    ap.add_argument("--at", type=float, default=0.5, help="where L lies from the fastest (0) to the slowest (1)")
    ap.add_argument("--methods", default="messplus,ts-queue,linucb-queue,primal-dual")
    args = ap.parse_args()
    print("| bench | alpha | L (s) | method | satisfaction | mean latency (s) | cost/request | within 1% of both |")
    print("|---|---|---|---|---|---|---|---|")
    kept, n = 0, 0
    for bench, trace in load_benches(args.traces).items():
        lat = to_arrays(trace, bench).costs["latency_s"].mean(0)
        sla = float(lat.min() + args.at * (lat.max() - lat.min()))
        cfg = SweepConfig(benches=(bench,), latency_sla=sla, methods=tuple(args.methods.split(",")))
        runs = run_sweep(cfg, args.traces).runs
        for (method,), r in runs.group_by("method", maintain_order=True):
            sat, took, alpha = r["satisfaction"].mean(), r["mean_latency_s"].mean(), r["alpha"][0]
            ok = sat >= alpha - 0.01 and took <= 1.01 * sla
            if method == "messplus":
                kept, n = kept + ok, n + 1
            print(f"| {bench} | {alpha:.3f} | {sla:.3f} | {method} | {100 * sat:.1f}% | {took:.3f} | "
                  f"{r['cost_per_request'].mean():.4g} | {'yes' if ok else 'no'} |", flush=True)  # fmt: skip
    print(f"\nMESS+ within 1% of both SLAs on {kept} of {n} benches")


if __name__ == "__main__":
    main()
