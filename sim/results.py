"""A sweep's results: the three output tables' schemas, how runs become rows, and the folder they live in.

Every method family yields `Block`s (R runs of one bench); `frames` turns any stream of blocks into the runs and
steps tables, so no method writes rows of its own. The three tables are written as one set: into a temporary
folder beside the target, which then replaces the target by rename, so a reader sees the old set or the new one,
never a mix. `open_results` reads a set back for analysis.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from messplus.common import UserError, atomic_folder, check_out_folder, file_sha256, recover_folder
from messplus.sim.metrics import Outcome, steps, summary
from messplus.sim.streams import segments
from messplus.traces.io import trace_files, write_parquet
from messplus.traces.schema import COST_KINDS

KEY = b"messplus_results"  # Parquet metadata of each table: version, config, models, warnings
VERSION = 6  # 4: runs gained kind (policy or bound, from the router registry); 5: learn and labels_seen; 6: head,
# the predictor's BCE and calibration gaps beside the counter's, a latency SLA and each run's mean latency
NAMES = ("runs", "steps", "predictions")

RUN_SCHEMA = {
    "run_id": pl.Int64, "bench": pl.String, "method": pl.String, "kind": pl.String, "seed": pl.Int64,
    "alpha": pl.Float64, "V": pl.Float64, "v_unit": pl.String, "explore_serve": pl.String, "c": pl.Float64, "k": pl.Float64, "feedback": pl.Float64,
    "learn": pl.String, "cost_estimate": pl.String, "cost": pl.String, "encoder": pl.String, "preset": pl.String, "head": pl.String, "lr": pl.Float64,
    "momentum": pl.Float64, "epochs": pl.Int64, "input_dropout": pl.Float64, "clip_norm": pl.Float64,
    "n_requests": pl.Int64, "n_calib": pl.Int64,
    "satisfaction": pl.Float64, "sla_met": pl.Boolean, "total_cost": pl.Float64, "cost_per_request": pl.Float64,
    "opt_cost_per_request": pl.Float64, "cost_vs_opt": pl.Float64, "mix_cost_per_request": pl.Float64,
    "cost_vs_mix": pl.Float64, "call_ratio": pl.List(pl.Float64),
    "latency_sla": pl.Float64, "mean_latency_s": pl.Float64, "latency_met": pl.Boolean,
    "n_explore": pl.Int64, "labels_seen": pl.Int64, "sla_first_ok": pl.Int64, "q_final": pl.Float64, "q_full_final": pl.Float64,
    "predictor_auc": pl.List(pl.Float64), "predictor_auc_z": pl.List(pl.Float64), "predictor_bce": pl.Float64,
    "head_bce": pl.Float64, "base_rate_bce": pl.Float64, "predictor_gap": pl.List(pl.Float64), "base_rate_gap": pl.List(pl.Float64),
    "predictor_rank_ok": pl.Boolean, "predictor_dead": pl.Float64,
    "segments": pl.List(pl.Struct({"bench": pl.String, "satisfaction": pl.Float64, "cost_per_request": pl.Float64})),
}  # fmt: skip

STEP_SCHEMA = {
    "run_id": pl.Int64, "t": pl.Int64, "chosen": pl.Int16, "explored": pl.Boolean, "running_satisfaction": pl.Float64,
    "running_cost": pl.Float64, "q": pl.Float64, "q_full": pl.Float64, "loss": pl.Float64,
}  # fmt: skip

PREDICTION_SCHEMA = {
    "bench": pl.String, "seed": pl.Int64, "c": pl.Float64, "k": pl.Float64, "t": pl.Int64, "explored": pl.Boolean,
    "explore_cost": pl.Float64, "shat": pl.List(pl.Float32), "label": pl.List(pl.Int8),
}  # fmt: skip


@dataclass(frozen=True)
class Block:
    """R runs of one method family on one bench.

    config: [R] per column (method, kind, seed, and whatever of RUN_SCHEMA's configuration the family has;
    absent columns are null). reference: [R] opt_cost_per_request and mix_cost_per_request of each run's (seed, alpha).
    A policy has its per-step `outcome`; a bound has `figures` ([R] satisfaction, cost_per_request, ...) instead.
    Non-finite figures mean "does not exist" (e.g. no mix reaches alpha) and become nulls.
    """

    bench: str
    config: dict[str, list | np.ndarray]
    alpha: np.ndarray
    reference: dict[str, np.ndarray]
    n_requests: int
    outcome: Outcome | None = None
    figures: dict[str, np.ndarray] | None = None
    parts: np.ndarray | None = None  # [R, S] a combined stream's bench per position (index into part_names)
    part_names: tuple[str, ...] = ()


def _column(name: str, values, dtype: pl.DataType) -> pl.Series:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f" and values.ndim == 1:
        values = np.where(np.isfinite(values), values, np.nan)
        return pl.Series(name, values, nan_to_null=True).cast(dtype)
    if isinstance(values, np.ndarray) and values.ndim == 2:
        values = values.tolist()
    return pl.Series(name, values, dtype=dtype)


def _runs_frame(cols: dict, R: int) -> pl.DataFrame:
    data = [_column(k, cols[k], t) if k in cols else pl.Series(k, [None] * R, dtype=t) for k, t in RUN_SCHEMA.items()]
    return pl.DataFrame(data)


def _ratio(cost: np.ndarray, ref: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(ref) & (ref > 0), cost / ref, np.nan)


def frames(blocks: Iterable[Block], n_models: int, steps_every: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The runs and steps tables of a stream of blocks, run ids in order (consumed lazily: bounded memory). Each in
    one chunk: Parquet's pages, and a float column's sum, follow the chunks, so tables of the same rows are the same
    bytes however their blocks were cut (sim.distributed makes them on many workers)."""
    runs, step_parts, n = [], [], 0
    for b in blocks:
        R = len(b.alpha)
        ids = np.arange(n, n + R)
        figures = summary(b.outcome, b.alpha, n_models) if b.outcome is not None else b.figures
        if "latency_sla" in b.config and "mean_latency_s" in figures:  # the second SLA, where one is set
            figures = figures | {
                "latency_met": figures["mean_latency_s"] <= np.asarray(b.config["latency_sla"]) + 1e-12
            }
        cpr = np.asarray(figures["cost_per_request"], dtype=float)
        cols = {"run_id": ids, "bench": [b.bench] * R, **b.config, "alpha": b.alpha,
                "n_requests": np.full(R, b.n_requests), **figures, **b.reference,
                "cost_vs_opt": _ratio(cpr, b.reference["opt_cost_per_request"]),
                "cost_vs_mix": _ratio(cpr, b.reference["mix_cost_per_request"])}  # fmt: skip
        if b.parts is not None and b.outcome is not None:
            cols["segments"] = segments(b.parts, b.outcome.sat, b.outcome.cost, b.part_names)
        runs.append(_runs_frame(cols, R))
        if b.outcome is not None:
            step_parts.append(pl.DataFrame(steps(b.outcome, ids, steps_every), schema=STEP_SCHEMA))
        n += R
    run_df = pl.concat(runs, rechunk=True) if runs else pl.DataFrame(schema=RUN_SCHEMA)
    step_df = pl.concat(step_parts, rechunk=True) if step_parts else pl.DataFrame(schema=STEP_SCHEMA)
    return run_df, step_df.with_columns(pl.col("loss").fill_nan(None))


def _stale(out: Path) -> list[Path]:
    """Temporaries of writes that were killed (atomic_folder removes its own otherwise)."""
    return list(out.parent.glob(f".{out.name}.new-*")) if out.parent.is_dir() else []


def options(cfg, traces: str | Path) -> dict:
    """The options a sweep was asked for, as recorded in its metadata (JSON types; no machine-local paths). The
    trace is named by its content, not its file name: two traces called ok.parquet are not one."""
    files = trace_files(traces) if Path(traces).exists() else []
    content = hashlib.sha256("".join(file_sha256(f) for f in files).encode()).hexdigest()[:16] if files else None
    given = {k: v for k, v in asdict(cfg).items() if k != "cache_dir"} | {"traces": Path(traces).name}
    return json.loads(json.dumps(given | {"traces_sha256": content}))


def check_out(out: Path, asked: dict | None = None, overwrite: bool = True) -> None:
    """Before any work: `out` must be a folder we may replace (absent, empty, or a results set) in a writable
    place, holding results of the `asked` options unless `overwrite`. An interrupted swap is repaired first: a
    set moved aside is put back."""
    out = Path(out)
    recover_folder(out)
    check_out_folder(out)
    ours = {f"{n}.parquet" for n in NAMES} | {CHECKSUMS}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours) if out.is_dir() else []
    if foreign:
        raise UserError(f"--out {out}: holds {foreign[0]!r}, so it is not a results folder; choose another --out")
    runs = out / "runs.parquet"
    if not overwrite and runs.is_file():
        try:
            held = _meta(runs).get("options", {})
        except UserError as e:
            raise UserError(f"{e}; pass --overwrite to replace that results set, or choose another --out") from None
        held = held if isinstance(held, dict) else {}
        differ = [k for k in sorted(set(held) | set(asked or {})) if held.get(k) != (asked or {}).get(k)]
        if differ:
            raise UserError(f"--out {out}: holds results of another configuration ({differ[0]} differs); pass "
                            "--overwrite to replace them, or choose another --out")  # fmt: skip


UNITS = {name: (k.total_unit, k.total_scale, k.unit) for name, k in COST_KINDS.items()}  # (totals, scale, each)


@dataclass(frozen=True)
class Results:
    """The three tables of a sweep and the metadata every file carries: DataFrames fresh from `run_sweep`,
    LazyFrames when read back by `open_results`."""

    runs: pl.DataFrame | pl.LazyFrame
    steps: pl.DataFrame | pl.LazyFrame
    predictions: pl.DataFrame | pl.LazyFrame
    meta: dict

    @property
    def warnings(self) -> list[str]:
        return self.meta["warnings"]

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

    def write(self, out: str | Path) -> list[Path]:
        """Write the set atomically (temporary folder, then rename over `out`); returns the file paths."""
        out = Path(out)
        check_out(out)
        for p in _stale(out):
            shutil.rmtree(p, ignore_errors=True)
        try:
            with atomic_folder(out) as new:
                for name in NAMES:
                    write_parquet(getattr(self, name), new / f"{name}.parquet", {KEY: self.meta})
                write_checksums(new)
        except OSError as e:
            raise UserError(f"--out {out}: could not write the results ({e.strerror or e})") from None
        return [out / f"{name}.parquet" for name in NAMES]


# what analysis reads of the metadata, with its JSON type: checked on opening, so a damaged key is one line
META_SHAPE = {"config": dict, "models": list, "encoders": dict, "warnings": list, "messplus_version": str}
CONFIG_SHAPE = {"cost": str, "seeds": list}


def _meta(path: Path) -> dict:
    """The file's results metadata: a JSON object ({} where there is none)."""
    try:
        raw = (pq.read_schema(path).metadata or {}).get(KEY)
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    try:
        meta = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path}: results metadata is not valid JSON; rerun `sim sweep`") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: results metadata is a JSON {type(meta).__name__}, expected an object")
    return meta


def _check_meta(path: Path, meta: dict) -> None:
    """This version's metadata, with every key analysis reads there and of its type."""
    version = meta.get("results_version")
    if type(version) is not int:
        raise UserError(f"{path}: results metadata 'results_version' is {version!r}, not a version number; the "
                        "results are damaged: rerun `sim sweep`")  # fmt: skip
    if version != VERSION:
        raise UserError(f"{path}: results schema v{version}, this version reads v{VERSION}; rerun `sim sweep`")
    wanted = [(meta, k, t) for k, t in META_SHAPE.items()]
    wanted += [(meta["config"], k, t) for k, t in CONFIG_SHAPE.items() if isinstance(meta.get("config"), dict)]
    for where, key, kind in wanted:
        if not isinstance(where.get(key), kind):
            raise UserError(
                f"{path}: results metadata has no valid {key!r}; the results are damaged: rerun `sim sweep`"
            )
    if not meta["models"] or not all(isinstance(m, str) for m in meta["models"]):
        raise UserError(f"{path}: results metadata 'models' must be a non-empty list of names; rerun `sim sweep`")


CHECKSUMS = "checksums.json"  # a set's own record of its files' SHA-256, written last, inside the atomic set


def write_checksums(folder: Path) -> None:
    """Record every file of the set (all but this record) by its SHA-256."""
    sums = {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKSUMS}
    (folder / CHECKSUMS).write_text(json.dumps(sums, indent=1) + "\n")


def verify_checksums(folder: Path, again: str) -> None:
    """Refuse a set whose files are not those it recorded: a flipped byte, a hand-edited row, a file swapped in
    from another set. again: the command that writes the set afresh."""
    try:
        sums = json.loads((folder / CHECKSUMS).read_text())
    except FileNotFoundError:
        raise UserError(f"{folder}: no {CHECKSUMS}, so its files cannot be checked; rerun `{again}`") from None
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{folder / CHECKSUMS}: not valid JSON; the set is damaged: rerun `{again}`") from None
    if not isinstance(sums, dict):
        raise UserError(f"{folder / CHECKSUMS}: not a table of files; the set is damaged: rerun `{again}`")
    for name, digest in sums.items():
        path = folder / str(name)
        if not path.is_file() or file_sha256(path) != digest:
            raise UserError(f"{path}: does not match the checksum its set recorded (changed or damaged since it was "
                            f"written); rerun `{again}`")  # fmt: skip


def open_results(folder: str | Path) -> Results:
    """The set in `folder`, after checking each file is there, readable, of this version and of the same sweep."""
    folder = Path(folder)
    recover_folder(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: results folder not found (write one with `sim sweep --out {folder}`)")
    if (folder / "plan.parquet").is_file():
        raise UserError(f"{folder}: is a plan (`sim plan`), not a sweep's results: read plan.parquet and its risk "
                        "figures there, or give the folder of a `sim sweep`")  # fmt: skip
    metas = {}
    for name in NAMES:
        path = folder / f"{name}.parquet"
        if not path.is_file():
            raise UserError(f"{path}: missing; rerun `sim sweep --out {folder}`")
        metas[name] = _meta(path)
        _check_meta(path, metas[name])
    if len({m.get("sweep_id") for m in metas.values()}) > 1:
        raise UserError(f"{folder}: its files come from different sweeps; rerun `sim sweep --out {folder}`")
    verify_checksums(folder, f"sim sweep --out {folder}")
    lazy = {name: pl.scan_parquet(folder / f"{name}.parquet") for name in NAMES}
    for name, schema in zip(NAMES, (RUN_SCHEMA, STEP_SCHEMA, PREDICTION_SCHEMA), strict=True):
        have = lazy[name].collect_schema()
        lost = [c for c in schema if c not in have]
        if lost:
            raise UserError(
                f"{folder / name}.parquet: no column {lost[0]!r}; the results are damaged: rerun `sim sweep`"
            )
    return Results(**lazy, meta=metas["runs"])


def open_sets(folders: list[str | Path]) -> Results:
    """Several result sets of one trace read as one (sweeps of other seeds or settings, or made on other machines):
    runs renumbered set after set, and in every table a `set` column, the folder as given. Sets of another trace's
    content, other models or another cost column (tables would mix units) are refused, as is a run found in two sets,
    every column alike (it would count twice); each set is checked as open_results checks one. A single folder is
    read as it is."""
    sets = [open_results(f) for f in folders]
    if len(sets) == 1:
        return sets[0]
    first, names = sets[0].meta, [str(f) for f in folders]
    belongs = {"trace": lambda m: m.get("options", {}).get("traces_sha256"), "models": lambda m: m["models"],
               "cost column": lambda m: m["config"]["cost"]}  # fmt: skip
    for name, res in zip(names[1:], sets[1:], strict=True):
        differs = next((what for what, of in belongs.items() if of(res.meta) != of(first)), None)
        if differs:
            raise UserError(f"{name}: another {differs} than in {names[0]}; sets merge only where the trace, the models "
                            "and the cost column are the same")  # fmt: skip
    before = np.cumsum([0] + [r.runs.select(pl.len()).collect().item() for r in sets[:-1]])  # runs in earlier sets

    def tagged(tables: list[pl.LazyFrame], renumber: bool) -> pl.LazyFrame:
        return pl.concat([t.with_columns(*([pl.col("run_id") + int(k)] if renumber else []), set=pl.lit(name))
                          for t, k, name in zip(tables, before, names, strict=True)], rechunk=True)  # fmt: skip

    runs = tagged([r.runs for r in sets], True)
    run = pl.struct(pl.exclude("run_id", "set"))  # all of a run: its settings, and what they gave
    twice = runs.filter(run.is_duplicated()).group_by(run.alias("run"), maintain_order=True).agg("set")
    for r, (one, other, *_) in twice.head(1).collect().iter_rows():
        raise UserError(f"run {r['method']} of bench {r['bench']}, seed {r['seed']} is in {one} and in {other}, so it "
                        "would count twice; give sets of runs of their own (a sweep of other MESS+ settings only: "
                        "--methods messplus)")  # fmt: skip
    meta = first | {
        "sets": names,
        "config": first["config"] | {"seeds": sorted({s for r in sets for s in r.meta["config"]["seeds"]}),
                                     "steps_every": max(r.meta["config"].get("steps_every", 1) for r in sets)},
        "encoders": {f"{name}/{b}": e for name, r in zip(names, sets, strict=True) for b, e in r.meta["encoders"].items()},
        "warnings": list(dict.fromkeys(w for r in sets for w in r.warnings)),
        "boundaries": {k: v for r in reversed(sets) for k, v in r.meta.get("boundaries", {}).items()},
    }  # fmt: skip
    return Results(runs, tagged([r.steps for r in sets], True), tagged([r.predictions for r in sets], False), meta)
