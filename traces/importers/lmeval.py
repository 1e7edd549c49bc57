"""lm-eval-harness `--log_samples` outputs, merged into one trace.

lm-eval writes `<output_path>/<sanitized model name>/samples_<task>_<date>.jsonl` and `results_<date>.json` per
model; several models share one output path. Every folder below a given path that holds samples files is one model,
named by the model its results file records (`model_name`, else `config.model_args` pretrained=), else by its
folder name un-sanitized (lm-eval writes "/" as "__"); a local path is cut to its last part.

Token counts: lm-eval's samples record the requests (`arguments`: context and continuation, or context and
generation settings) and the raw responses (`resps`), but no token counts. They are counted here, with the rule
`collect` uses, only with a tokenizer (`--tokenizer`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import polars as pl

from messplus.common import UserError, first_repeat
from messplus.traces.importers.common import numeric, read_table, read_text
from messplus.traces.io import Trace
from messplus.traces.zoo import ModelSpec, Zoo, comma_list

METRIC_PREFERENCE = ("acc_norm", "acc", "exact_match")  # "auto" takes the first one a task logs
SAMPLES = re.compile(r"samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[\d\-\.]+)\.jsonl$")
RESULTS = re.compile(r"results_(?P<date>\d{4}-\d{2}-\d{2}T[\d\-\.]+)\.json$")
HF_CACHE = re.compile(r"models--(?P<org>[^/\\]+)--(?P<name>[^/\\]+)[/\\]snapshots[/\\]")  # a hub cache snapshot
OWN_TOKENIZER = "model"  # --tokenizer model: each model's own, as its results file records it
Count = Callable[[str], int]


def context(arguments: object) -> str:
    """The rendered request: first request's first argument, in either of lm-eval's layouts; anything else is a
    ValueError."""
    try:
        if isinstance(arguments, dict):  # {"gen_args_0": {"arg_0": ctx, ...}, ...}
            return str(arguments["gen_args_0"]["arg_0"])
        if isinstance(arguments, list):  # [[ctx, continuation], ...]
            return str(arguments[0][0])
    except (KeyError, IndexError, TypeError):
        pass
    raise ValueError(f"'arguments' is neither lm-eval layout: {str(arguments)[:60]!r}")


def pick_metric(sample: dict, metric: str, where: str) -> str:
    """`auto` takes the first of METRIC_PREFERENCE that the task logs."""
    if metric != "auto":
        return metric
    found = next((m for m in METRIC_PREFERENCE if m in sample), None)
    if found is None:
        raise UserError(f"{where}: none of {', '.join(METRIC_PREFERENCE)} logged; pick one with --metric")
    return found


def requests(arguments: object) -> list[list]:
    """Each request's arguments, in either of lm-eval's layouts."""
    if isinstance(arguments, dict):  # {"gen_args_0": {"arg_0": ctx, "arg_1": ...}, "gen_args_1": ...}
        by_index = lambda d: sorted(d, key=lambda k: int(k.rsplit("_", 1)[1]))  # noqa: E731
        return [[arguments[k][a] for a in by_index(arguments[k])] for k in by_index(arguments)]
    return [list(a) for a in arguments]  # [[ctx, continuation], ...]


def request_kind(args: Sequence) -> str:
    """The lm-eval request type from its arguments: (context, continuation) is a loglikelihood, (context,
    generation settings) a generate_until, (text,) a loglikelihood_rolling."""
    if len(args) == 1:
        return "loglikelihood_rolling"
    if isinstance(args[1], dict):
        return "generate_until"
    if isinstance(args[1], str):
        return "loglikelihood"
    raise ValueError(f"request arguments of no known lm-eval type: {str(args)[:60]!r}")


def request_tokens(kind: str, args: Sequence, response: object, count: Count) -> tuple[int, int]:
    """(prompt, completion) tokens of one lm-eval request, the one rule for collected and imported traces: a
    loglikelihood reads context and continuation and generates nothing, a generate_until reads the context and
    generates the response, a loglikelihood_rolling reads its text."""
    if kind == "generate_until":
        return count(str(args[0])), count(str(response))
    if kind == "loglikelihood":
        return count(str(args[0]) + str(args[1])), 0
    return count(str(args[0])), 0


def token_counter(tokenizer) -> Count:
    """Tokens of a text as the model reads it inside a request (no special tokens added)."""
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def sample_tokens(r: dict, count: Count, where: str) -> tuple[int, int]:
    """(prompt, completion) tokens of one sample: the sum over its requests, and over the repeats of each (one
    response per repeat in `resps`)."""
    resps = r.get("resps")
    total = [0, 0]
    try:
        for k, args in enumerate(requests(r["arguments"])):
            kind = request_kind(args)
            outs = resps[k] if isinstance(resps, list) and isinstance(resps[k], list) else [None]
            if kind == "generate_until" and not all(isinstance(o, str) for o in outs):
                raise ValueError("no generated text in 'resps' to count completion tokens in")
            for out in outs:
                p, c = request_tokens(kind, args, out, count)
                total[0], total[1] = total[0] + p, total[1] + c
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise UserError(f"{where}: {e}") from None
    return total[0], total[1]


def _records(path: Path) -> list[dict]:
    """The JSON object on each non-empty line of a samples file."""
    rows = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}: line {lineno} is not valid JSON (truncated file?)") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {lineno} is a JSON {type(row).__name__}, expected an object (one sample)")
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no samples")
    return rows


def _sample_row(r: dict, metric: str, where: str) -> tuple[str, str, object]:
    """(doc_id, text, metric value) of one sample; a missing field or an odd `arguments` is one line."""
    for key in ("doc_id", "arguments", metric):
        if key not in r:
            raise UserError(f"{where}: no {key!r} field")
    try:
        return str(r["doc_id"]), context(r["arguments"]), r[metric]
    except ValueError as e:
        raise UserError(f"{where}: {e}") from None


def _as_text(value: object) -> str | None:
    """A logged metric value as text for `numeric` to parse (booleans as 0/1), so that one bad value is reported
    with its row."""
    if isinstance(value, bool):
        return str(int(value))
    return None if value is None else str(value)


def read_samples(
    path: Path, metric: str = "auto", filter_key: str | None = None, count: Count | None = None
) -> tuple[pl.DataFrame, str]:
    """One samples file -> (doc_id, text, satisfied) rows, with prompt_tokens and completion_tokens when `count`
    (a token counter) is given, and the metric used."""
    rows = _records(path)
    filters = list(dict.fromkeys(str(r.get("filter", "none")) for r in rows))
    key = filter_key or filters[0]
    if key not in filters:
        raise UserError(f"{path}: no samples for filter {key!r} (has: {', '.join(filters)})")
    rows = [r for r in rows if str(r.get("filter", "none")) == key]
    metric = pick_metric(rows[0], metric, str(path))
    parsed = [_sample_row(r, metric, f"{path}: sample {i}") for i, r in enumerate(rows)]
    df = pl.DataFrame(
        {
            "doc_id": [d for d, _, _ in parsed],
            "text": [t for _, t, _ in parsed],
            "satisfied": pl.Series([_as_text(v) for _, _, v in parsed], dtype=pl.String),
        }
    )
    if count is not None:
        tokens = [sample_tokens(r, count, f"{path}: sample {i}") for i, r in enumerate(rows)]
        df = df.with_columns(
            pl.Series("prompt_tokens", [p for p, _ in tokens], dtype=pl.Int64),
            pl.Series("completion_tokens", [c for _, c in tokens], dtype=pl.Int64),
        )
    return numeric(df, ["satisfied"], f"{path} (metric {metric})"), metric


def unsanitize(folder_name: str) -> str:
    """A model folder's name as lm-eval's model name: it writes each run of the characters "<>:/|?*[] and the
    backslash as "__", and in model names that is "/" (Qwen__Qwen2-0.5B is Qwen/Qwen2-0.5B)."""
    return folder_name.replace("__", "/")


def short_name(ref: str) -> str:
    """A model name from what lm-eval records: a hub id as it is (Qwen/Qwen2-0.5B), a hub cache snapshot as its hub
    id, a local path as its last part (/models/tiny-a is tiny-a)."""
    ref = ref.strip()
    m = HF_CACHE.search(ref)
    if m:
        return f"{m['org']}/{m['name']}"
    if ref.startswith(("/", "./", "../", "~", "\\")) or re.match(r"[A-Za-z]:[\\/]", ref) or ref.count("/") > 1:
        parts = [p for p in PurePath(ref.replace("\\", "/")).parts if p not in ("/", ".", "..", "~")]
        return parts[-1] if parts else ref
    return ref


def model_args(results: dict) -> dict:
    """`config.model_args` of a results file as a dict (lm-eval writes a dict, older versions "k=v,k=v")."""
    args = (results.get("config") or {}).get("model_args") if isinstance(results.get("config"), dict) else None
    if isinstance(args, str):
        return dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
    return args if isinstance(args, dict) else {}


def recorded_model(results: dict) -> str | None:
    """The model a results file records: `model_name`, else the first of lm-eval's own keys in model_args."""
    name = results.get("model_name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    args = model_args(results)
    return next((str(args[k]) for k in ("peft", "delta", "pretrained", "model", "path", "engine") if args.get(k)), None)


@dataclass(frozen=True)
class ModelRun:
    """One model's folder of lm-eval outputs."""

    folder: Path
    samples: dict[str, Path]  # the newest samples file per task
    recorded: str | None = None  # the model lm-eval recorded: a local path or a hub id
    tokenizer: str | None = None  # model_args' tokenizer=, else the recorded model
    revision: str | None = None  # model_args' revision=
    n_params: int | None = None  # config.model_num_parameters (the hf backend records it)
    superseded: list[Path] = field(default_factory=list)  # older samples files of the same tasks, not read

    @property
    def name(self) -> str:
        return short_name(self.recorded or unsanitize(self.folder.name))


def _results(folder: Path) -> dict:
    """A model folder's newest results file ({} without one); results files of different models are refused."""
    found = sorted((p for p in folder.glob("results_*.json") if RESULTS.search(p.name)), key=lambda p: p.name)
    data = {}
    for f in found:
        try:
            data[f] = json.loads(read_text(f))
        except json.JSONDecodeError:
            raise UserError(f"{f}: not valid JSON (truncated?); remove it to name the model after its folder") from None
        if not isinstance(data[f], dict):
            raise UserError(f"{f}: a JSON {type(data[f]).__name__}, not an lm-eval results object")
    models = sorted({recorded_model(d) for d in data.values()} - {None})
    if len(models) > 1:
        raise UserError(
            f"{folder}: its results files record different models ({', '.join(models)}); one model a folder"
        )
    return data[found[-1]] if found else {}


def _model_run(folder: Path) -> ModelRun:
    by_task: dict[str, list[Path]] = {}
    for p in sorted(folder.glob("samples_*.jsonl")):
        m = SAMPLES.search(p.name)
        if m:
            by_task.setdefault(m["task"], []).append(p)
    newest = {t: max(ps, key=lambda p: p.name) for t, ps in by_task.items()}
    results = _results(folder)
    args = model_args(results)
    recorded = recorded_model(results)
    n = (results.get("config") or {}).get("model_num_parameters") if isinstance(results.get("config"), dict) else None
    return ModelRun(
        folder=folder,
        samples=newest,
        recorded=recorded,
        tokenizer=str(args["tokenizer"]) if args.get("tokenizer") else recorded,
        revision=str(args["revision"]) if args.get("revision") else None,
        n_params=n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None,
        superseded=[p for ps in by_task.values() for p in ps if p not in newest.values()],
    )


def discover(paths: list[Path], report: list[str]) -> list[ModelRun]:
    """Every model below the given paths, in their order; the models below one path by the parameter counts lm-eval
    recorded (cheapest first) when it recorded all of them, else by folder name."""
    runs: list[ModelRun] = []
    seen: dict[Path, Path] = {}
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: folder not found")
        if not path.is_dir():
            raise UserError(f"{path}: not a folder; give lm-eval's --output_path, or one model's folder in it")
        folders = sorted({p.parent for p in path.rglob("samples_*.jsonl") if SAMPLES.search(p.name)})
        if not folders:
            raise UserError(f"{path}: no lm-eval samples_<task>_<date>.jsonl files (run lm-eval with --log_samples)")
        if path in folders and len(folders) > 1:
            below = ", ".join(f.name for f in folders if f != path)
            raise UserError(f"{path}: holds samples files itself and in model folders below it ({below}); give one")
        found = [_model_run(f) for f in folders]
        if len(found) > 1:
            by_params = all(r.n_params for r in found)
            if by_params:
                found.sort(key=lambda r: r.n_params or 0)
            order = "the parameter counts lm-eval recorded" if by_params else "folder name"
            report.append(f"{path}: {len(found)} models, cheapest first by {order}: {', '.join(r.name for r in found)}")
        for r in found:
            key = r.folder.resolve()
            if key in seen:
                raise UserError(f"{r.folder}: this model folder is given twice (in {seen[key]} and in {path})")
            seen[key] = path
        runs.extend(found)
    return runs


def _load_tokenizer(ref: str, revision: str | None, who: str):
    """A tokenizer from a local folder or the hub (the cache only, offline); a missing one is one line."""
    from messplus.traces import hub

    hub.quiet_libraries()
    problem = hub.missing(ref, revision, "tokenizer_config.json")
    if problem:
        raise UserError(f"--tokenizer for {who}: {problem}")
    from transformers import AutoTokenizer

    local = hub.is_local(ref)  # a folder: read from disk, never a hub probe or request
    try:
        return AutoTokenizer.from_pretrained(ref, revision=revision, local_files_only=local or hub.offline())
    except (OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:150]
        raise UserError(f"--tokenizer for {who}: cannot load {ref!r} ({first})") from None


def tokenizers(given: str | None, runs: list[ModelRun], names: list[str]) -> list[tuple[str, str | None]] | None:
    """(tokenizer, revision) per model: `model` = each model's own as its results file records it; else one for
    every model, or a comma list with one per model. None: no token counts."""
    if given is None:
        return None
    if given.strip() == OWN_TOKENIZER:
        for run, name in zip(runs, names, strict=True):
            if run.tokenizer is None:
                raise UserError(
                    f"--tokenizer {OWN_TOKENIZER}: {run.folder} has no lm-eval results file naming model {name}'s "
                    "weights; give the tokenizer (a folder or hub id, one for all or a comma list, one per model)"
                )
        return [(r.tokenizer or "", r.revision) for r in runs]
    refs = comma_list(given)
    if len(refs) == 1:
        refs = refs * len(runs)
    if len(refs) != len(runs):
        raise UserError(f"--tokenizer: {len(refs)} tokenizers for {len(runs)} models (give one, or one per model)")
    return [(ref, None) for ref in refs]


def _apply_costs(long: pl.DataFrame, costs: Path, report: list[str]) -> pl.DataFrame:
    """Per-request costs (keyed by model and doc_id) are imported; per-model constants are estimates."""
    table = read_table(costs)
    cols = [c for c in ("energy_j", "latency_s", "cost_usd") if c in table.columns]
    if "model" not in table.columns or not cols:
        raise UserError(f"{costs}: cost table needs a 'model' column and one of energy_j, latency_s, cost_usd")
    per_request = "doc_id" in table.columns
    on = ["model", "doc_id"] if per_request else ["model"]
    table = numeric(table, cols, str(costs)).select([pl.col(c).cast(pl.String) for c in on] + cols)
    twice = table.filter(pl.struct(on).is_duplicated()).head(1)
    if not twice.is_empty():  # a join would double the trace's rows, and the trace's check would blame those
        key = ", ".join(f"{c} {twice[c][0]!r}" for c in on)
        raise UserError(f"{costs}: {key} appears on more than one row; give each {' and '.join(on)} one row")
    named = table["model"].unique(maintain_order=True).to_list()
    absent = next((m for m in long["model"].unique(maintain_order=True) if m not in named), None)
    if absent is not None:
        raise UserError(
            f"{costs}: no costs for model {absent!r} (the table names: {', '.join(map(str, named))}); "
            "match the names, or name the models with --models"
        )
    long = long.join(table, on=on, how="left")
    label = "imported" if per_request else "estimated"
    src = {"energy_j": "energy_source", "latency_s": "latency_source", "cost_usd": "cost_usd_source"}
    long = long.with_columns(
        pl.when(pl.col(c).is_null()).then(pl.lit("none")).otherwise(pl.lit(label)).alias(src[c]) for c in cols
    )
    report.append(f"{costs}: {', '.join(cols)} {'per request' if per_request else 'per model'} ({label})")
    return long


def _names(runs: list[ModelRun], names: list[str] | None) -> list[str]:
    """The models' names: `names` in discovery order, else each one's own; two models of one name are refused."""
    if names and len(names) != len(runs):
        found = ", ".join(r.name for r in runs)
        raise UserError(f"{len(names)} model names for {len(runs)} folders of samples (found, in order: {found})")
    names = list(names or [r.name for r in runs])
    dup = first_repeat(names)
    if dup is not None:
        both = " and ".join(str(r.folder) for r, n in zip(runs, names, strict=True) if n == dup)
        raise UserError(f"two model folders are both named {dup!r} ({both}); name the models with --models")
    return names


def import_lmeval(
    paths: list[Path],
    names: list[str] | None,
    tasks: list[str] | None = None,
    metric: str = "auto",
    filter_key: str | None = None,
    costs: Path | None = None,
    tokenizer: str | None = None,
) -> tuple[Trace, list[str]]:
    """Each path is an lm-eval --output_path (any number of model folders) or one model's folder; paths are given
    cheapest first. `names` (in the order found) replace the recorded names; `tokenizer` counts tokens."""
    report: list[str] = []
    runs = discover(paths, report)
    names = _names(runs, names)
    toks = tokenizers(tokenizer, runs, names)
    common = set.intersection(*(set(r.samples) for r in runs))
    if not tasks and not common:
        each = "; ".join(f"{n}: {', '.join(sorted(r.samples))}" for n, r in zip(names, runs, strict=True))
        raise UserError(f"the models share no task, so no request has every model's answer ({each}); import "
                        "folders that ran the same tasks")  # fmt: skip
    tasks = tasks or sorted(common)
    for name, run in zip(names, runs, strict=True):
        missing = [t for t in tasks if t not in run.samples]
        if missing:
            raise UserError(f"model {name}: no samples for task {missing[0]!r} (has: {', '.join(sorted(run.samples))})")
    loaded: dict[tuple[str, str | None], Count] = {}
    frames, provenance_models = [], {}
    for k, (name, run) in enumerate(zip(names, runs, strict=True)):
        count = None
        if toks is not None:
            if toks[k] not in loaded:
                loaded[toks[k]] = token_counter(_load_tokenizer(*toks[k], name))
            count = loaded[toks[k]]
        recorded = f" (lm-eval recorded {run.recorded})" if run.recorded and run.recorded != name else ""
        report.append(f"{run.folder}: model {name}{recorded}" + (f", tokens counted with {toks[k][0]}" if toks else ""))
        if run.superseded:
            report.append(f"{run.folder}: read the newest samples file per task; {len(run.superseded)} older not read")
        for task in tasks:
            df, used = read_samples(run.samples[task], metric, filter_key, count)
            frames.append(df.with_columns(pl.lit(task).alias("bench"), pl.lit(name).alias("model")))
            report.append(f"{run.samples[task]}: {df.height} samples of {task} for {name}, satisfied = {used}")
        provenance_models[name] = {
            "folder": str(run.folder),
            "recorded": run.recorded,
            "tokenizer": toks[k][0] if toks else None,
        }
    if toks is None:
        report.append("no token counts (lm-eval records none): --tokenizer model counts them, for --cost tokens")
    long = pl.concat(frames, how="diagonal")
    if costs is not None:
        long = _apply_costs(long, costs, report)
    zoo = Zoo(tuple(ModelSpec(n, hf_id=r.recorded, revision=r.revision) for n, r in zip(names, runs, strict=True)))
    provenance = {
        "importer": "lmeval",
        "metric": metric,
        "source": ", ".join(map(str, paths)),
        "models": provenance_models,
    }
    return Trace(long, zoo, provenance=provenance), report
