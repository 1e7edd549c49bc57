"""What the predictor reads for each request: a trace's own features, or a frozen encoder's embedding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from messplus.common import UserError, pick_device
from messplus.sim import presets
from messplus.sim.config import SweepConfig
from messplus.traces.dense import BenchArrays


@dataclass(frozen=True)
class Inputs:
    """[T, h] float32 predictor inputs, the id of what produced them (recorded with every result) and the predictor
    preset family that suits them (sim.presets)."""

    X: np.ndarray
    encoder: str
    family: str


def encoder_name(arrays: BenchArrays, cfg: SweepConfig) -> str:
    """auto -> the trace's features where it has them, else minilm."""
    if cfg.encoder in ("auto", "features"):
        if arrays.features is not None:
            return "features"
        if cfg.encoder == "features":
            raise UserError(f"bench {arrays.bench}: the trace carries no features; choose an encoder with --encoder")
        return "minilm"
    return cfg.encoder


def request_inputs(arrays: BenchArrays, cfg: SweepConfig, progress=None) -> Inputs:
    name = encoder_name(arrays, cfg)
    family = cfg.family(name)
    if name == "features":
        return Inputs(arrays.features, "features", family)
    from messplus.sim.embed import embed_texts

    X, enc_id = embed_texts(
        arrays.texts,
        name,
        arrays.bench,
        pooling=cfg.pooling or presets.preset(family, arrays.bench).pooling,
        max_length=cfg.max_length,
        device=pick_device(cfg.device),
        cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None,
        progress=progress,
    )
    return Inputs(X, enc_id, family)
