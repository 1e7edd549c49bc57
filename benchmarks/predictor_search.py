"""The search behind sim.presets: which online-SGD settings let the predictor learn on an encoder's inputs.

For each (lr, momentum, epochs) it trains MESS+'s predictor on every bench of a trace (search seeds 1-3, never the
seeds 42-44 that README's tables use; c = 0.1 and 1) and scores the pre-update predictions on the second half of
each stream: BCE (a proper scoring rule: the routing rule reads these probabilities, not just their order), AUC,
how often the mean predictions rank the models as their explored accuracies do, and the share of dead ReLUs.
Clipping (1.0) and input dropout (0.1) stay at the reference code's values. Prints one line per setting, best BCE
first.

    python benchmarks/predictor_search.py --traces data/traces/qwen2.parquet --encoder minilm
    python benchmarks/predictor_search.py --encoder features          # the bundled synthetic demo
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import polars as pl

from messplus.sim.cli import DEMO
from messplus.sim.config import SweepConfig
from messplus.sim.metrics import bce
from messplus.sim.sweep import run_sweep

LRS = (0.001, 0.003, 0.01, 0.03, 0.1)
MOMENTA = (0.0, 0.5, 0.9)
EPOCHS = (1, 3)


def late_scores(res) -> dict[str, float]:
    """Mean over (bench, seed, c) of the second-half BCE, and of the AUC over models; rank and dead shares."""
    losses = []
    for _, g in res.predictions.group_by(["bench", "seed", "c"]):
        shat, y = np.stack(g["shat"].to_numpy()), np.stack(g["label"].to_numpy())
        half = len(y) // 2
        losses.append(bce(shat[half:].astype(float), y[half:]).mean())
    mess = res.runs.filter(pl.col("method") == "messplus")
    auc = np.nanmean([np.nanmean([np.nan if a is None else a for a in r]) for r in mess["predictor_auc"]])
    return {
        "bce": float(np.mean(losses)),
        "auc": float(auc),
        "rank_ok": float(mess["predictor_rank_ok"].fill_null(True).mean()),
        "dead": float(mess["predictor_dead"].mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=Path, default=Path(str(DEMO)))
    ap.add_argument("--encoder", default="auto")
    ap.add_argument("--seeds", default="1,2,3")
    args = ap.parse_args()
    base = SweepConfig(
        encoder=args.encoder, seeds=tuple(int(s) for s in args.seeds.split(",")), cs=(0.1, 1.0),
        methods=("messplus",), clip_norm=1.0, input_dropout=0.1, steps_every=10**9,
    )  # fmt: skip
    lines = []
    for lr, mu, ep in itertools.product(LRS, MOMENTA, EPOCHS):
        t0 = time.perf_counter()
        res = run_sweep(SweepConfig(**{**base.__dict__, "lr": lr, "momentum": mu, "epochs": ep}), args.traces)
        s = late_scores(res)
        lines.append((s["bce"], f"lr={lr:g} momentum={mu:g} epochs={ep}: BCE {s['bce']:.4f}, AUC {s['auc']:.3f}, "
                      f"ranks right {100 * s['rank_ok']:.0f}%, dead ReLUs {100 * s['dead']:.0f}% "
                      f"({time.perf_counter() - t0:.1f} s)"))  # fmt: skip
        print(lines[-1][1], flush=True)
    print("\nbest first:")
    for _, line in sorted(lines):
        print(line)


if __name__ == "__main__":
    main()
