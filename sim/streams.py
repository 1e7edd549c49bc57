"""Request streams beyond the paper's one-bench-at-a-time: several benches as one stream, under one SLA and one
predictor. `mixed` interleaves them at random (per seed); `drift:A,B,C` serves them in blocks, in that order,
each block shuffled. A stream is a bench like any other (its requests named <bench>/<doc_id>), so every method,
bound and table works on it unchanged; each request remembers its part, for per-bench figures inside the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from messplus.common import UserError
from messplus.traces.io import Trace


@dataclass(frozen=True)
class Stream:
    """How a sweep's benches become streams: `each` (the paper's) or one combined stream."""

    kind: str  # each | mixed | drift: the only place a kind is named (KINDS)
    parts: tuple[str, ...]  # the benches in the stream, in block order for drift

    @property
    def name(self) -> str:
        return self.kind

    @property
    def combined(self) -> bool:
        """Whether the benches form one stream (else each is replayed on its own, as the paper)."""
        return KINDS[self.kind][0]

    @property
    def in_blocks(self) -> bool:
        """Whether the stream serves its benches block by block, in order (else interleaved at random)."""
        return KINDS[self.kind][1]


KINDS = {"each": (False, False), "mixed": (True, False), "drift": (True, True)}  # kind -> (combined, in blocks)


def parse(text: str, benches: tuple[str, ...]) -> Stream:
    """each | mixed | drift:A,B,C (benches of the trace)."""
    kind, _, rest = text.partition(":")
    if kind == "each" or (kind == "mixed" and not rest):
        return Stream(kind, benches)
    if kind == "drift" and rest:
        parts = tuple(b.strip() for b in rest.split(",") if b.strip())
        unknown = [b for b in parts if b not in benches]
        if unknown or len(set(parts)) < len(parts) or len(parts) < 2:
            raise UserError(f"--stream {text}: give two or more distinct benches of the trace ({', '.join(benches)})")
        return Stream(kind, parts)
    raise UserError(f"--stream must be each, mixed or drift:A,B,C, not {text!r}")


def combine(stream: Stream, found: dict[str, Trace]) -> Trace:
    """One trace whose single bench is the stream; request ids keep their bench as a prefix."""
    first = found[stream.parts[0]]
    frames = [
        found[b].df.filter(pl.col("bench") == b).with_columns(doc_id=pl.lit(f"{b}/") + pl.col("doc_id").cast(pl.String))
        for b in stream.parts
    ]
    df = pl.concat(frames, how="vertical_relaxed").with_columns(bench=pl.lit(stream.name))
    provenance = {**first.provenance, "stream": {"kind": stream.kind, "parts": list(stream.parts)}}
    return Trace(df, first.zoo, first.synthetic, provenance)


def part_of(doc_ids: np.ndarray, parts: tuple[str, ...]) -> np.ndarray:
    """[T] index into parts of each request of a combined stream (from its <bench>/ prefix)."""
    index = {b: i for i, b in enumerate(parts)}
    return np.array([index[str(d).split("/", 1)[0]] for d in doc_ids], dtype=np.int64)


def drift_order(rng: np.random.Generator, blocks: np.ndarray) -> np.ndarray:
    """[T] a permutation that serves block 0's requests first, then block 1's, ..., each block shuffled."""
    return np.concatenate([rng.permutation(np.flatnonzero(blocks == b)) for b in range(int(blocks.max()) + 1)])


def segments(parts: np.ndarray, sat: np.ndarray, cost: np.ndarray, names: tuple[str, ...]) -> list[list[dict]]:
    """Per run, each part's satisfaction and cost per request inside the stream (parts, sat, cost: [R, S])."""
    out = []
    for p, s, c in zip(parts, sat, cost, strict=True):
        out.append([{"bench": names[i], "satisfaction": float(s[p == i].mean()),
                     "cost_per_request": float(c[p == i].mean())} for i in range(len(names)) if (p == i).any()])  # fmt: skip
    return out


def boundaries(parts_in_order: np.ndarray) -> list[int]:
    """Stream positions t (1-based) where a new part begins (drift: the block boundaries)."""
    return [int(t) + 1 for t in np.flatnonzero(np.diff(parts_in_order) != 0) + 1]
