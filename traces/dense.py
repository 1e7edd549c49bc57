"""Dense [T, M] arrays of one bench, the simulator's view of a trace."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from messplus.common import UserError
from messplus.traces.io import Trace
from messplus.traces.schema import COST_KINDS


@dataclass(frozen=True)
class BenchArrays:
    """One bench; requests in trace order, models in zoo (cost) order.

    satisfied: [T, M] float64 in {0, 1}
    costs:     name -> [T, M] float64 for every cost column with no null in this bench
    features:  [T, F] float32 or None (synthetic traces carry their own)
    """

    bench: str
    models: tuple[str, ...]
    doc_ids: np.ndarray  # [T] str
    texts: list[str]  # [T]
    satisfied: np.ndarray
    costs: dict[str, np.ndarray]
    features: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int]:
        return self.satisfied.shape

    def cost(self, name: str) -> np.ndarray:
        if name not in self.costs:
            have = ", ".join(self.costs) or "none"
            raise UserError(f"bench {self.bench}: cost column {name!r} is empty or incomplete (complete: {have}); "
                            "choose one with --cost")  # fmt: skip
        return self.costs[name]


def complete_costs(df: pl.DataFrame) -> list[str]:
    """The cost kinds (traces.schema.COST_KINDS) whose every column has a value in every row of df."""
    return [n for n, k in COST_KINDS.items() if all(df[c].null_count() == 0 for c in k.columns)]


def to_arrays(trace: Trace, bench: str) -> BenchArrays:
    """Sort rows by (request first appearance, zoo order) and reshape; no Python loop over rows."""
    models = trace.zoo.names
    df = trace.df.filter(pl.col("bench") == bench)
    if df.is_empty():
        raise UserError(f"unknown bench {bench!r} (available: {', '.join(trace.benches)})")
    order = df.select("doc_id").unique(maintain_order=True).with_row_index("_req")
    rank = pl.DataFrame({"model": list(models), "_m": np.arange(len(models))})
    df = df.join(order, on="doc_id").join(rank, on="model").sort(["_req", "_m"])
    T, M = order.height, len(models)

    def dense(expr: pl.Expr) -> np.ndarray:
        return df.select(expr.cast(pl.Float64)).to_series().to_numpy().reshape(T, M)

    summed = lambda kind: pl.sum_horizontal(pl.col(c).cast(pl.Float64) for c in kind.columns)  # noqa: E731
    costs = {name: dense(summed(COST_KINDS[name])) for name in complete_costs(df)}
    first = df.filter(pl.col("_m") == 0)
    features = None
    if "features" in df.columns and first["features"].null_count() == 0:
        features = np.stack(first["features"].to_numpy()).astype(np.float32)
    return BenchArrays(
        bench=bench,
        models=models,
        doc_ids=first["doc_id"].to_numpy(),
        texts=first["text"].to_list(),
        satisfied=dense(pl.col("satisfied")),
        costs=costs,
        features=features,
    )
