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
    """Requests numbered by first appearance, models by zoo order, and every row scattered to its [T, M] place; no
    Python loop over rows, no sort (the trace's validation guarantees each (request, model) once)."""
    models = trace.zoo.names
    df = trace.df.filter(pl.col("bench") == bench)
    if df.is_empty():
        raise UserError(f"unknown bench {bench!r} (available: {', '.join(trace.benches)})")
    first_seen = pl.col("_row").min().over("doc_id")  # the row where each request first appears
    at = df.with_row_index("_row").select(
        req=first_seen.rank("dense") - 1,
        m=pl.col("model").cast(pl.String).replace_strict(models, range(len(models)), return_dtype=pl.Int64),
    )
    req, m = at["req"].to_numpy().astype(np.int64), at["m"].to_numpy()  # [rows] each row's request and model
    T, M = int(req.max()) + 1, len(models)
    place = req * M + m  # [rows] flat index into [T, M]

    def dense(expr: pl.Expr) -> np.ndarray:
        out = np.empty(T * M)
        out[place] = df.select(expr.cast(pl.Float64)).to_series().to_numpy()
        return out.reshape(T, M)

    summed = lambda kind: pl.sum_horizontal(pl.col(c).cast(pl.Float64) for c in kind.columns)  # noqa: E731
    costs = {name: dense(summed(COST_KINDS[name])) for name in complete_costs(df)}
    cheapest = np.flatnonzero(m == 0)  # the rows of the cheapest model: one per request
    rows = np.empty(T, dtype=np.int64)  # [T] each request's row of the cheapest model
    rows[req[cheapest]] = cheapest
    first = df.select(c for c in ("doc_id", "text", "features") if c in df.columns)[rows]  # [T] one row a request
    features = None
    if "features" in df.columns and first["features"].null_count() == 0:
        width = int(first["features"].list.len()[0])
        features = first["features"].explode().cast(pl.Float32).to_numpy().reshape(T, width)
    return BenchArrays(
        bench=bench,
        models=models,
        doc_ids=first["doc_id"].to_numpy(),
        texts=first["text"].to_list(),
        satisfied=dense(pl.col("satisfied")),
        costs=costs,
        features=features,
    )
