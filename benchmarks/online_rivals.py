"""MESS+ against its online rivals (sim/routers/ts_queue.py, linucb_queue.py, primal_dual.py): per bench, each
one's mean satisfaction and cost per request over seeds, and on how many seeds it kept the SLA; for MESS+ also the
share of its cost spent exploring (every model answers an exploration), which the bandits never pay. Defaults
otherwise: alpha mid, V = 1e-3, c = 0.1, seeds 42-44.

    python benchmarks/online_rivals.py --traces data/traces/qwen2.parquet
    python benchmarks/online_rivals.py                                   # the bundled synthetic demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from messplus.sim.cli import DEMO
from messplus.sim.config import SweepConfig
from messplus.sim.sweep import run_sweep

RIVALS = ("ts-queue", "linucb-queue", "primal-dual")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=Path, default=Path(str(DEMO)))
    ap.add_argument("--seeds", default="42,43,44")
    args = ap.parse_args()
    cfg = SweepConfig(seeds=tuple(int(s) for s in args.seeds.split(",")), methods=("messplus", *RIVALS))
    res = run_sweep(cfg, args.traces)
    runs = res.runs
    spent = res.steps.join(runs.select("run_id", "bench", "method"), on="run_id").filter(pl.col("method") == "messplus")
    explore = (
        spent.sort("run_id", "t")
        .with_columns(
            (pl.col("running_cost") * pl.col("t") - (pl.col("running_cost") * pl.col("t")).shift(1, fill_value=0.0)
             .over("run_id")).alias("step_cost")
        )
        .group_by("bench")
        .agg((pl.col("step_cost").filter(pl.col("explored")).sum() / pl.col("step_cost").sum()).alias("share"))
    )  # fmt: skip
    share = dict(explore.iter_rows())
    cols = ("messplus", *RIVALS)
    print("| bench (alpha) | " + " | ".join(cols) + " | MESS+ exploring | cheapest that kept the SLA on every seed |")
    print("|---" * (len(cols) + 3) + "|")
    wins = 0
    for bench in runs["bench"].unique(maintain_order=True):
        b = runs.filter(pl.col("bench") == bench)
        cell = {m: b.filter(pl.col("method") == m) for m in cols}
        fmt = lambda r: (f"{100 * r['satisfaction'].mean():.1f}% / {r['cost_per_request'].mean():.4g} "  # noqa: E731
                         f"({r['sla_met'].sum()}/{r.height})")  # fmt: skip
        kept = {m: r["cost_per_request"].mean() for m, r in cell.items() if r["sla_met"].all()}
        best = min(kept, key=kept.get) if kept else "none"
        wins += best == "messplus"
        print(f"| {bench} ({b['alpha'][0]:.3f}) | " + " | ".join(fmt(cell[m]) for m in cols)
              + f" | {100 * share.get(bench, np.nan):.0f}% | {best} |")  # fmt: skip
    print(f"\nMESS+ the cheapest that kept the SLA on every seed on {wins} of {runs['bench'].n_unique()} benches")


if __name__ == "__main__":
    main()
