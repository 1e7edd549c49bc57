"""What `collect traces` checks before any work, so that a bad option, path, zoo or collection folder is one line
and leaves the disk as it was: the options, the output paths, the zoo's models, and what a resumed folder holds
(settings.json of each model, readable part files)."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from messplus.common import UserError, check_out_file, check_out_folder, check_range, slug

if TYPE_CHECKING:
    from messplus.collect.run import CollectConfig, Task
    from messplus.traces.zoo import ModelSpec

log = logging.getLogger(__name__)
MODES = ("exact", "batched")
SPEC_SETTINGS = ("hf_id", "revision", "backend", "dtype", "quantization", "gpus", "gpu_memory_fraction", "max_length")


def check_options(cfg: CollectConfig) -> None:
    """Every option in range: a bad value fails here, not in the merge after the whole run."""
    if not cfg.bench.strip():
        raise UserError("--bench: give an lm-eval task name")
    if cfg.mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, not {cfg.mode!r}")
    check_range(cfg.batch_size, "--batch-size", 1, integer=True)
    check_range(cfg.chunk, "--chunk", 1, integer=True)
    check_range(cfg.limit, "--limit", 1, integer=True)
    check_range(cfg.assumed_power_w, "--assumed-power-w", 0, lo_open=True)
    if cfg.include_path is not None and not Path(cfg.include_path).is_dir():
        raise UserError(f"--include-path {cfg.include_path}: not a folder")


def bench_folder(cfg: CollectConfig) -> Path:
    return cfg.out / slug(cfg.bench)


def model_folder(cfg: CollectConfig, spec: ModelSpec) -> Path:
    return bench_folder(cfg) / slug(spec.name)


def check_paths(cfg: CollectConfig) -> None:
    """--out is a folder (or nothing yet) in a writable place; the bench's folder and trace file are what they
    should be."""
    check_out_folder(cfg.out)
    base = bench_folder(cfg)
    check_out_folder(base, f"--out {cfg.out}: bench folder")
    check_out_file(cfg.out / f"{slug(cfg.bench)}.parquet", f"--out {cfg.out}: trace file")
    for spec in cfg.zoo.models:
        check_out_folder(model_folder(cfg, spec), f"--out {cfg.out}: model folder")


def check_zoo(cfg: CollectConfig, device: str) -> None:
    """Each model can be loaded here: it names its weights, and a vLLM model has vLLM and a GPU."""
    for spec in cfg.zoo.models:
        if spec.hf_id is None:
            raise UserError(f"model {spec.name!r}: the zoo file gives no hf_id")
        if spec.backend == "vllm" and importlib.util.find_spec("vllm") is None:
            raise UserError(f"model {spec.name!r}: backend vllm is not installed here (see README: vLLM environment)")
        if spec.backend == "vllm" and device != "cuda":
            raise UserError(f'model {spec.name!r}: backend vllm needs a CUDA GPU; use backend = "hf" on the CPU')


def check_weights(cfg: CollectConfig) -> None:
    """Each model's weights are here, or can be downloaded now: a missing local folder, or a hub model that is not
    in the cache while the hub cannot be reached, is one line before the first model loads."""
    from messplus.traces.hub import missing

    for spec in cfg.zoo.models:
        problem = missing(spec.hf_id, spec.revision) if spec.hf_id else None
        if problem:
            raise UserError(f"model {spec.name!r}: {problem}")


def read_settings(folder: Path) -> dict | None:
    """A model folder's settings.json (None before its first chunk); a damaged one is one line saying what to do."""
    path = folder / "settings.json"
    if not path.exists():
        return None
    try:
        have = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        have = None
    if not isinstance(have, dict):
        raise UserError(
            f"{path}: damaged (not a JSON object); the parts beside it cannot be trusted: delete {folder} to "
            "collect this model again, or choose another --out"
        )
    return have


def settings(cfg: CollectConfig, spec: ModelSpec, task: Task, device: str) -> dict:
    """What a model's rows depend on: every setting that changes a recorded number (correctness, tokens, latency,
    energy). Resuming with anything different would mix incomparable rows."""
    as_json = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731  (settings.json holds lists)
    return {
        **{k: as_json(getattr(spec, k)) for k in SPEC_SETTINGS},
        "task": cfg.bench,
        "task_version": task.version,
        "metric": task.metric,
        "mode": cfg.mode,
        "batch_size": cfg.batch_size if cfg.mode == "batched" else None,
        "num_fewshot": 0,
        "device": device,
        "assumed_power_w": cfg.assumed_power_w,
    }


def check_resume(cfg: CollectConfig, task: Task, device: str) -> None:
    """Every model folder already begun was collected with the settings asked for now (all checked before the
    first model runs)."""
    for spec in cfg.zoo.models:
        folder = model_folder(cfg, spec)
        have, wanted = read_settings(folder), settings(cfg, spec, task, device)
        if have is None:
            continue
        diff = next((k for k in wanted if have.get(k) != wanted[k]), None)
        if diff is not None:
            raise UserError(
                f"{folder}: collected with {diff}={have.get(diff)!r}, now {diff}={wanted[diff]!r}; "
                "rerun with the same settings to resume, or choose another --out"
            )


def readable_parts(folder: Path) -> list[Path]:
    """The model's part files that read back whole; a damaged one (a truncated write from outside, a bad disk) is
    reported and removed, so its docs are collected again."""
    good = []
    for part in sorted(folder.glob("part-*.parquet")):
        try:
            pq.read_table(part)
        except (pa.ArrowException, OSError) as e:
            log.warning("%s: damaged part file (%s); removed, its docs will be collected again", part, str(e)[:80])
            part.unlink(missing_ok=True)
            continue
        good.append(part)
    return good
