"""How much of each model's outcome an encoder's embeddings hold: the ceiling for the online predictor's AUC.

Per bench and model, a logistic probe (sim.routers.logistic.fit_logistic) is fitted on 4/5 of the requests and scores the
held-out fifth, five times over a random order; the AUC of those out-of-fold scores is printed. Prints figures;
asserts nothing.

    python benchmarks/probe_auc.py [--traces PATH] [--encoder minilm] [--pooling mean] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from messplus.sim.embed import embed_texts
from messplus.sim.metrics import auc_z
from messplus.sim.presets import max_length as bench_max_length
from messplus.sim.routers.logistic import out_of_fold
from messplus.traces.dense import to_arrays
from messplus.traces.importers.messplus import import_messplus
from messplus.traces.io import load_benches, write_trace

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "qwen2-zoo"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=Path, help="trace file or folder (default: the shared Qwen2 traces)")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--pooling", default="mean")
    ap.add_argument("--cache-dir", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.traces
        if path is None:
            if not SHARED.is_dir():
                raise SystemExit(f"give --traces, or place the shared traces at {SHARED}")
            path = write_trace(import_messplus(sorted(SHARED.glob("*.json")), None)[0], Path(tmp) / "qwen2.parquet")
        found = load_benches(path, None)
        print(f"5-fold logistic probe AUC per model (z: standard errors above chance), {args.encoder}/{args.pooling}")
        for bench, trace in found.items():
            a = to_arrays(trace, bench)
            X, _ = embed_texts(
                a.texts, args.encoder, bench, pooling=args.pooling, max_length=bench_max_length(bench),
                cache_dir=args.cache_dir,
            )  # fmt: skip
            order = np.random.default_rng(0).permutation(len(X))
            scores = out_of_fold(X[order], a.satisfied[order])
            cells = [auc_z(scores[:, m], a.satisfied[order, m]) for m in range(len(a.models))]
            text = ", ".join(f"{m} {v:.3f} (z {z:.1f})" for m, (v, z) in zip(a.models, cells, strict=True))
            print(f"{bench} ({len(X)} requests): {text}")


if __name__ == "__main__":
    main()
