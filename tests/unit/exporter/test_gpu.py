"""The NVML collector against the fake pynvml (tests/harness/fake_nvml), put in place of the real
module at the import boundary: values and unit conversions, a missing library, a driver that
fails, an NVML error mid-scrape (logged once), recovery, and the sampler the pipeline uses."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scribewatch.exporter import catalog, gpu
from scribewatch.exporter.gpu import GpuCollector, GpuSampler, Nvml
from tests.harness import FAKE_NVML_DIR

GIB = 1024 ** 3
MIB = 1024 ** 2
GPU0 = {"gpu": "0", "uuid": "GPU-5a7c3e1d-8f2b-4c69-9e0a-1d2b3c4d5e6f",
        "name": "NVIDIA GeForce RTX 3060"}
GPU1 = {"gpu": "1", "uuid": "GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        "name": "NVIDIA GeForce GTX 1660 SUPER"}
GPU_FAMILIES = {f.name for f in catalog.FAMILIES
                if f.source == catalog.GPU and f.name != "scribewatch_nvml_up"}


def load_fake():
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_NVML_DIR / "pynvml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake(monkeypatch):
    module = load_fake()
    monkeypatch.setitem(sys.modules, "pynvml", module)
    for var in ("FAKE_NVML_CONFIG", "FAKE_NVML_FAIL", "FAKE_NVML_UNSUPPORTED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FAKE_NVML_GPUS", "2")
    return module


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def registry_for(nvml: Nvml) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(GpuCollector(nvml))
    return registry


def scrape(registry) -> dict:
    """{(sample name, frozenset(labels)): value}; generate_latest must not raise."""
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def get(samples: dict, sample: str, /, **labels) -> float:
    return samples[(sample, frozenset(labels.items()))]


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


def gpu_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "scribewatch.exporter.gpu"]


def gpu_logs(caplog) -> list[str]:
    return [r.getMessage() for r in gpu_records(caplog)]


def test_values_and_unit_conversions(fake):
    samples = scrape(registry_for(Nvml()))
    assert get(samples, "scribewatch_nvml_up") == 1
    assert get(samples, "scribewatch_gpu_utilization_ratio", **GPU0) == 0.63      # 63 %
    assert get(samples, "scribewatch_gpu_memory_total_bytes", **GPU0) == 12 * GIB
    assert get(samples, "scribewatch_gpu_memory_used_bytes", **GPU0) == int(3.5 * GIB)
    # Only this process's entry counts, not the other process (pid 4242) on the same GPU.
    assert get(samples, "scribewatch_gpu_process_memory_bytes", **GPU0) == int(1.25 * GIB)
    assert get(samples, "scribewatch_gpu_process_memory_bytes", **GPU1) == 0
    assert get(samples, "scribewatch_gpu_temperature_celsius", **GPU0) == 67
    assert get(samples, "scribewatch_gpu_power_watts", **GPU0) == 118.25          # from mW
    assert get(samples, "scribewatch_gpu_sm_clock_hertz", **GPU0) == 1777e6       # from MHz
    assert get(samples, "scribewatch_gpu_throttle_reason_active",
               **GPU0, reason="sw_power_cap") == 1
    assert get(samples, "scribewatch_gpu_throttle_reason_active", **GPU1, reason="gpu_idle") == 1
    for reason in set(catalog.THROTTLE_REASONS) - {"sw_power_cap"}:
        assert get(samples, "scribewatch_gpu_throttle_reason_active", **GPU0, reason=reason) == 0
    # A bounded set: one series per GPU per known reason bit, whatever the driver sets.
    throttle = [k for k in samples if k[0] == "scribewatch_gpu_throttle_reason_active"]
    assert len(throttle) == 2 * len(catalog.THROTTLE_REASONS)
    assert names(samples) == GPU_FAMILIES | {"scribewatch_nvml_up"}


def test_gpus_from_a_json_file_read_at_every_scrape(fake, tmp_path, monkeypatch):
    config = tmp_path / "nvml.json"
    config.write_text(json.dumps({"gpus": [{
        "name": "NVIDIA RTX A2000", "uuid": "GPU-11111111-2222-3333-4444-555555555555",
        "utilization": 100, "power_mw": 70_000, "throttle_reasons": 0x20 | 0x40,
        "processes": [{"pid": "self", "memory": 300 * MIB}, {"pid": "self", "memory": 200 * MIB}],
    }]}))
    monkeypatch.setenv("FAKE_NVML_CONFIG", str(config))
    registry = registry_for(Nvml())
    labels = {"gpu": "0", "uuid": "GPU-11111111-2222-3333-4444-555555555555",
              "name": "NVIDIA RTX A2000"}
    samples = scrape(registry)
    assert get(samples, "scribewatch_gpu_utilization_ratio", **labels) == 1.0
    assert get(samples, "scribewatch_gpu_power_watts", **labels) == 70.0
    assert get(samples, "scribewatch_gpu_process_memory_bytes", **labels) == 500 * MIB
    for reason in ("sw_thermal_slowdown", "hw_thermal_slowdown"):
        assert get(samples, "scribewatch_gpu_throttle_reason_active", **labels, reason=reason) == 1
    config.write_text(json.dumps({"gpus": [{"utilization": 5}]}))
    samples = scrape(registry)
    assert get(samples, "scribewatch_gpu_utilization_ratio", **{**labels, **GPU0}) == 0.05


def test_missing_library_means_no_gpu_families_and_one_log_line(monkeypatch, caplog, clock):
    monkeypatch.setitem(sys.modules, "pynvml", None)      # `import pynvml` raises ImportError
    caplog.set_level(logging.DEBUG, logger="scribewatch.exporter.gpu")
    nvml = Nvml(retry_seconds=60, clock=clock)
    registry = registry_for(nvml)
    for _ in range(5):
        samples = scrape(registry)
        assert samples == {("scribewatch_nvml_up", frozenset()): 0}
        clock.now += 61
    logs = gpu_logs(caplog)
    assert len(logs) == 1 and "not importable" in logs[0], logs
    assert gpu_records(caplog)[0].levelno == logging.INFO, "a CPU-only box is not a warning"
    assert GpuSampler(nvml).sample() is None


@pytest.mark.parametrize("mode", ["library", "driver"])
def test_init_failure_is_retried_at_most_every_retry_seconds(fake, monkeypatch, caplog, clock,
                                                             mode):
    monkeypatch.setenv("FAKE_NVML_FAIL", mode)
    calls = []
    real_init = fake.nvmlInit
    monkeypatch.setattr(fake, "nvmlInit", lambda: (calls.append(1), real_init()))
    caplog.set_level(logging.DEBUG, logger="scribewatch.exporter.gpu")
    registry = registry_for(Nvml(retry_seconds=60, clock=clock))
    for _ in range(10):                                   # ten scrapes within one minute
        assert names(scrape(registry)) == {"scribewatch_nvml_up"}
        clock.now += 5
    assert len(calls) == 1
    clock.now += 15
    scrape(registry)
    assert len(calls) == 2
    assert len(gpu_logs(caplog)) == 1, gpu_logs(caplog)
    monkeypatch.delenv("FAKE_NVML_FAIL")
    clock.now += 60
    assert get(scrape(registry), "scribewatch_nvml_up") == 1
    assert len(gpu_logs(caplog)) == 2 and "NVML up" in gpu_logs(caplog)[1]


def test_error_mid_scrape_then_recovery(fake, monkeypatch, caplog, clock):
    caplog.set_level(logging.DEBUG, logger="scribewatch.exporter.gpu")
    registry = registry_for(Nvml(retry_seconds=60, clock=clock))
    assert get(scrape(registry), "scribewatch_nvml_up") == 1
    assert len(gpu_logs(caplog)) == 1                     # "NVML up: 2 GPU(s)"

    monkeypatch.setenv("FAKE_NVML_FAIL", "read")          # the GPU falls off the bus
    for _ in range(20):
        samples = scrape(registry)                        # never raises
        assert samples == {("scribewatch_nvml_up", frozenset()): 0}
        clock.now += 10
    logs = gpu_logs(caplog)
    assert len(logs) == 2, logs
    assert "GpuIsLost" in logs[1] and gpu_records(caplog)[1].levelno == logging.WARNING
    assert fake._initialised == 0, "the broken session was shut down"

    monkeypatch.delenv("FAKE_NVML_FAIL")
    clock.now += 60
    samples = scrape(registry)
    assert get(samples, "scribewatch_nvml_up") == 1
    assert names(samples) == GPU_FAMILIES | {"scribewatch_nvml_up"}
    logs = gpu_logs(caplog)
    assert len(logs) == 3 and logs[2].startswith("NVML up"), logs
    scrape(registry)
    assert len(gpu_logs(caplog)) == 3


def test_a_query_the_gpu_does_not_support_drops_only_that_series(fake, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_UNSUPPORTED", "power,processes")
    samples = scrape(registry_for(Nvml()))
    assert get(samples, "scribewatch_nvml_up") == 1
    assert names(samples) == GPU_FAMILIES - {"scribewatch_gpu_power_watts",
                                             "scribewatch_gpu_process_memory_bytes"} \
        | {"scribewatch_nvml_up"}


def test_no_gpu_means_nvml_down(fake, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_GPUS", "0")
    assert scrape(registry_for(Nvml())) == {("scribewatch_nvml_up", frozenset()): 0}


def test_registration_does_not_touch_nvml(fake, monkeypatch):
    monkeypatch.setattr(fake, "nvmlInit", lambda: pytest.fail("nvmlInit at registration"))
    registry_for(Nvml())


def test_sampler_gives_peak_utilisation_and_this_process_memory(fake, monkeypatch):
    nvml = Nvml()
    assert GpuSampler(nvml).sample() == (0.63, int(1.25 * GIB))
    monkeypatch.setenv("FAKE_NVML_FAIL", "read")
    assert GpuSampler(nvml).sample() is None


def test_the_real_library_without_a_gpu_does_not_break_the_scrape(monkeypatch):
    pytest.importorskip("pynvml")
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    samples = scrape(registry_for(Nvml()))
    assert get(samples, "scribewatch_nvml_up") in (0, 1)


def test_the_fake_has_every_name_the_collector_uses_and_so_does_nvidia_ml_py():
    used = set(re.findall(r"\b_?nvml\.(\w+)", Path(gpu.__file__).read_text()))
    assert {"nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetComputeRunningProcesses"} <= used
    real = pytest.importorskip("pynvml")
    assert not (FAKE_NVML_DIR / "pynvml.py").samefile(real.__file__)
    fake = load_fake()
    for name in used:
        assert hasattr(fake, name), f"fake pynvml lacks {name}"
        assert hasattr(real, name), f"nvidia-ml-py lacks {name}"
    for name, bit in catalog.THROTTLE_REASONS.items():
        camel = "".join(part.capitalize() for part in name.split("_"))
        assert getattr(real, "nvmlClocksEventReason" + camel) == bit, name
