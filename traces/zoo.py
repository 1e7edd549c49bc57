"""The zoo: models in cost order (cheapest first), with what collect needs to load each one."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from messplus.common import UserError


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
        return cls(tuple(ModelSpec(name=n) for n in names))

    def to_json(self) -> str:
        return json.dumps([asdict(m) for m in self.models])

    @classmethod
    def from_json(cls, text: str) -> Zoo:
        return cls(tuple(_spec(d, "trace metadata") for d in json.loads(text)))


def _spec(d: dict, where: str) -> ModelSpec:
    known = {f.name for f in fields(ModelSpec)}
    unknown = set(d) - known
    if unknown:
        raise UserError(f"{where}: unknown model field {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})")
    if "name" not in d:
        raise UserError(f"{where}: a model entry has no 'name'")
    d = dict(d)
    if "gpus" in d:
        d["gpus"] = tuple(d["gpus"])
    return ModelSpec(**d)


def load_zoo(path: str | Path) -> Zoo:
    """Read a zoo file (TOML or YAML) holding a `models` list in cost order."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: zoo file not found")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(path.read_text())
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text())
        else:
            raise UserError(f"{path}: zoo file must be .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise UserError(f"{path}: cannot parse zoo file: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise UserError(f"{path}: zoo file needs a 'models' list, cheapest model first")
    return Zoo(tuple(_spec(m, str(path)) for m in data["models"]))


def resolve_names(names: str | None, zoo_file: str | None, default: list[str]) -> list[str]:
    """Model names for an importer: `--models a,b,c`, else a zoo file, else the source's own names."""
    if names and zoo_file:
        raise UserError("give either --models or --zoo, not both")
    if zoo_file:
        return list(load_zoo(zoo_file).names)
    if names:
        return [n.strip() for n in names.split(",") if n.strip()]
    return list(default)


__all__ = ["ModelSpec", "Zoo", "load_zoo", "resolve_names"]
