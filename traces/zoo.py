"""The zoo: models in cost order (cheapest first), with what collect needs to load each one."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from importlib.resources import files
from pathlib import Path

from messplus.common import UserError, first_repeat

BUNDLED = files("messplus.collect") / "zoos"  # zoo files shipped with the package, known by name everywhere


@dataclass(frozen=True)
class ModelSpec:
    """One zoo member. Only `name` is needed to replay traces; the rest drives `collect`."""

    name: str
    hf_id: str | None = None  # Hugging Face id or local folder
    revision: str | None = None
    backend: str = "hf"  # "hf" or "vllm"
    dtype: str = "auto"
    quantization: str | None = None
    gpus: tuple[int, ...] = (0,)
    gpu_memory_fraction: float = 0.9
    max_length: int | None = None
    notes: str = ""


BACKENDS = ("hf", "vllm")
DTYPES = ("auto", "float16", "half", "bfloat16", "float32", "float")  # what both lm-eval's hf and vLLM accept
TEXT_FIELDS = ("hf_id", "revision", "quantization")  # optional text; `notes` is free text


@dataclass(frozen=True)
class Zoo:
    models: tuple[ModelSpec, ...]

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        if not names:
            raise UserError("zoo has no models")
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise UserError(f"zoo lists model {sorted(dup)[0]!r} twice")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> Zoo:
        return cls(tuple(_spec({"name": n}, "model names") for n in names))

    def to_json(self) -> str:
        return json.dumps([asdict(m) for m in self.models])

    @classmethod
    def from_json(cls, text: str, where: str = "trace metadata") -> Zoo:
        entries = json.loads(text)
        if not isinstance(entries, list):
            raise UserError(f"{where}: the zoo must be a list of models")
        return cls(tuple(_spec(d, where) for d in entries))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _field_problem(d: dict) -> str | None:
    """What is wrong with one model entry's values, or None: every field is checked, so a bad zoo fails when it is
    read, not in the middle of a collection."""
    if not isinstance(d["name"], str) or not d["name"].strip():
        return f"'name' must be a non-empty string, not {d['name']!r}"
    bad_text = next((k for k in TEXT_FIELDS if d.get(k) is not None and not (isinstance(d[k], str) and d[k])), None)
    if bad_text:
        return f"{bad_text!r} must be a non-empty string, not {d[bad_text]!r}"
    if not isinstance(d.get("notes", ""), str):
        return f"'notes' must be a string, not {d['notes']!r}"
    if d.get("backend", "hf") not in BACKENDS:
        return f"'backend' must be one of {', '.join(BACKENDS)}, not {d['backend']!r}"
    if d.get("dtype", "auto") not in DTYPES:
        return f"'dtype' must be one of {', '.join(DTYPES)}, not {d['dtype']!r}"
    gpus = d.get("gpus", [0])
    if not isinstance(gpus, list | tuple) or not gpus or not all(_is_int(g) and g >= 0 for g in gpus):
        return f"'gpus' must be a non-empty list of GPU indices such as [0, 1], not {gpus!r}"
    if len(set(gpus)) < len(gpus):
        return f"'gpus' lists a GPU twice: {gpus!r}"
    frac = d.get("gpu_memory_fraction", 0.9)
    if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 < frac <= 1:
        return f"'gpu_memory_fraction' must be a number in (0, 1], not {frac!r}"
    length = d.get("max_length")
    if length is not None and not (_is_int(length) and length >= 1):
        return f"'max_length' must be a positive integer, not {length!r}"
    return None


def _spec(d: object, where: str) -> ModelSpec:
    """One model entry (a table of fields) as a ModelSpec, every field checked."""
    if not isinstance(d, dict):
        raise UserError(f"{where}: each model must be a table of fields (name, hf_id, ...), not {d!r}")
    known = {f.name for f in fields(ModelSpec)}
    unknown = set(d) - known
    if unknown:
        raise UserError(f"{where}: unknown model field {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})")
    if "name" not in d:
        raise UserError(f"{where}: a model entry has no 'name'")
    problem = _field_problem(d)
    if problem:
        raise UserError(f"{where}: model {d['name']!r}: {problem}")
    d = dict(d)
    if "gpus" in d:
        d["gpus"] = tuple(d["gpus"])
    return ModelSpec(**d)


def _parse(path: Path) -> object:
    """The zoo file's data: TOML or YAML; a syntax error or an unreadable file is one line."""
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise UserError(f"{path}: zoo file must be .toml, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: zoo file is not UTF-8 text") from None
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{path}: cannot parse zoo file: {' '.join(str(e).split())}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:  # its message spans lines: the problem, then where
        raise UserError(f"{path}: cannot parse zoo file: {' '.join(str(e).split())}") from None


def comma_list(values: str | Iterable[str] | None, flag: str | None = None) -> list[str]:
    """The one reading of a list option in every CLI here: a comma list, the option repeated, or both (`--bench
    boolq,piqa --bench sciq`), blanks dropped. With `flag`, an item given twice, or a list given but empty (`--bench
    ""`, which would otherwise read as "not given": every bench), is one error line naming it."""
    items = [values] if isinstance(values, str) else list(values or [])
    out = [x.strip() for item in items for x in item.split(",") if x.strip()]
    if flag and items and not out:
        raise UserError(f"{flag}: empty list; give at least one name (or leave the option out)")
    twice = first_repeat(out)
    if flag and twice is not None:
        raise UserError(f"{flag} {twice} is given twice")
    return out


def bundled_zoos() -> list[str]:
    """Names of the bundled zoos (`--zoo qwen2`), sorted."""
    return sorted(f.name.removesuffix(".toml") for f in BUNDLED.iterdir() if f.name.endswith(".toml"))


def zoo_path(zoo: str | Path) -> Path:
    """A bundled zoo's name (paper-llama, qwen2) as its file; anything else is a path as given."""
    bundled = BUNDLED / f"{zoo}.toml"
    return Path(str(bundled)) if "/" not in str(zoo) and bundled.is_file() else Path(zoo)


def load_zoo(path: str | Path) -> Zoo:
    """Read a zoo file (TOML or YAML) holding a `models` list in cost order, or a bundled zoo by name."""
    path = zoo_path(path)
    if not path.is_file():
        raise UserError(f"{path}: zoo file not found (bundled zoos: {', '.join(bundled_zoos())})")
    data = _parse(path)
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise UserError(f"{path}: zoo file needs a 'models' list, cheapest model first")
    return Zoo(tuple(_spec(m, str(path)) for m in data["models"]))


def resolve_names(names: str | None, zoo_file: str | None, default: list[str]) -> list[str]:
    """Model names for an importer: `--models a,b,c`, else a zoo file, else the source's own names."""
    if names and zoo_file:
        raise UserError("give either --models or --zoo, not both")
    if zoo_file:
        return list(load_zoo(zoo_file).names)
    if names is not None:  # `--models ""` is refused, not read as "not given"
        return comma_list(names, "--models")
    return list(default)


__all__ = ["ModelSpec", "Zoo", "bundled_zoos", "comma_list", "load_zoo", "resolve_names", "zoo_path"]
