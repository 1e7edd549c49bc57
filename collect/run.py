"""`collect traces`: every zoo model on every sample of one lm-eval task, into a trace that never loses work.

Layout under --out:  <bench>/<model>/settings.json   what this model's rows were collected with
                     <bench>/<model>/part-*.parquet  trace rows of one chunk of docs, each written atomically
                     <bench>/run.json                the environment of the latest session
                     <bench>.parquet                 the validated trace, once every model has every doc
A kill loses at most the chunk in flight; rerunning the same command skips every (model, doc) already done.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from messplus.collect.checks import (
    bench_folder,
    check_options,
    check_paths,
    check_resume,
    check_weights,
    check_zoo,
    model_folder,
    read_settings,
    readable_parts,
    settings,
)
from messplus.collect.energy import Meter, open_meter
from messplus.common import UserError, atomic_path, pick_device, slug
from messplus.traces import hub
from messplus.traces.importers.lmeval import METRIC_PREFERENCE, context
from messplus.traces.io import Trace, write_parquet, write_trace
from messplus.traces.schema import SOURCE_OF
from messplus.traces.zoo import ModelSpec, Zoo

if TYPE_CHECKING:
    from messplus.collect.metered import MeteredLM

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectConfig:
    bench: str  # lm-eval task name
    zoo: Zoo
    out: Path
    include_path: str | None = None  # folder of local lm-eval task YAMLs
    metric: str = "auto"  # per-sample metric read as satisfied
    mode: str = "exact"  # exact: one request per measurement; batched: apportioned by tokens
    batch_size: int = 8  # requests per measurement in batched mode
    chunk: int = 32  # docs per lm-eval call and per part file (what a kill can lose)
    limit: int | None = None  # first N docs only
    overwrite: bool = False  # replace a finished trace of other docs in --out
    device: str = "auto"
    assumed_power_w: float | None = None  # without a GPU meter: label power x latency as `estimated`


@dataclass(frozen=True)
class Task:
    manager: object
    n_docs: int
    version: str
    metric: str


LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow", "pandas")  # datasets' loaders of local files


def local_run(cfg: CollectConfig) -> bool:
    """Whether the whole collection is on disk: every model a local folder, and the task a local one
    (--include-path) whose dataset is a local builder reading local files."""
    if not cfg.include_path or not all(hub.is_local(m.hf_id) for m in cfg.zoo.models):
        return False
    from lm_eval.tasks import TaskManager

    entry = TaskManager(include_path=cfg.include_path, include_defaults=False).task_index.get(cfg.bench)
    conf = (entry.cfg or {}) if entry else {}
    files = (conf.get("dataset_kwargs") or {}).get("data_files") or {}
    paths = [
        p for v in (files.values() if isinstance(files, dict) else [files]) for p in ([v] if isinstance(v, str) else v)
    ]
    return conf.get("dataset_path") in LOCAL_BUILDERS and bool(paths) and all(Path(p).is_file() for p in paths)


def load_task(cfg: CollectConfig) -> Task:
    """The task and its documents; an unknown task or an unreachable dataset is one clear line."""
    from lm_eval.tasks import TaskManager, get_task_dict

    manager = None
    if cfg.include_path:  # a local task needs no index of lm-eval's ~15k built-in ones (7 s)
        manager = TaskManager(include_path=cfg.include_path, include_defaults=False)
    if manager is None or cfg.bench not in manager.all_tasks:
        manager = TaskManager(include_path=cfg.include_path)
    if cfg.bench not in manager.all_tasks:
        raise UserError(
            f"unknown lm-eval task {cfg.bench!r}; list tasks with `lm-eval ls tasks`, or add a local one with --include-path"
        )
    try:
        task = get_task_dict([cfg.bench], manager)[cfg.bench]
        n_docs = len(task.eval_docs)
    except Exception as e:  # datasets raises many types when it cannot reach the hub
        entry = manager.task_index.get(cfg.bench)
        dataset = ((entry.cfg or {}) if entry else {}).get("dataset_path", "?")
        first = str(e).splitlines()[0][:150] if str(e) else type(e).__name__
        raise UserError(
            f"task {cfg.bench}: dataset {dataset!r} is not available offline ({first}); "
            "point --include-path at a local task (dataset_path: json, local data_files)"
        ) from None
    metrics = list(task.aggregation())
    metric = cfg.metric
    if metric == "auto":
        metric = next((m for m in METRIC_PREFERENCE if m in metrics), "")
    if metric not in metrics:
        raise UserError(f"task {cfg.bench}: no per-sample metric {cfg.metric!r} (task logs: {', '.join(metrics)})")
    n = min(n_docs, cfg.limit) if cfg.limit else n_docs
    return Task(manager, n, str(task.VERSION), metric)


def write_settings(folder: Path, wanted: dict) -> None:
    """Record what a model's rows are collected with, before its first part (checks.check_resume compared any
    earlier record already)."""
    if (folder / "settings.json").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "settings.json") as tmp:
        tmp.write_text(json.dumps(wanted, indent=2))


def done_docs(folder: Path) -> set[int]:
    parts = readable_parts(folder)
    if not parts:
        return set()
    return set(pl.read_parquet(parts, columns=["doc_id"])["doc_id"].cast(pl.Int64).to_list())


def open_model(spec: ModelSpec, device: str, batch: int):
    """An LM through lm-eval's own registry: `hf` or `vllm`."""
    from lm_eval.api.registry import get_model

    if spec.backend == "vllm":
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, spec.gpus))
        args = {"pretrained": spec.hf_id, "revision": spec.revision, "dtype": spec.dtype, "quantization": spec.quantization,
                "gpu_memory_utilization": spec.gpu_memory_fraction, "tensor_parallel_size": len(spec.gpus),
                "max_model_len": spec.max_length}  # fmt: skip
    elif spec.backend == "hf":
        args = {"pretrained": spec.hf_id, "revision": spec.revision, "dtype": spec.dtype,
                "device": f"cuda:{spec.gpus[0]}" if device == "cuda" else device, "max_length": spec.max_length}  # fmt: skip
    else:
        raise UserError(f"model {spec.name!r}: unknown backend {spec.backend!r} (hf or vllm)")
    try:
        return get_model(spec.backend).create_from_arg_obj(
            {k: v for k, v in args.items() if v is not None}, {"batch_size": batch}
        )
    except (OSError, ValueError) as e:
        raise UserError(f"model {spec.name!r}: cannot load {spec.hf_id!r} ({str(e).splitlines()[0][:150]})") from None


def rows_of(
    samples: list[dict], chunk: list[int], lm: MeteredLM, cfg: CollectConfig, spec: ModelSpec, task: Task, meter: Meter
) -> pl.DataFrame:
    """Trace rows for one chunk: a doc's cost is the sum over its requests (one per choice for multiple choice).

    lm-eval numbers the requests of a `samples=` selection by position in the (ascending) selection and logs the
    true doc id, so records are matched through `chunk`."""
    position = {doc: k for k, doc in enumerate(chunk)}
    out = []
    metered = "measured" if cfg.mode == "exact" else "apportioned"
    for s in samples:
        costs = [c for (d, _), c in lm.records.items() if d == position[s["doc_id"]]]
        if not costs:
            raise RuntimeError(f"doc {s['doc_id']}: no metered request; has lm-eval's request numbering changed?")
        host = {k: total(getattr(c.spent, k) for c in costs) for k in ("cpu_energy_j", "dram_energy_j")}
        tokens = [(c.prompt_tokens, c.completion_tokens) for c in costs]
        known = all(t[0] is not None for t in tokens)
        out.append({
            "bench": cfg.bench, "doc_id": str(s["doc_id"]), "text": context(s["arguments"]), "model": spec.name,
            "satisfied": float(s[task.metric]),
            "energy_j": total(c.spent.energy_j for c in costs),
            "latency_s": sum(c.spent.seconds for c in costs),
            "prompt_tokens": sum(t[0] for t in tokens) if known else None,
            "completion_tokens": sum(t[1] for t in tokens) if known else None,
            "energy_source": metered if meter.source == "measured" else meter.source,
            "latency_source": metered,
            **host,
            **{SOURCE_OF[k]: "none" if v is None else metered for k, v in host.items()},
        })  # fmt: skip
    return pl.DataFrame(out)


def total(values: Iterable[float | None]) -> float | None:
    """A doc's cost over its requests: unknown if any request's is."""
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def versions() -> dict:
    found = {}
    for pkg in ("lm-eval", "torch", "transformers", "vllm", "messplus"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = None
    return found


def collect_model(cfg, spec, task, device, progress) -> None:
    """Every doc of the task that no readable part holds yet, chunk by chunk, each chunk a part file."""
    import lm_eval

    from messplus.collect.metered import MeteredLM

    folder = model_folder(cfg, spec)
    write_settings(folder, settings(cfg, spec, task, device))
    todo = [d for d in range(task.n_docs) if d not in done_docs(folder)]
    advance = progress(spec.name, task.n_docs, task.n_docs - len(todo)) if progress else None
    if not todo:
        return
    meter = open_meter(spec.gpus if device == "cuda" else None, cfg.assumed_power_w)
    env = {**meter.info(), "idle_power_w": meter.idle_power_w(), "versions": versions(), "device": device}
    with atomic_path(bench_folder(cfg) / "run.json") as tmp:
        tmp.write_text(json.dumps({"environment": env}, indent=2))
    inner = open_model(spec, device, cfg.batch_size if cfg.mode == "batched" else 1)
    lm = MeteredLM(inner, meter, cfg.batch_size if cfg.mode == "batched" else None)
    try:
        for lo in range(0, len(todo), cfg.chunk):
            chunk = todo[lo : lo + cfg.chunk]
            lm.records.clear()
            res = lm_eval.simple_evaluate(
                model=lm, tasks=[cfg.bench], num_fewshot=0, log_samples=True, task_manager=task.manager,
                samples={cfg.bench: chunk}, verbosity="ERROR",
            )  # fmt: skip
            rows = rows_of(res["samples"][cfg.bench], chunk, lm, cfg, spec, task, meter)
            write_parquet(rows, folder / f"part-{chunk[0]:07d}-{len(chunk)}.parquet", {})
            if advance:
                advance(len(chunk))
    finally:
        meter.close()
        del lm, inner
        gc.collect()


def merge(cfg: CollectConfig, task: Task) -> Path:
    """All parts into one validated trace; the run's environment and settings go into its provenance."""
    base = bench_folder(cfg)
    frames = [pl.read_parquet(readable_parts(model_folder(cfg, m))) for m in cfg.zoo.models]
    df = pl.concat(frames, how="diagonal_relaxed").filter(pl.col("doc_id").cast(pl.Int64) < task.n_docs)
    env = json.loads((base / "run.json").read_text()) if (base / "run.json").is_file() else {}
    provenance = {"collector": "collect traces", "task": cfg.bench, "task_version": task.version, "metric": task.metric,
                  "mode": cfg.mode, **env, "source": str(base)}  # fmt: skip
    return write_trace(
        Trace(df.sort(pl.col("doc_id").cast(pl.Int64)), cfg.zoo, provenance=provenance),
        cfg.out / f"{slug(cfg.bench)}.parquet",
    )


def check_finished(cfg: CollectConfig, task: Task) -> None:
    """A finished trace of this bench in --out is replaced only by one of the same docs (a rerun), or with
    --overwrite: `--limit 10` must not silently shrink a 60-doc collection."""
    path = cfg.out / f"{slug(cfg.bench)}.parquet"
    if cfg.overwrite or not path.is_file():
        return
    have = pl.scan_parquet(path).select(pl.col("doc_id").n_unique()).collect().item()
    if have != task.n_docs:
        raise UserError(f"{path}: holds a finished collection of {have} docs, and this run would write {task.n_docs}; "
                        "pass --overwrite to replace it, or choose another --out")  # fmt: skip


def preflight(cfg: CollectConfig) -> str:
    """Everything checkable before the task loads (options, paths, the zoo, damaged settings): the device."""
    check_options(cfg)
    check_paths(cfg)
    for spec in cfg.zoo.models:
        read_settings(model_folder(cfg, spec))
    device = pick_device(cfg.device)
    check_zoo(cfg, device)
    return device


def collect(cfg: CollectConfig, progress: Callable | None = None) -> Path:
    """progress(label, total, done) returns an advance(n) callback. Every check runs before the first model."""
    device = preflight(cfg)
    if local_run(cfg):
        hub.stay_local()  # every model and the task's data on disk: nothing to ask any network, not even a probe
    hub.offline()  # else probed once: offline, the task and the models load from local files at once, no retries
    task = load_task(cfg)
    check_finished(cfg, task)
    check_resume(cfg, task, device)
    check_weights(cfg)
    for spec in cfg.zoo.models:
        collect_model(cfg, spec, task, device, progress)
    log.info("collected %s: %d docs x %d models (%s)", cfg.bench, task.n_docs, len(cfg.zoo.models), asdict(cfg)["mode"])
    return merge(cfg, task)
