"""A calibrated synthetic zoo: the MESS+ paper's Table 2 figures (Llama 3.2 1B / 3.1 8B / 3.3 70B, zero-shot).

Correctness comes from one latent difficulty per request, so models agree the way real ones do;
features are noisy views of that difficulty (and of request length, which drives energy), so an online
predictor has real but imperfect signal. Every cost is labelled `synthetic`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from messplus.traces.io import Trace
from messplus.traces.zoo import ModelSpec, Zoo

MODELS = (
    ModelSpec("llama-3.2-1b", hf_id="meta-llama/Llama-3.2-1B-Instruct"),
    ModelSpec("llama-3.1-8b", hf_id="meta-llama/Llama-3.1-8B-Instruct"),
    ModelSpec("llama-3.3-70b", hf_id="meta-llama/Llama-3.3-70B-Instruct"),
)
POWER_W = (120.0, 250.0, 1000.0)  # assumed mean draw, to turn energy into a plausible latency

# bench: (requests, accuracy % per model, energy J per request per model), paper Table 2
PAPER_TABLE2: dict[str, tuple[int, tuple[float, ...], tuple[float, ...]]] = {
    "arc_challenge": (1172, (37.88, 54.44, 60.84), (80, 394, 2003)),
    "arc_easy": (2376, (62.76, 79.72, 83.12), (82, 390, 2021)),
    "boolq": (3270, (69.17, 84.16, 88.78), (44, 131, 1041)),
    "logiqa": (651, (27.19, 29.03, 49.31), (88, 414, 2103)),
    "piqa": (1838, (74.05, 79.33, 82.70), (39, 198, 1000)),
    "sciq": (1000, (93.80, 97.00, 97.10), (97, 444, 2230)),
    "social_iqa": (1954, (41.71, 48.31, 48.67), (68, 302, 1534)),
    "winogrande": (1267, (59.67, 73.64, 79.08), (49, 200, 1018)),
}


def synth_bench(bench: str, seed: int, n_features: int = 8, scale: float = 1.0) -> pl.DataFrame:
    """Long-format rows for one bench; accuracies match the table to within one request."""
    n_full, acc, energy = PAPER_TABLE2[bench]
    T, M = max(20, round(n_full * scale)), len(MODELS)
    rng = np.random.default_rng([seed, sorted(PAPER_TABLE2).index(bench)])
    difficulty = rng.standard_normal(T)  # [T]
    length = rng.standard_normal(T)  # [T], drives energy
    margin = difficulty[:, None] + 0.6 * rng.standard_normal((T, M))  # [T, M]
    satisfied = np.zeros((T, M), dtype=np.int8)
    for m in range(M):  # the easiest round(acc*T) requests of each model succeed
        k = round(acc[m] / 100 * T)
        satisfied[np.argsort(margin[:, m])[:k], m] = 1
    raw = np.exp(0.35 * length[:, None] + 0.1 * rng.standard_normal((T, M)))  # [T, M]
    # rounded to 1 uJ: numpy builds differ in exp's last bit, and the shipped demo must equal the generator anywhere
    energy_j = np.round(raw / raw.mean(axis=0) * np.asarray(energy, dtype=float), 6)
    mix = rng.standard_normal((2, n_features))
    features = (np.stack([difficulty, length], axis=1) @ mix + 1.2 * rng.standard_normal((T, n_features))).astype(
        np.float32
    )
    t_idx = np.repeat(np.arange(T), M)
    m_idx = np.tile(np.arange(M), T)
    return pl.DataFrame(
        {
            "bench": bench,
            "doc_id": t_idx.astype(str),
            "text": [f"synthetic {bench} request {i}" for i in t_idx],
            "model": np.array([m.name for m in MODELS])[m_idx],
            "satisfied": satisfied.ravel(),
            "energy_j": energy_j.ravel(),
            "latency_s": np.round(energy_j / np.asarray(POWER_W), 9).ravel(),
            "energy_source": "synthetic",
            "latency_source": "synthetic",
            "features": pl.Series(features[t_idx].tolist(), dtype=pl.List(pl.Float32)),
        }
    )


def synth_trace(benches: list[str] | None = None, seed: int = 0, n_features: int = 8, scale: float = 1.0) -> Trace:
    benches = benches or list(PAPER_TABLE2)
    df = pl.concat([synth_bench(b, seed, n_features, scale) for b in benches])
    provenance = {"generator": "traces.synth", "seed": seed, "n_features": n_features, "scale": scale}
    return Trace(df, Zoo(MODELS), synthetic=True, provenance=provenance)
