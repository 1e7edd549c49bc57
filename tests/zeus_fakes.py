"""Fake devices behind Zeus's own device interfaces (its GPUs and CPUs classes), installed as the device singletons
that Zeus's get_gpus() and get_cpus() hand out: the real ZeusMonitor meters them, with no GPU, driver or RAPL.

Each counter is an iterator of cumulative readings in mJ, read once when a window begins and once when it ends."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import zeus.device.cpu
import zeus.device.gpu
from zeus.device.cpu.common import CpuDramMeasurement, CPUs
from zeus.device.gpu.common import GPUs


def ticking(step_mj: int) -> Iterator[int]:
    """A counter that moves `step_mj` between any two reads."""
    return itertools.count(step_mj, step_mj)


@dataclass
class FakeGPU:
    """What Zeus asks of one GPU (its GPU class is the NVML or AMD SMI binding, so this one stands alone)."""

    counter: Iterator[int]
    has_counter: bool = True

    def get_name(self) -> str:
        return "Fake H100"

    def supports_get_total_energy_consumption(self) -> bool:
        return self.has_counter

    def get_total_energy_consumption(self) -> int:
        return next(self.counter)


@dataclass
class FakeRAPLPackage:
    """One RAPL package: a CPU counter, and a DRAM counter where the package has a DRAM zone."""

    cpu: Iterator[int]
    dram: Iterator[int] | None = None

    def get_total_energy_consumption(self) -> CpuDramMeasurement:
        return CpuDramMeasurement(cpu_mj=next(self.cpu), dram_mj=None if self.dram is None else next(self.dram))


class FakeGPUs(GPUs):
    """Zeus's own GPU collection (indexing, forwarding) over fake GPUs."""

    def __init__(self, *gpus: FakeGPU) -> None:
        self._gpus = list(gpus)

    def __del__(self) -> None:
        pass

    @property
    def gpus(self) -> list[FakeGPU]:
        return self._gpus


class FakeCPUs(CPUs):
    def __init__(self, *packages: FakeRAPLPackage) -> None:
        self._cpus = list(packages)

    def __del__(self) -> None:
        pass

    @property
    def cpus(self) -> list[FakeRAPLPackage]:
        return self._cpus


def install(monkeypatch: pytest.MonkeyPatch, gpus: GPUs, cpus: CPUs) -> None:
    monkeypatch.setattr(zeus.device.gpu, "_gpus", gpus)
    monkeypatch.setattr(zeus.device.cpu, "_cpus", cpus)
