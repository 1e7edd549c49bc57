"""What the predictor reads for each request: a trace's own features, or a frozen encoder's embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.config import SweepConfig
from traces.dense import BenchArrays
from traces.errors import TraceError


def request_inputs(arrays: BenchArrays, cfg: SweepConfig, progress=None) -> tuple[np.ndarray, str]:
    """[T, h] float32 inputs and the id of what produced them (recorded with every result)."""
    encoder = cfg.encoder
    if encoder in ("auto", "features"):
        if arrays.features is not None:
            return arrays.features, "features"
        if encoder == "features":
            raise TraceError(f"bench {arrays.bench}: the trace carries no features; choose an encoder with --encoder")
        encoder = "minilm"
    from sim.embed import embed_texts

    return embed_texts(
        arrays.texts,
        encoder,
        arrays.bench,
        pooling=cfg.pooling,
        max_length=cfg.max_length,
        device=cfg.device,
        cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None,
        progress=progress,
    )
