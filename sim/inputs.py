"""What the predictor reads for each request: a trace's own features, or a frozen encoder's embedding."""

from __future__ import annotations

import os
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


def request_inputs(arrays: BenchArrays, cfg: SweepConfig, progress=None, parts=None) -> Inputs:
    """parts: for a combined stream, (part [T] index of each request's bench, the benches' names); each bench's
    texts are then embedded as that bench's own (its max length, its shared prefix), so a stream reuses the cache
    its benches filled and never re-embeds a text at a length it does not need."""
    name = encoder_name(arrays, cfg)
    family = cfg.family(name)
    if name == "features":
        return Inputs(arrays.features, "features", family)
    index, names = parts if parts is not None else (np.zeros(len(arrays.texts), dtype=np.int64), (arrays.bench,))
    X, ids = None, {}
    for i, bench in enumerate(names):
        rows = np.flatnonzero(index == i)
        Xi, ids[bench] = _embed([arrays.texts[r] for r in rows], name, bench, family, cfg, progress)
        X = np.empty((len(arrays.texts), Xi.shape[1]), dtype=Xi.dtype) if X is None else X
        X[rows] = Xi
    distinct = set(ids.values())
    return Inputs(X, distinct.pop() if len(distinct) == 1 else "; ".join(f"{b}: {e}" for b, e in ids.items()), family)


def _embed(texts: list[str], name: str, bench: str, family: str, cfg: SweepConfig, progress) -> tuple:
    """One bench's [n, h] embeddings and the id of what made them."""
    from messplus.sim.embed import embed_texts

    texts, cut = distinctive(texts)
    X, enc_id = embed_texts(
        texts,
        name,
        bench,
        pooling=cfg.pooling or presets.preset(family, bench).pooling,
        max_length=cfg.max_length,
        device=pick_device(cfg.device),
        cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None,
        progress=progress,
    )
    return X, enc_id + (f" (shared prefix of {cut} characters stripped)" if cut else "")


MIN_PREFIX = 64  # characters; shorter shared openings ("Question: ") cost the encoder nothing worth saving


def distinctive(texts: list[str]) -> tuple[list[str], int]:
    """The texts without the prefix they all share (few-shot examples, a system prompt), cut at a whitespace, and
    the cut's length. An encoder that reads only the first max_length tokens would otherwise see the same shots
    for every request; RouterBench's 5-shot ARC prompts share their first ~1,500 characters."""
    prefix = os.path.commonprefix(texts) if len(texts) > 1 else ""  # noqa: RUF071 (characters, not paths)
    cut = max(prefix.rfind(" "), prefix.rfind("\n")) + 1 if len(prefix) >= MIN_PREFIX else 0
    return ([t[cut:] for t in texts] if cut else texts), cut


def distinct_warnings(name: str, X: np.ndarray) -> list[str]:
    """A bench whose requests mostly share one input cannot be routed per request by anything that reads it.
    Rows are told apart by a random projection (equal rows project equally; distinct ones almost never do), which
    costs one pass over X instead of sorting its rows."""
    n = len(np.unique(X @ np.random.default_rng(0).standard_normal(X.shape[1]).astype(X.dtype)))  # no upcast copy
    if n >= 0.5 * len(X):
        return []
    return [f"bench {name}: only {n} distinct predictor inputs for {len(X)} requests; MESS+ and the learned "
            "routers cannot tell most requests apart (raise --max-length, or check the texts)"]  # fmt: skip
