"""Embedding throughput with the bundled MiniLM: every unique request text of the shared Qwen2 traces (8 benches),
first into an empty cache, then again from the cache. Prints figures; asserts nothing.

    python benchmarks/embed_speed.py [--encoder minilm] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from messplus.sim.embed import embed_texts
from messplus.traces.dense import to_arrays
from messplus.traces.importers.messplus import import_messplus

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "qwen2-zoo"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not SHARED.is_dir():
        raise SystemExit(f"needs the shared traces at {SHARED}")
    trace, _ = import_messplus(sorted(SHARED.glob("*.json")), None)
    texts = {b: to_arrays(trace, b).texts for b in trace.benches}
    n_unique = sum(len(set(t)) for t in texts.values())
    with tempfile.TemporaryDirectory() as cache:
        timings = []
        for label in ("empty cache", "from cache"):
            t0 = time.perf_counter()
            for b, t in texts.items():
                embed_texts(t, args.encoder, b, cache_dir=Path(cache))
            timings.append(time.perf_counter() - t0)
            print(f"{label}: {timings[-1]:.2f} s for {n_unique:,} unique texts of {len(texts)} benches")
    print(f"throughput, empty cache: {1000 * timings[0] / n_unique:.2f} s per 1000 texts ({args.threads} threads)")


if __name__ == "__main__":
    main()
