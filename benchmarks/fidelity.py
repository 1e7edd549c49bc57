"""Does MESS+ keep its promise with default settings? One row per bench: each method's mean satisfaction and cost
per request over seeds, whether MESS+ ends within half a point of alpha, and whether it is the cheapest of the
adaptive methods (MESS+, educated guessing as published, RouteLLM both ways, RouterDC) that end within 1 point of
alpha.

    python benchmarks/fidelity.py --traces data/traces/qwen2.parquet            # alpha mid, minilm
    python benchmarks/fidelity.py --paper-alphas                                 # the synthetic demo, --alpha paper
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from messplus.sim.cli import DEMO
from messplus.sim.config import SweepConfig
from messplus.sim.sweep import run_sweep

ADAPTIVE = ("educated", "routellm", "routellm-paper", "routerdc")
SHOWN = ("messplus", *ADAPTIVE, "oracle", "mix", "opt")


def fmt(r: dict | None) -> str:
    return (
        "-"
        if r is None or r["satisfaction"] is None
        else f"{100 * r['satisfaction']:.1f}% / {r['cost_per_request']:.4g}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=Path, default=Path(str(DEMO)))
    ap.add_argument("--paper-alphas", action="store_true", help="the paper's alpha per bench instead of mid")
    ap.add_argument("--seeds", default="42,43,44")
    args = ap.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    alphas = ("paper",) if args.paper_alphas else ("mid",)
    runs = run_sweep(SweepConfig(seeds=seeds, alphas=alphas), args.traces).runs
    mean = runs.group_by("bench", "method", "alpha", maintain_order=True).agg(
        pl.col("satisfaction").mean(), pl.col("cost_per_request").mean(), pl.col("sla_met").sum()
    )
    singles = sorted(m for m in mean["method"].unique() if m.startswith("single:"))
    cols = [*SHOWN[:5], *singles, *SHOWN[5:]]
    print("| bench (alpha) | " + " | ".join(cols) + " | within 0.5 pt | cheapest adaptive |")
    print("|---" * (len(cols) + 3) + "|")
    kept = cheapest = 0
    for bench in mean["bench"].unique(maintain_order=True):
        b = mean.filter(pl.col("bench") == bench)
        alpha = b["alpha"][0]
        cell = {r["method"]: r for r in b.iter_rows(named=True)}
        mess = cell["messplus"]
        ok = mess["satisfaction"] >= alpha - 0.005
        rivals = [
            cell[m]["cost_per_request"] for m in ADAPTIVE if m in cell and cell[m]["satisfaction"] >= alpha - 0.01
        ]
        best = mess["satisfaction"] >= alpha - 0.01 and all(mess["cost_per_request"] < c for c in rivals)
        kept, cheapest = kept + ok, cheapest + best
        print(
            f"| {bench} ({alpha:.3f}) | "
            + " | ".join(fmt(cell.get(m)) for m in cols)
            + f" | {'yes' if ok else 'no'} | {'yes' if best else 'no'} |"
        )
    n = mean["bench"].n_unique()
    print(
        f"\nMESS+ within half a point of alpha on {kept} of {n} benches; the cheapest adaptive method within 1 point "
        f"on {cheapest} of {n}"
    )


if __name__ == "__main__":
    main()
