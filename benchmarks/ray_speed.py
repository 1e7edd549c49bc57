"""`--ray` against one process: the paper's sweep grid, and a plan over every bench, with the time of each task and
what Ray adds to it. Prints figures; asserts nothing.

Sweep: the grid of benchmarks/sweep_speed.py (8 benches x 3 seeds x 3 alpha x 3 c x 3 V = 648 MESS+ runs on 768-dim
inputs, over the real Qwen2 traces when ../shared has them, else the demo zoo), in one process (two torch threads)
and on a local Ray cluster of --cpus CPUs, 72 tasks of one trajectory each; fastest of --repeats, after a first Ray
call that also starts the workers. Plan: `sim plan` with its defaults over every bench, --orders orders, on the same
cluster, stage by stage (sim/distributed.py). Each task is timed on its worker; the overhead per task is what a
stage's wall time x CPUs holds beyond its tasks' own time. From those, on paper: --workers workers planning
--plan-orders orders.

    python benchmarks/ray_speed.py [--cpus 2] [--repeats 3] [--orders 40] [--workers 64] [--plan-orders 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl
import ray
from sweep_speed import paper_grid, random_inputs, timed, trace_path

from messplus.sim import distributed
from messplus.sim import plan as plan_module
from messplus.sim.plan import PlanConfig, run_plan
from messplus.sim.sweep import run_sweep
from messplus.traces.io import read_trace


def timed_call(fn, *args):
    """A task as sim.distributed runs it, and its seconds on the worker."""
    t0 = time.perf_counter()
    out = distributed._call(fn, *args)
    return out, time.perf_counter() - t0


class Timed(distributed.Cluster):
    """The cluster of `--ray`, recording per gather (a sweep's tasks, a plan's stage) its wall time and each task's."""

    def __init__(self, ray_module) -> None:
        super().__init__(ray_module)
        self.remote = ray_module.remote(num_cpus=1)(timed_call)
        self.stages: list[tuple[str, float, np.ndarray]] = []  # (label, wall s, [tasks] s)

    def gather(self, label, tasks, progress):
        t0 = time.perf_counter()
        out = super().gather(label, tasks, progress)
        self.stages.append((label, time.perf_counter() - t0, np.array([s for _, s in out])))
        return [value for value, _ in out]


def overhead(stages, cpus: int) -> float:
    """Seconds per task that a stage's wall time on `cpus` CPUs holds beyond its tasks' own time."""
    return sum(wall * cpus - t.sum() for _, wall, t in stages) / sum(len(t) for _, _, t in stages)


def sweep(path: Path, label: str, args) -> None:
    trace = read_trace(path)
    inputs, cfg = random_inputs(trace, 768), paper_grid(trace)
    one_times, one = timed(lambda: run_sweep(cfg, path, inputs=inputs), args.repeats)
    cluster = Timed(ray)
    first, _ = timed(lambda: run_sweep(cfg, path, inputs=inputs, tables=cluster.sweep), 1)
    cluster.stages.clear()
    ray_times, spread = timed(lambda: run_sweep(cfg, path, inputs=inputs, tables=cluster.sweep), args.repeats)
    best = min(range(args.repeats), key=ray_times.__getitem__)
    _, wall, tasks = cluster.stages[best]
    same = all(getattr(one, t).equals(getattr(spread, t)) for t in ("runs", "steps", "predictions"))
    print(f"sweep, {label}: {one.runs.height} MESS+ runs, {len(tasks)} tasks (one per trajectory); same tables: {same}")
    print(
        f"  one process (2 torch threads): {min(one_times):.2f} s, fastest of {', '.join(f'{t:.2f}' for t in one_times)}"
    )
    print(f"  Ray, {args.cpus} CPUs: {min(ray_times):.2f} s, fastest of {', '.join(f'{t:.2f}' for t in ray_times)} "
          f"(first call, starting the workers: {first[0]:.2f} s); the tasks {wall:.2f} s of it")  # fmt: skip
    per_task, driver = overhead([cluster.stages[best]], args.cpus), min(ray_times) - wall
    print(f"  per task: {tasks.mean():.3f} s mean, {tasks.max():.3f} s at most, {tasks.sum():.2f} s in all; "
          f"overhead {per_task:.3f} s per task; the driver alone (loading, numbering) {driver:.2f} s")  # fmt: skip
    on_paper = driver + max(tasks.sum() / args.workers, tasks.max()) + per_task * len(tasks) / args.workers
    print(f"  on paper, {args.workers} workers: about {on_paper:.1f} s")


def plan(path: Path, args) -> None:
    cluster, loading, load = Timed(ray), [], plan_module.load

    def timed_load(*a, **kw):  # the driver's loading: inputs, and every order's draws and bounds
        t0 = time.perf_counter()
        out = load(*a, **kw)
        loading.append(time.perf_counter() - t0)
        return out

    plan_module.load = timed_load
    t0 = time.perf_counter()
    table, _ = run_plan(PlanConfig(seeds=f"0-{args.orders - 1}"), path, replays=cluster.replays())
    wall = time.perf_counter() - t0
    plan_module.load = load
    in_stages = sum(w for _, w, _ in cluster.stages)
    driver, scale = wall - in_stages, args.plan_orders / args.orders
    per_task = overhead(cluster.stages, args.cpus)
    print(f"plan, every bench, {args.orders} orders, Ray on {args.cpus} CPUs: {wall:.1f} s, of which the driver alone "
          f"{driver:.1f} s ({sum(loading):.1f} s loading inputs, draws and bounds; the rest choosing); overhead "
          f"{per_task:.3f} s per task")  # fmt: skip
    kinds: dict[str, list] = defaultdict(list)
    for label, _, t in cluster.stages:
        kinds[label.split(": ")[1]].append(t)
    for kind, ts in kinds.items():
        t = np.concatenate(ts)
        print(f"  {kind}: {len(ts)} stages, {len(t)} tasks, {t.mean():.3f} s mean, {t.max():.3f} s at most, "
              f"{t.sum():.1f} s in all")  # fmt: skip
    one = driver * scale + sum(t.sum() for _, _, t in cluster.stages) * scale
    # each stage: its tasks, `scale` times as many, spread over the workers, never shorter than its longest task
    spread = sum(max(t.sum() * scale / args.workers, t.max()) + per_task * len(t) * scale / args.workers
                 for _, _, t in cluster.stages)  # fmt: skip
    print(f"on paper, {args.plan_orders} orders: one process about {one / 60:.0f} min; {args.workers} workers about "
          f"{(driver * scale + spread) / 60:.1f} min, of which the driver alone {driver * scale / 60:.1f} min")  # fmt: skip
    picks = table.filter(pl.col("pick"))
    print("  picks: " + ", ".join(f"{b} {m}" for b, m in picks.select("bench", "method").iter_rows()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--orders", type=int, default=40, help="orders the plan is measured on (at least 32)")
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--plan-orders", type=int, default=1000)
    ap.add_argument("--skip-plan", action="store_true")
    args = ap.parse_args()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        path, label = trace_path(Path(tmp))
        sweep(path, label, args)
        if not args.skip_plan:
            plan(path, args)
    ray.shutdown()


if __name__ == "__main__":
    main()
