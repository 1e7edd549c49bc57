"""Energy meters around a piece of work. Each says where its GPU figure comes from (the trace's `energy_source`).

- zeus: Zeus (ml.energy, the `gpu` extra) opens one measurement window per block: the GPUs' total-energy counter
  (Volta and later), power polling in a helper process where a GPU has none; CPU package and DRAM energy through
  RAPL wherever it is readable (Intel, AMD), null where it is not. Without GPUs it meters the CPU and DRAM alone.
- none: Zeus is not installed or cannot open the GPUs; energy is null, or `estimated` (power x latency) with an
  assumed power draw, never `measured`.

Zeus's approx_instant_energy stays off: a window shorter than one counter step (~10 ms) reads 0 J and the next
window carries its energy, so sums over requests stay exact, where the approximation would count it twice. The one
thing still asked of NVML directly is the driver version for the provenance, which Zeus does not report.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zeus.monitor import ZeusMonitor

log = logging.getLogger(__name__)
WINDOW = "messplus"  # Zeus names its windows; ours never overlap
ZERO_WARNING = "The energy consumption of one or more GPUs was measured as zero"


@dataclass
class Reading:
    """Filled in when the measured block ends; joules are null where nothing measured them."""

    seconds: float = 0.0
    energy_j: float | None = None  # the GPUs'
    cpu_energy_j: float | None = None  # the CPU packages' (RAPL)
    dram_energy_j: float | None = None  # the DRAM's (RAPL)


class Meter:
    """No meter: times the block; energy is null, or power x time when a power draw is assumed."""

    name = "none"

    def __init__(self, assumed_power_w: float | None = None) -> None:
        self.assumed_power_w = assumed_power_w

    @property
    def source(self) -> str:
        return "estimated" if self.assumed_power_w is not None else "none"

    @contextmanager
    def measure(self) -> Iterator[Reading]:
        reading = Reading()
        self._begin()
        t0 = time.perf_counter()
        try:
            yield reading
        finally:
            reading.seconds = time.perf_counter() - t0
            self._end(reading)

    def _begin(self) -> None:
        pass

    def _end(self, reading: Reading) -> None:
        if self.assumed_power_w is not None:
            reading.energy_j = self.assumed_power_w * reading.seconds

    def idle_power_w(self, seconds: float = 1.0) -> float | None:
        return None

    def info(self) -> dict:
        return {"meter": self.name, "assumed_power_w": self.assumed_power_w}

    def close(self) -> None:
        pass


class ZeusMeter(Meter):
    """One Zeus window per block, over the monitor's GPUs (if any) and every RAPL package it can read."""

    name = "zeus"

    def __init__(self, monitor: ZeusMonitor, assumed_power_w: float | None = None) -> None:
        super().__init__(assumed_power_w)
        self.monitor = monitor

    @property
    def source(self) -> str:
        return "measured" if self.monitor.gpu_indices else super().source

    # lm-eval hands back finished results, so the GPUs are idle when a call returns; a CUDA synchronize would only
    # open a CUDA context in this process, which vLLM's engine does not use
    def _begin(self) -> None:
        self.monitor.begin_window(WINDOW, sync_execution=False)

    def _end(self, reading: Reading) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ZERO_WARNING)  # expected for short windows: see the module docstring
            m = self.monitor.end_window(WINDOW, sync_execution=False)
        if self.monitor.gpu_indices:
            reading.energy_j = sum(m.gpu_energy.values())
        else:
            super()._end(reading)
        reading.cpu_energy_j = sum(m.cpu_energy.values()) if m.cpu_energy else None
        reading.dram_energy_j = sum(m.dram_energy.values()) if m.dram_energy else None

    def idle_power_w(self, seconds: float = 1.0) -> float | None:
        if not self.monitor.gpu_indices:
            return None
        with self.measure() as r:
            time.sleep(seconds)
        return r.energy_j / r.seconds

    def info(self) -> dict:
        gpus, zeus_gpus = self.monitor.gpu_indices, self.monitor.gpus
        found = {"meter_version": version("zeus"), "cpu_packages": len(self.monitor.cpu_indices)}
        if gpus:
            counter = all(zeus_gpus.supports_get_total_energy_consumption(i) for i in gpus)
            found |= {"gpu": zeus_gpus.get_name(gpus[0]), "gpus": len(gpus), "driver": nvidia_driver(),
                      "gpu_energy": "counter" if counter else "power polling"}  # fmt: skip
        return super().info() | found

    def close(self) -> None:
        if self.monitor.power_monitor is not None:  # the polling process for GPUs without a counter
            self.monitor.power_monitor.stop()


def nvidia_driver() -> str | None:
    import pynvml  # installed with Zeus

    try:
        return pynvml.nvmlSystemGetDriverVersion()
    except pynvml.NVMLError:  # not an NVIDIA GPU: Zeus did not start NVML
        return None


def open_meter(gpus: tuple[int, ...] | None, assumed_power_w: float | None = None) -> Meter:
    """Zeus over these GPUs (CUDA's numbering) where it is installed and can open them, else no meter; a meter
    that cannot be had is one warning saying why, and the trace says `none` (or `estimated`)."""
    try:
        from zeus.monitor import ZeusMonitor
    except ImportError:
        if gpus:
            log.warning("GPU energy is not measured: Zeus is not installed (pip install -e '.[gpu]')")
        return Meter(assumed_power_w)
    try:
        return ZeusMeter(ZeusMonitor(gpu_indices=list(gpus or ())), assumed_power_w)
    except Exception as e:  # no driver, no such GPU, an unreadable RAPL file: measure nothing rather than guess
        log.warning("energy is not measured: Zeus cannot open %s (%s)", f"GPUs {list(gpus)}" if gpus else "RAPL", e)
        return Meter(assumed_power_w)
