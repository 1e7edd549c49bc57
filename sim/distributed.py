"""`sim sweep --ray` and `sim plan --ray`: the same work spread over a Ray cluster, and the same tables out.

Units of work, each independent of every other: a sweep's MESS+ predictor trajectory (bench, seed, c, k) with every
queue replayed on it, and its routers and bounds of one (bench, seed); a plan's MESS+ trajectory (seed, c) and its
routers of one seed, stage by stage of sim.plan's search (which stage comes next depends on the last one's rows).

Why the tables are the same: the driver loads every bench as one process does (inputs, each seed's draws and
bounds) and hands a task the bench without its draws, shared through Ray's object store, plus its own seed's draws.
Everything random comes from (seed, position) (sim.draws), and a trajectory trained alone gives the same floats as
trained in one batch with the others (sim.predictor works group by group), so where a task runs changes nothing. The
driver puts the pieces back in the order one process makes them (sim.sweep.bench_blocks; sim.plan.outcomes and
router_outcomes) and numbers the runs in that order; tables are kept in one chunk, so the files are the same bytes.
That holds on workers of one kind: the same CPU, torch and BLAS builds, as for one process on two machines.

Faults: Ray runs a task whose worker died again, up to RETRIES times; a task that keeps failing, or raises, stops
the command with one line naming it, and Ctrl-C cancels every task. Nothing is written until every task is back,
then the set is written atomically as always, so a failure leaves the previous set as it was.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from messplus.common import UserError, pick_device
from messplus.sim import mess, plan
from messplus.sim.bench import Bench
from messplus.sim.config import SweepConfig
from messplus.sim.draws import Draws
from messplus.sim.results import frames
from messplus.sim.routers import MESSPLUS
from messplus.sim.sweep import Progress, bound_blocks, router_blocks

RETRIES = 3  # runs of a task after its worker died (Ray's max_retries); an exception raised is never retried
POLL_S = 0.5  # seconds between looks at the tasks still running
INSTALL = 'pip install -e ".[ray]"'
# (bench, section, major, unit, minor): a sweep's runs in one process's order, bench by bench: MESS+ (section 0) by
# what it learns from (major), trajectory (unit) and block; the routers (1) seed by seed; each bound (2) seed by seed
Key = tuple[int, int, int, int, int]
Piece = tuple[tuple[int, int, int], pl.DataFrame, pl.DataFrame]  # (section, major, minor), runs, steps


@dataclass(frozen=True)
class Task:
    """One unit of work: what an error names, and the call a worker makes, fn(*args)."""

    name: str
    fn: Callable
    args: tuple


def _ray():
    """Ray, imported only for --ray: an optional extra."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs Ray, an optional extra: {INSTALL}") from None
    except Exception as e:  # a release that cannot import here (see pyproject.toml)
        raise UserError(
            f"--ray: `import ray` failed ({type(e).__name__}: {e}); install the pinned one: {INSTALL}"
        ) from None
    return ray


@contextmanager
def cluster(address: str | None) -> Iterator[Cluster | None]:
    """Ray for the block, or None without an address (one process). `local` starts a cluster of this machine's cores,
    shut down afterwards; `auto` joins the running cluster, HOST:PORT or ray://HOST:PORT a given one. A connection
    the caller made already (ray.init) is used as it is."""
    if address is None:
        yield None
        return
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # Ray's notes on its own future defaults
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            except Exception as e:  # no cluster there, a bad address, a version mismatch
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise UserError(f"--ray {address}: cannot connect ({first})") from None
    try:
        yield Cluster(ray)
    finally:
        if started:
            ray.shutdown()


def _call(fn: Callable, *args):
    """A task on a worker: torch and BLAS on one thread, as Ray gives each task one CPU. The shared bench arrives
    read-only (Ray's store), and torch warns that it shares such arrays; tasks only read them."""
    with plan.one_thread(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        return fn(*args)


class Cluster:
    """Runs tasks on a connected Ray cluster: `sweep` stands in for sim.sweep.replay, `replays` for sim.plan's."""

    def __init__(self, ray) -> None:
        self.ray = ray
        self.remote = ray.remote(num_cpus=1)(_call)

    def gather(self, label: str, tasks: list[Task], progress: Progress | None) -> list:
        """Every task's result, in the order given. A task that failed on each try, or raised, is one UserError
        naming it; then, as on Ctrl-C, every task still running is cancelled."""
        ray = self.ray
        refs = [self.remote.options(name=t.name, max_retries=RETRIES).remote(t.fn, *t.args) for t in tasks]
        named, done = dict(zip(refs, tasks, strict=True)), {}
        advance = progress(label, len(refs)) if progress is not None else lambda n: None
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
                done |= {ref: self.result(ref, named[ref]) for ref in ready}
                advance(len(ready))
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return [done[ref] for ref in refs]

    def result(self, ref, task: Task):
        """A finished task's value, or one UserError naming it."""
        errors = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except errors.RayTaskError as e:  # it raised: as one process would have, so not retried
            cause = e.cause
            what = str(cause) if isinstance(cause, UserError) else f"{type(cause).__name__}: {cause}"
            raise UserError(f"{task.name}: {what}") from None
        except errors.RayError as e:  # its worker or node died on every try
            raise UserError(f"{task.name}: failed on each of its {RETRIES + 1} tries ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no message'})") from None  # fmt: skip

    def on(self, b: Bench) -> Callable[..., Task]:
        """task(name, seed, fn, *args): a Task calling fn(b with that seed's draws and bounds alone, *args). b itself,
        inputs and arrays, goes to Ray's object store once; each task carries its own seed's draws."""
        shared = self.ray.put(replace(b, draws={}, bounds={}))
        bounds = defaultdict(dict)  # seed -> its (seed, alpha) bounds
        for key, v in b.bounds.items():
            bounds[key[0]][key] = v

        def task(name: str, seed: int, fn: Callable, *args) -> Task:
            return Task(name, fn, (shared, b.draws[seed], bounds[seed], *args))

        return task

    def sweep(
        self, cfg: SweepConfig, benches: dict[str, Bench], progress: Progress | None = None
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """sim.sweep.replay's tables: a task per MESS+ trajectory, one per (bench, seed) for the other methods."""
        cfg = replace(cfg, device=on_cpus(cfg.device))
        tasks, units = [], []  # units: (bench, trajectory or seed) of each task
        for i, b in enumerate(benches.values()):
            task = self.on(b)
            if MESSPLUS in cfg.methods:
                trajectories = [(s, c, k) for s in cfg.seeds for c, k in itertools.product(cfg.cs, cfg.ks)]
                for t, (s, c, k) in enumerate(trajectories):
                    one = replace(cfg, seeds=(s,), cs=(c,), ks=(k,))
                    tasks.append(task(f"sweep: bench {b.name}, seed {s}, c={c:g}, k={k:g}", s, trajectory, one))
                    units.append((i, t))
            if any(m != MESSPLUS for m in cfg.methods):
                for j, s in enumerate(cfg.seeds):
                    tasks.append(task(f"sweep: bench {b.name}, seed {s}, routers and bounds", s, others,
                                      replace(cfg, seeds=(s,))))  # fmt: skip
                    units.append((i, j))
        pieces, predictions = [], []
        for (i, unit), (parts, predicted) in zip(units, self.gather("sweep tasks", tasks, progress), strict=True):
            pieces += [
                ((i, section, major, unit, minor), runs, steps) for (section, major, minor), runs, steps in parts
            ]
            predictions += [] if predicted is None else [predicted]
        runs, steps = numbered(pieces)
        return runs, steps, pl.concat(predictions) if predictions else mess.prediction_table({}, {})

    def replays(self, progress: Progress | None = None) -> plan.Replays:
        """sim.plan's replays: a task per MESS+ trajectory (seed, c), one per seed for the routers."""
        on_cpus("auto")  # a plan's predictors train where torch finds a GPU; here, on the workers' CPUs
        return plan.Replays(
            mess=lambda scfg, b, at, _=None: self.plan_mess(scfg, b, at, progress),
            routers=lambda scfg, b, at, only=None: self.plan_routers(scfg, b, at, only, progress),
        )

    def plan_mess(self, scfg: SweepConfig, b: Bench, at: np.ndarray, progress: Progress | None) -> pl.DataFrame:
        """sim.plan.outcomes' rows, in its order: seed by seed, c by c."""
        task, cpu = self.on(b), replace(scfg, device="cpu")
        tasks = [task(f"plan: bench {b.name}, seed {s}, c={c:g}", s, plan_trajectory, replace(cpu, seeds=(s,), cs=(c,)),
                      at) for s in scfg.seeds for c in scfg.cs]  # fmt: skip
        return pl.concat(self.gather(f"{b.name}: MESS+ trajectories", tasks, progress))

    def plan_routers(self, scfg: SweepConfig, b: Bench, at: np.ndarray, only: str | None,
                     progress: Progress | None) -> pl.DataFrame:  # fmt: skip
        """sim.plan.router_outcomes' rows, in its order: seed by seed."""
        task, cpu = self.on(b), replace(scfg, device="cpu")
        tasks = [task(f"plan: bench {b.name}, seed {s}, routers", s, plan_routers, replace(cpu, seeds=(s,)), at, only)
                 for s in scfg.seeds]  # fmt: skip
        return pl.concat(self.gather(f"{b.name}: routers", tasks, progress))


def on_cpus(device: str) -> str:
    """Tasks train on the workers' CPUs: a device the driver would resolve to a GPU is refused, since one process
    would then train there, and the tables would differ."""
    if pick_device(device) == "cuda":
        raise UserError("--ray trains the predictors on the workers' CPUs, and this machine has a GPU one process "
                        "would use: pass --device cpu (sim sweep), or hide the GPU (CUDA_VISIBLE_DEVICES=)")  # fmt: skip
    return "cpu"


def seeded(b: Bench, draws: Draws, bounds: dict) -> Bench:
    """The bench a task works on: the shared one with its own seed's draws and bounds."""
    return replace(b, draws={draws.seed: draws}, bounds=bounds)


def trajectory(b: Bench, draws: Draws, bounds: dict, cfg: SweepConfig) -> tuple[list[Piece], pl.DataFrame]:
    """A sweep task: one MESS+ trajectory (cfg names one seed, c and k) trained, every run replayed on it, block by
    block, and its predictions."""
    b = seeded(b, draws, bounds)
    trained = mess.train(cfg, {b.name: b})
    blocks = list(mess.blocks(cfg, b, *trained[b.name]))
    learns = [cfg.learns.index(block.config["learn"][0]) for block in blocks]
    return block_tables(cfg, b, blocks, lambda j: (0, learns[j], j)), mess.prediction_table({b.name: b}, trained)


def others(b: Bench, draws: Draws, bounds: dict, cfg: SweepConfig) -> tuple[list[Piece], None]:
    """A sweep task: every router's runs on one seed (cfg names it), then each bound's."""
    b = seeded(b, draws, bounds)
    routed = list(router_blocks(cfg, b, draws.seed))
    blocks = routed + list(bound_blocks(cfg, b))
    return block_tables(cfg, b, blocks, lambda j: (1, 0, 0) if j < len(routed) else (2, j - len(routed), 0)), None


def block_tables(cfg: SweepConfig, b: Bench, blocks: list, key: Callable[[int], tuple[int, int, int]]) -> list[Piece]:
    """Each block's runs and steps tables (runs numbered from 0), keyed by key(block index)."""
    return [(key(j), *frames([block], len(b.models), cfg.steps_every)) for j, block in enumerate(blocks)]


def numbered(pieces: list[tuple[Key, pl.DataFrame, pl.DataFrame]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The runs and steps tables of every piece, in key order, runs numbered in that order (sim.results.frames)."""
    runs, steps, n = [], [], 0
    for _, r, s in sorted(pieces, key=lambda p: p[0]):
        runs.append(r.with_columns(pl.col("run_id") + n))
        steps.append(s.with_columns(pl.col("run_id") + n))
        n += r.height
    return pl.concat(runs, rechunk=True), pl.concat(steps, rechunk=True)


def plan_trajectory(b: Bench, draws: Draws, bounds: dict, scfg: SweepConfig, at: np.ndarray) -> pl.DataFrame:
    """A plan task: sim.plan.outcomes of one MESS+ trajectory."""
    return plan.outcomes(scfg, seeded(b, draws, bounds), at)


def plan_routers(b: Bench, draws: Draws, bounds: dict, scfg: SweepConfig, at: np.ndarray, only: str | None):
    """A plan task: sim.plan.router_outcomes on one seed."""
    return plan.router_outcomes(scfg, seeded(b, draws, bounds), at, only)
