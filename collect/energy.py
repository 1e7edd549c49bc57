"""Energy meters around a piece of work. Each says where its figure comes from (the trace's `energy_source`).

- nvml-counter: the GPU's total-energy counter (nvmlDeviceGetTotalEnergyConsumption, mJ), read before and after.
- nvml-power: power samples (nvmlDeviceGetPowerUsage, mW) on a background thread, integrated over time; for GPUs
  whose counter is unsupported.
- none: no GPU meter; energy is null. With an assumed power draw it becomes `estimated` (power x latency), never
  `measured`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Reading:
    """Filled in when the measured block ends."""

    seconds: float = 0.0
    energy_j: float | None = None


def integrate(times_s: np.ndarray, watts: np.ndarray, start: float, stop: float) -> float:
    """Joules over [start, stop] from power samples (trapezoid rule; the first/last sample held to the ends)."""
    t = np.concatenate([[start], times_s, [stop]])
    w = np.concatenate([[watts[0]], watts, [watts[-1]]])
    keep = (t >= start) & (t <= stop)
    t, w = t[keep], w[keep]
    return float(np.sum((w[1:] + w[:-1]) / 2 * np.diff(t)))


class Meter:
    """No GPU meter: times the block; energy is null, or power x time when a power draw is assumed."""

    name = "none"

    def __init__(self, assumed_power_w: float | None = None) -> None:
        self.assumed_power_w = assumed_power_w

    @property
    def source(self) -> str:
        return "estimated" if self.assumed_power_w is not None else "none"

    @contextmanager
    def measure(self) -> Iterator[Reading]:
        """Times the block; each meter turns its own start state and the block's span into joules."""
        reading = Reading()
        state = self._start()
        t0 = time.perf_counter()
        try:
            yield reading
        finally:
            t1 = time.perf_counter()
            reading.seconds = t1 - t0
            reading.energy_j = self._stop(state, t0, t1)

    def _start(self) -> object:
        return None

    def _stop(self, state: object, t0: float, t1: float) -> float | None:
        return None if self.assumed_power_w is None else self.assumed_power_w * (t1 - t0)

    def idle_power_w(self, seconds: float = 1.0) -> float | None:
        return None

    def info(self) -> dict:
        return {"meter": self.name, "assumed_power_w": self.assumed_power_w}

    def close(self) -> None:
        pass


class NvmlCounterMeter(Meter):
    """Total-energy counter of the GPUs that hold the model, summed."""

    name = "nvml-counter"
    source = "measured"

    def __init__(self, gpus: tuple[int, ...]) -> None:
        import pynvml

        self.nvml = pynvml
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in gpus]

    def _read_mj(self) -> int:
        return sum(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles)

    def _start(self) -> int:
        return self._read_mj()

    def _stop(self, state: int, t0: float, t1: float) -> float:
        return (self._read_mj() - state) / 1000.0

    def idle_power_w(self, seconds: float = 1.0) -> float | None:
        with self.measure() as r:
            time.sleep(seconds)
        return r.energy_j / r.seconds

    def info(self) -> dict:
        return {"meter": self.name, **gpu_info(self.nvml, self.handles)}


@dataclass
class _Sampler:
    interval_s: float
    times: list[float] = field(default_factory=list)
    watts: list[float] = field(default_factory=list)


class NvmlPowerMeter(NvmlCounterMeter):
    """Integrates power samples taken every `interval_s` on a background thread."""

    name = "nvml-power"

    def __init__(self, gpus: tuple[int, ...], interval_s: float = 0.02) -> None:
        super().__init__(gpus)
        self.samples = _Sampler(interval_s)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            w = sum(self.nvml.nvmlDeviceGetPowerUsage(h) for h in self.handles) / 1000.0
            with self.lock:
                self.samples.times.append(time.perf_counter())
                self.samples.watts.append(w)
                if len(self.samples.times) > 100_000:  # keep memory bounded on long runs
                    del self.samples.times[:50_000], self.samples.watts[:50_000]
            time.sleep(self.samples.interval_s)

    def _start(self) -> None:
        return None

    def _stop(self, state: None, t0: float, t1: float) -> float | None:
        time.sleep(self.samples.interval_s)  # one more sample past the end
        with self.lock:
            t, w = np.array(self.samples.times), np.array(self.samples.watts)
        near = (t >= t0 - self.samples.interval_s) & (t <= t1 + self.samples.interval_s)
        return integrate(t[near], w[near], t0, t1) if near.any() else None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=1)


def gpu_info(nvml, handles) -> dict:
    name = nvml.nvmlDeviceGetName(handles[0])
    driver = nvml.nvmlSystemGetDriverVersion()
    as_str = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
    return {"gpu": as_str(name), "gpus": len(handles), "driver": as_str(driver)}


def open_meter(gpus: tuple[int, ...] | None, assumed_power_w: float | None = None) -> Meter:
    """The best meter available for these GPUs: counter, else power sampling, else none (labelled as such)."""
    if not gpus:
        return Meter(assumed_power_w)
    try:
        import pynvml

        pynvml.nvmlInit()
        meter = NvmlCounterMeter(gpus)
    except Exception:  # no NVML library, no driver, no such GPU: measure nothing rather than guess
        return Meter(assumed_power_w)
    try:
        meter._read_mj()
        return meter
    except pynvml.NVMLError_NotSupported:
        return NvmlPowerMeter(gpus)
