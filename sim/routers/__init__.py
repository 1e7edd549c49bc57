"""Methods: MESS+, the routers it is compared with, and the bounds every method is judged against.

A policy is fitted once per seed on the calibration split (some also know the whole bench in advance; their help
says so), then routes that seed's scored stream for each alpha, returning the chosen model per request. An online
policy (MESS+ and its rivals) learns while it routes, once per alpha and V: the rivals from the outcome of the
model they chose, MESS+ from its explorations too (sim/routers/messplus.py; sweeps run it batched). A bound
returns the (satisfaction, cost per request) of the stream's best policy of some class directly. Each lives in
its own module in this package and registers itself with `@register`, so adding a baseline is one new file; the
sweep writes each run's `kind`, which is what tables and figures read.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from messplus.sim.draws import Draws

MESSPLUS = "messplus"  # the method this tool is for; sweeps run it batched (sim.mess), others request by request


@dataclass(frozen=True)
class Split:
    """Some requests of one bench, in arrival order. Shapes: n requests, h input dims, M models (cost order)."""

    X: np.ndarray  # [n, h] predictor inputs
    S: np.ndarray  # [n, M] satisfied 0/1
    E: np.ndarray  # [n, M] cost
    latency: np.ndarray | None = None  # [n, M] seconds, where a latency SLA is set


class Policy(Protocol):
    def fit(self, calib: Split, bench: Split) -> None:
        """Learn from the calibration split; `bench` (every request) only for methods that say they know it."""

    def route(self, stream: Split, alpha: float, u: np.ndarray) -> np.ndarray:
        """chosen [S] model per stream request, for SLA alpha; u [S] are the seed's uniforms for random choices."""


@dataclass(frozen=True)
class Served:
    """What an online policy did with a stream of S requests."""

    chosen: np.ndarray  # [S] the model whose answer each request got
    explored: np.ndarray | None = None  # [S] requests sent to every model, at the whole zoo's cost; None: none were

    @property
    def exploring(self) -> np.ndarray:
        """[S] bool: the requests sent to every model."""
        return np.zeros(len(self.chosen), dtype=bool) if self.explored is None else self.explored


class OnlinePolicy(Protocol):
    """A policy that learns while it routes: it decides each request from what it observed before it, and then
    observes the outcome and cost of the model it chose only (bandit feedback), or, where it explores, every
    model's at the whole zoo's cost (MESS+). Its settings are the SLA alpha and the cost weight V."""

    def fit(self, calib: Split, bench: Split) -> None:
        """What it may know before the stream (most know nothing; say so in the help)."""

    def run(self, stream: Split, alpha: float, V: float, draws: Draws, latency_sla: float | None = None) -> Served:
        """Route the stream with the seed's draws (draws.noise [S, M] standard normals for policies that sample;
        MESS+ reads its exploration uniforms, head init and dropout masks); latency_sla: a second SLA on mean
        latency (stream.latency), kept like the first. Each policy has a per-request spec that this equals
        decision by decision."""


class Bound(Protocol):
    def bound(self, stream: Split, alpha: float) -> tuple[float, float]:
        """(satisfaction, cost per request) on the stream; cost inf when nothing in its class reaches alpha."""


@dataclass(frozen=True)
class Method:
    name: str
    kind: Literal["policy", "bound"]  # bound: a reference no deployed router can reach; tables set it apart
    help: str  # what it knows, and when
    make: Callable[..., Policy | OnlinePolicy | Bound]
    needs_calib: bool = False  # fits on the calibration split
    per_model: bool = False  # one run per zoo model, named <name>:<model>, made with make(model=index)
    deployable: bool = True  # knows only what a deployed router could: `sim plan` may recommend it
    batched: bool = False  # sweeps and plans run it through a batched fast path of its own (MESS+: sim.mess)

    @property
    def routes(self) -> bool:
        """Whether it chooses a model per request (a Policy; the oracle too), rather than bounding the cost."""
        return hasattr(self.make, "route") or self.online

    @property
    def online(self) -> bool:
        """Whether it learns while it routes (an OnlinePolicy: one run per alpha and V)."""
        return hasattr(self.make, "run")

    @property
    def replayed(self) -> bool:
        """Whether sim.sweep.routes replays it request by request (every policy but a batched one)."""
        return self.routes and not self.batched

    def variants(self, models: tuple[str, ...]) -> list[tuple[str, Policy | Bound]]:
        """(run name, fresh instance) for each run this method contributes."""
        if self.per_model:
            return [(f"{self.name}:{m}", self.make(model=i)) for i, m in enumerate(models)]
        return [(self.name, self.make())]


_REGISTRY: dict[str, Method] = {}


def register(name: str, kind: Literal["policy", "bound"], help: str, needs_calib: bool = False,
             per_model: bool = False, deployable: bool = True, batched: bool = False):  # fmt: skip
    """Class decorator: make `name` a method of every sweep (and, a deployable policy, a candidate of every plan).
    A name registered twice is an error: two files claiming one method would silently shadow each other."""

    def add(cls):
        if name in _REGISTRY and _REGISTRY[name].make is not cls:
            raise ValueError(f"router {name!r} is registered twice ({_REGISTRY[name].make!r} and {cls!r})")
        _REGISTRY[name] = Method(
            name, kind, help, cls, needs_calib, per_model, deployable and kind == "policy", batched
        )
        return cls

    return add


def registry() -> dict[str, Method]:
    """Every method by name: MESS+, then policies, then bounds (alphabetical within each)."""
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    order = sorted(_REGISTRY.values(), key=lambda m: (m.name != MESSPLUS, m.kind == "bound", m.name))
    return {m.name: m for m in order}
