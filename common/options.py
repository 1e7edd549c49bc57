"""Options declared once. A config dataclass's fields carry their default, help text and valid range; the typer
command and the validation both derive from them, so a default or a range is never written twice.

Field types understood: int, float, str, bool, Literal[...] (choices), X | None (None: "not given"), and
tuple[X, ...] (a comma list on the command line; X may itself be float | Literal[...]).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal

import typer

from messplus.common import UserError, check_range


@dataclass(frozen=True)
class Spec:
    """What a field means to users: help, CLI flag, valid range (closed unless *_open), list rules."""

    help: str | Callable[[], str]
    flag: str | None = None  # default: --field-name
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: Callable[[], tuple[str, ...]] | None = None  # dynamic choices (Literal types carry their own)
    empty_ok: bool = False  # a list option that may be empty (meaning "all")
    unique: bool = False  # a list option whose entries may not repeat
    keyed: bool = False  # a list entry may be NAME=VALUE (a value for one bench), kept as the pair (NAME, VALUE)


def opt(default: Any, help: str | Callable[[], str], **spec: Any) -> Any:
    """A dataclass field with its user-facing spec."""
    return field(default=default, metadata={"spec": Spec(help, **spec)})


def flag(f) -> str:
    return f.metadata["spec"].flag or "--" + f.name.replace("_", "-")


def _parts(tp) -> tuple[Any, bool, bool]:
    """(element type, is a list, may be None) of a field's type."""
    args = typing.get_args(tp)
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        tp = next(a for a in args if a is not type(None))
    if typing.get_origin(tp) is tuple:
        return typing.get_args(tp)[0], True, optional
    return tp, False, optional


def _choices(tp, spec: Spec) -> tuple[str, ...] | None:
    if spec.choices is not None:
        return spec.choices()
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    lits = [a for a in typing.get_args(tp) if typing.get_origin(a) is Literal]  # e.g. float | Literal["mid"]
    return tuple(c for lit in lits for c in typing.get_args(lit)) or None


def _number_type(tp) -> type | None:
    kinds = [a for a in (typing.get_args(tp) or (tp,)) if a in (int, float)]
    return kinds[0] if kinds else None


def _parse_one(text: str, tp, name: str, keyed: bool = False):
    """One element from its command-line text: a listed choice, else a number of the field's kind; with keyed, also
    NAME=VALUE as the pair (NAME, VALUE)."""
    if keyed and "=" in text:
        key, value = (part.strip() for part in text.split("=", 1))
        if not key:
            raise UserError(f"{name}: {text!r} names no bench before '='")
        return key, _parse_one(value, tp, name)
    choices = _choices(tp, Spec(""))
    if choices and text in choices:
        return text
    kind = _number_type(tp)
    if kind is None:
        return text.strip()
    try:
        return int(text) if kind is int else float(text)
    except ValueError:
        want = "an integer" if kind is int else "a number"
        also = f" or one of {', '.join(choices)}" if choices else ""
        raise UserError(f"{name}: expected {want}{also}, got {text!r}") from None


def _describe(spec: Spec, tp, default, listed: bool) -> str:
    text = spec.help() if callable(spec.help) else spec.help
    choices = _choices(tp, spec)
    if choices and spec.choices is None:
        text += f" [{'|'.join(choices)}]"
    keyed = " An entry BENCH=VALUE applies to that bench alone." if spec.keyed else ""
    return text + (" Comma list." if listed else "") + keyed


def command(cls, run: Callable[..., None], extra: list[inspect.Parameter]) -> Callable[..., None]:
    """A typer command whose options are `extra` plus every field of `cls`; it builds and validates the config,
    then calls run(cfg, **extra values)."""
    tps, params = typing.get_type_hints(cls), list(extra)
    for f in fields(cls):
        tp, listed, optional = _parts(tps[f.name])
        spec = f.metadata["spec"]
        cli_type = str if listed or _choices(tp, spec) else (tp if tp in (int, float, bool) else str)
        default = ",".join(map(str, f.default)) if listed else f.default
        if listed and spec.empty_ok and not f.default:  # "all": the option left out, told apart from an empty value
            default, optional = None, True
        info = typer.Option(flag(f), help=_describe(spec, tp, f.default, listed))
        annotation = Annotated[cli_type | None if optional else cli_type, info]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    names = {p.name for p in extra}

    def cmd(**kw):
        cfg = from_cli(cls, {k: v for k, v in kw.items() if k not in names})
        run(cfg, **{k: v for k, v in kw.items() if k in names})

    cmd.__signature__ = inspect.Signature(params)
    cmd.__annotations__ = {p.name: p.annotation for p in params}
    cmd.__doc__ = run.__doc__
    return cmd


def from_cli(cls, raw: dict[str, Any]):
    """The config from command-line values (comma lists split and parsed), validated."""
    tps, values = typing.get_type_hints(cls), {}
    for f in fields(cls):
        tp, listed, _ = _parts(tps[f.name])
        v = raw[f.name]
        if listed and v is None:  # an empty_ok list left out: its default ("all")
            v = f.default
        elif listed:
            keyed = f.metadata["spec"].keyed
            v = tuple(_parse_one(x.strip(), tp, flag(f), keyed) for x in str(v).split(",") if x.strip())
            if not v:  # given, but empty: never read as "all" (leave the option out for that)
                also = "; leave the option out for all of them" if f.metadata["spec"].empty_ok else ""
                raise UserError(f"{flag(f)}: give at least one value{also}")
        elif isinstance(v, str) and _choices(tp, f.metadata["spec"]) and _number_type(tp) is not None:
            v = _parse_one(v.strip(), tp, flag(f))  # e.g. float | Literal["mid"]: typer hands over the text
        values[f.name] = v
    cfg = cls(**values)
    validate(cfg)
    return cfg


def _check_value(v, tp, spec: Spec, name: str) -> None:
    if spec.keyed and isinstance(v, tuple):  # (bench, value)
        if len(v) != 2 or not isinstance(v[0], str) or not v[0].strip():
            raise UserError(f"{name}: {v!r} is not a (bench, value) pair")
        _check_value(v[1], tp, spec, f"{name} for {v[0]}")
        return
    choices = _choices(tp, spec)
    if isinstance(v, str):
        if choices and v not in choices:
            raise UserError(f"{name}: {v!r} is not one of {', '.join(choices)}")
        if not choices and _number_type(tp) is not None:
            raise UserError(f"{name}: expected a number, got {v!r}")
        return
    if isinstance(v, bool) or not isinstance(v, int | float):
        return
    check_range(v, name, spec.lo, spec.hi, lo_open=spec.lo_open, hi_open=spec.hi_open,
                integer=_number_type(tp) is int)  # fmt: skip


def validate(cfg) -> None:
    """Every field against its spec: type, finite, in range, a listed choice, lists non-empty and without repeats,
    text non-blank (unless blank is the field's default, as for an option meaning "none" when empty)."""
    tps = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        spec, (tp, listed, optional) = f.metadata["spec"], _parts(tps[f.name])
        v, name = getattr(cfg, f.name), flag(f)
        if v is None:
            if not optional:
                raise UserError(f"{name}: a value is required")
            continue
        if isinstance(v, str) and not v.strip() and not _choices(tp, spec) and str(f.default).strip():
            raise UserError(f"{name}: empty; give a value or leave the option out")  # "" where "" means nothing
        items = v if listed else (v,)
        if listed and not items and not spec.empty_ok:
            raise UserError(f"{name}: give at least one value")
        if listed and spec.unique and len(set(items)) < len(items):
            raise UserError(f"{name}: values repeat ({', '.join(map(str, items))})")
        for item in items:
            _check_value(item, tp, spec, name)
