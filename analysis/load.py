"""Lazy access to a sweep's results folder, with a clear error for a missing folder or an older schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from messplus.common import UserError
from messplus.sim.config import RESULTS_KEY, RESULTS_VERSION

UNITS = {
    "energy_j": ("MJ", 1e-6, "J"),
    "cost_usd": ("USD", 1.0, "USD"),
    "latency_s": ("h", 1 / 3600, "s"),
    "tokens": ("M tokens", 1e-6, "tokens"),
}


@dataclass(frozen=True)
class Results:
    """runs / steps / predictions as LazyFrames (schemas in README), plus the sweep's metadata."""

    runs: pl.LazyFrame
    steps: pl.LazyFrame
    predictions: pl.LazyFrame
    meta: dict

    @property
    def models(self) -> list[str]:
        return self.meta["models"]

    @property
    def cost(self) -> str:
        return self.meta["config"]["cost"]

    def unit(self, total: bool) -> tuple[str, float]:
        """(label, scale) for totals (MJ, hours, ...) or per-request figures (J, s, ...)."""
        big, scale, small = UNITS.get(self.cost, (self.cost, 1.0, self.cost))
        return (big, scale) if total else (small, 1.0)


def open_results(folder: str | Path) -> Results:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: results folder not found (write one with `sim sweep --out {folder}`)")
    frames = {}
    meta: dict = {}
    for name in ("runs", "steps", "predictions"):
        path = folder / f"{name}.parquet"
        if not path.is_file():
            raise UserError(f"{path}: missing; rerun `sim sweep --out {folder}`")
        try:
            raw = (pq.read_schema(path).metadata or {}).get(RESULTS_KEY)
        except OSError as e:
            raise UserError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
        file_meta = json.loads(raw) if raw else {}
        version = file_meta.get("results_version")
        if version != RESULTS_VERSION:
            raise UserError(
                f"{path}: results schema v{version}, this version reads v{RESULTS_VERSION}; rerun `sim sweep`"
            )
        frames[name] = pl.scan_parquet(path)
        meta = file_meta
    return Results(frames["runs"], frames["steps"], frames["predictions"], meta)
