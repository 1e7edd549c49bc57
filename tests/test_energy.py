"""Energy metering through Zeus: the real ZeusMonitor over fake devices (tests/zeus_fakes.py), and the labelled
fallback where Zeus is missing or cannot open the GPUs."""

import sys
import time
import warnings
from importlib.metadata import version

import pytest

pytest.importorskip("zeus.monitor", reason="zeus (the 'dev' and 'gpu' extras) is not installed")
from zeus.device.cpu.common import EmptyCPUs

from messplus.collect.energy import Meter, ZeusMeter, open_meter
from tests.zeus_fakes import FakeCPUs, FakeGPU, FakeGPUs, FakeRAPLPackage, install, ticking


def test_one_zeus_window_sums_the_gpus_and_the_rapl_packages(monkeypatch):
    cpus = FakeCPUs(FakeRAPLPackage(ticking(1000), ticking(100)), FakeRAPLPackage(ticking(3000)))  # no DRAM zone
    install(monkeypatch, FakeGPUs(FakeGPU(ticking(2000)), FakeGPU(ticking(500))), cpus)
    meter = open_meter((0, 1))
    assert isinstance(meter, ZeusMeter) and meter.source == "measured"
    with meter.measure() as r:
        pass
    assert (r.energy_j, r.cpu_energy_j, r.dram_energy_j) == pytest.approx((2.5, 4.0, 0.1))
    info = meter.info()
    assert info["meter"] == "zeus" and info["meter_version"] == version("zeus") == "0.16.0"
    assert (info["gpu"], info["gpus"], info["gpu_energy"], info["cpu_packages"]) == ("Fake H100", 2, "counter", 2)


def test_a_window_shorter_than_a_counter_tick_reads_zero_and_the_next_carries_it(monkeypatch):
    """Zeus's approx_instant_energy stays off: it would read the instant power (which this fake GPU cannot) and count
    the first window's energy twice. Nor does Zeus's zero-energy warning reach the user."""
    install(monkeypatch, FakeGPUs(FakeGPU(iter([1000, 1000, 1000, 4000]))), EmptyCPUs())
    meter = open_meter((0,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with meter.measure() as first:
            pass
        with meter.measure() as second:
            pass
    assert (first.energy_j, second.energy_j) == (0.0, 3.0)


def test_without_rapl_host_energy_is_null_and_without_gpus_gpu_energy_is_none_or_estimated(monkeypatch):
    install(monkeypatch, FakeGPUs(FakeGPU(ticking(1000))), EmptyCPUs())
    with open_meter((0,)).measure() as r:
        pass
    assert r.energy_j == 1.0 and r.cpu_energy_j is None and r.dram_energy_j is None
    install(monkeypatch, FakeGPUs(FakeGPU(ticking(1000))), FakeCPUs(FakeRAPLPackage(ticking(2000))))
    cpu_only, estimated = open_meter(None), open_meter(None, assumed_power_w=100.0)
    assert (cpu_only.source, estimated.source) == ("none", "estimated") and cpu_only.idle_power_w() is None
    with cpu_only.measure() as r:
        pass
    assert r.energy_j is None and r.cpu_energy_j == 2.0 and r.dram_energy_j is None
    with estimated.measure() as r:
        pass
    assert r.energy_j == pytest.approx(100.0 * r.seconds) and r.cpu_energy_j == 2.0
    assert "gpu" not in cpu_only.info() and cpu_only.info()["cpu_packages"] == 1


def test_gpus_without_a_counter_are_metered_by_zeus_power_polling(monkeypatch):
    """Zeus's PowerMonitor polls in processes of its own (which would find no fake GPU there), so it alone is a stub:
    ZeusMonitor asks it for the window's energy, and closing the meter stops it."""

    class PollingStub:
        def __init__(self, gpu_indices, update_period):
            self.gpu_indices, self.stopped = gpu_indices, False

        def get_energy(self, start_time, end_time):
            return {i: 7.0 for i in self.gpu_indices}

        def stop(self):
            self.stopped = True

    monkeypatch.setattr("zeus.monitor.energy.PowerMonitor", PollingStub)
    install(monkeypatch, FakeGPUs(FakeGPU(ticking(1000), has_counter=False)), EmptyCPUs())
    meter = open_meter((0,))
    with meter.measure() as r:
        pass
    assert r.energy_j == 7.0 and meter.info()["gpu_energy"] == "power polling"
    assert meter.idle_power_w(0.01) > 0
    meter.close()
    assert meter.monitor.power_monitor.stopped


def test_gpus_zeus_cannot_open_fall_back_to_a_labelled_guess_with_a_warning(monkeypatch, caplog):
    install(monkeypatch, FakeGPUs(FakeGPU(ticking(1000))), EmptyCPUs())
    meter = open_meter((3,), assumed_power_w=50.0)
    assert type(meter) is Meter and meter.source == "estimated"
    assert "energy is not measured: Zeus cannot open GPUs [3]" in caplog.text


def test_without_zeus_energy_is_none_and_says_why(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "zeus.monitor", None)  # as if not installed: importing it raises ImportError
    meter = open_meter((0,))
    assert type(meter) is Meter and meter.source == "none" and meter.info()["meter"] == "none"
    with meter.measure() as r:
        time.sleep(0.001)
    assert r.energy_j is None and r.cpu_energy_j is None and r.seconds > 0
    assert "Zeus is not installed (pip install -e '.[gpu]')" in caplog.text
