"""GPU gauges from NVML, read once a second by the exporter's sampler (never by a scrape).

Without the library, the driver or a GPU — or when NVML fails mid-read — the GPU families are
absent, `scribewatch_nvml_up` is 0 and the scrape succeeds. The problem is logged once when it
starts and once when it ends, and initialisation is retried lazily (at most every
`retry_seconds`), never on every scrape.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time

from ..pipeline.contract import GpuMemory
from . import catalog

log = logging.getLogger(__name__)


def _import_nvml():
    """The one place `pynvml` (nvidia-ml-py) is imported: tests put a fake module here."""
    import pynvml

    return pynvml


@dataclasses.dataclass(frozen=True)
class GpuReading:
    index: int
    uuid: str
    name: str
    utilization_ratio: float | None      # None: this GPU does not support the query
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    memory_free_bytes: int | None        # what a new allocation can have now
    process_memory_bytes: int | None     # this process's memory on the GPU
    temperature_celsius: float | None
    power_watts: float | None
    sm_clock_hertz: float | None
    throttle_reasons: int | None         # NVML clock event reason bit mask
    compute_capability: tuple[int, int] | None = None


def _text(value) -> str:
    # Older nvidia-ml-py returns bytes for names and UUIDs.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


class Nvml:
    """One NVML session shared by the collector and the sampler (thread-safe)."""

    def __init__(self, retry_seconds: float = 60.0, clock=time.monotonic):
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._nvml = None                 # the module, while initialised
        self._next_init = 0.0
        self._worked = False              # NVML has answered at least once
        self._down: str | None = None     # the problem logged last; None while healthy
        self._pid = os.getpid()

    def read(self) -> list[GpuReading] | None:
        """Every GPU's reading, or None when NVML is unavailable now."""
        with self._lock:
            if self._nvml is None and not self._init():
                return None
            try:
                readings = [self._read_gpu(i) for i in range(self._nvml.nvmlDeviceGetCount())]
            # Anything a broken driver raises (NVMLError, OSError from ctypes, …) must not
            # fail the scrape: report NVML down instead.
            except Exception as e:
                self._shutdown()
                self._set_down(f"NVML error while reading GPUs: {_describe(e)}")
                return None
            if not readings:
                self._shutdown()
                self._set_down("NVML found no GPU")
                return None
            if self._down is not None or not self._worked:
                log.info("NVML up: %d GPU(s): %s", len(readings),
                         ", ".join(r.name for r in readings))
            self._down, self._worked = None, True
            return readings

    # -- internals (called with the lock held) --------------------------------------------
    def _init(self) -> bool:
        now = self._clock()
        if now < self._next_init:
            return False
        try:
            nvml = _import_nvml()
        except ImportError as e:
            self._next_init = now + self._retry_seconds
            self._set_down(f"nvidia-ml-py not importable ({e})")
            return False
        try:
            nvml.nvmlInit()
        except Exception as e:
            self._next_init = now + self._retry_seconds
            self._set_down(f"NVML init failed: {_describe(e)}")
            return False
        self._nvml = nvml
        return True

    def _shutdown(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass
        self._nvml = None
        self._next_init = self._clock() + self._retry_seconds

    def _set_down(self, problem: str) -> None:
        if self._down is None:
            # No GPU is the normal state of a CPU box: say it once, quietly. Losing NVML after
            # it worked is worth a warning.
            level = logging.WARNING if self._worked else logging.INFO
            log.log(level, "GPU metrics unavailable: %s (retrying every %.0f s)",
                    problem, self._retry_seconds)
        self._down = problem

    def _optional(self, fn, *args):
        """fn(*args), or None when this GPU does not support the query."""
        try:
            return fn(*args)
        except self._nvml.NVMLError as e:
            if getattr(e, "value", None) == self._nvml.NVML_ERROR_NOT_SUPPORTED:
                return None
            raise

    def _read_gpu(self, index: int) -> GpuReading:
        nvml, opt = self._nvml, self._optional
        h = nvml.nvmlDeviceGetHandleByIndex(index)
        util = opt(nvml.nvmlDeviceGetUtilizationRates, h)
        mem = opt(nvml.nvmlDeviceGetMemoryInfo, h)
        procs = opt(nvml.nvmlDeviceGetComputeRunningProcesses, h)
        power_mw = opt(nvml.nvmlDeviceGetPowerUsage, h)
        clock_mhz = opt(nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_SM)
        # Renamed "clocks event reasons" in newer NVML; the throttle name is the older one.
        reasons_fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) \
            or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return GpuReading(
            index=index,
            uuid=_text(nvml.nvmlDeviceGetUUID(h)),
            name=_text(nvml.nvmlDeviceGetName(h)),
            utilization_ratio=None if util is None else util.gpu / 100.0,
            memory_used_bytes=None if mem is None else mem.used,
            memory_total_bytes=None if mem is None else mem.total,
            memory_free_bytes=None if mem is None else mem.free,
            process_memory_bytes=None if procs is None else sum(
                p.usedGpuMemory or 0 for p in procs if p.pid == self._pid),
            temperature_celsius=opt(nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU),
            power_watts=None if power_mw is None else power_mw / 1000.0,
            sm_clock_hertz=None if clock_mhz is None else clock_mhz * 1e6,
            throttle_reasons=opt(reasons_fn, h),
            compute_capability=self._capability(h),
        )

    def _capability(self, handle) -> tuple[int, int] | None:
        fn = getattr(self._nvml, "nvmlDeviceGetCudaComputeCapability", None)
        try:
            return None if fn is None else tuple(fn(handle))
        except Exception:   # older driver or library: the planner does without
            return None


_VALUES = (  # family name, GpuReading field
    ("scribewatch_gpu_utilization_ratio", "utilization_ratio"),
    ("scribewatch_gpu_memory_used_bytes", "memory_used_bytes"),
    ("scribewatch_gpu_memory_total_bytes", "memory_total_bytes"),
    ("scribewatch_gpu_process_memory_bytes", "process_memory_bytes"),
    ("scribewatch_gpu_temperature_celsius", "temperature_celsius"),
    ("scribewatch_gpu_power_watts", "power_watts"),
    ("scribewatch_gpu_sm_clock_hertz", "sm_clock_hertz"),
)
_THROTTLE = "scribewatch_gpu_throttle_reason_active"
_UP = "scribewatch_nvml_up"


class GpuCollector:
    def __init__(self, session: Nvml | None = None):
        self._session = Nvml() if session is None else session

    @property
    def nvml(self) -> Nvml:
        """The NVML session, shared with the GPU collector: one library handle per process."""
        return self._session

    def describe(self):
        # Names for the registry without touching NVML at registration time.
        return [catalog.family(n).new() for n, _ in _VALUES] + \
            [catalog.family(_THROTTLE).new(), catalog.family(_UP).new()]

    def collect(self):
        readings = self._session.read()
        up = catalog.family(_UP).new()
        up.add_metric([], 1 if readings else 0)
        if not readings:
            return [up]
        families = []
        for name, field in _VALUES:
            fam = catalog.family(name).new()
            for r in readings:
                value = getattr(r, field)
                if value is not None:
                    fam.add_metric([str(r.index), r.uuid, r.name], value)
            families.append(fam)
        throttle = catalog.family(_THROTTLE).new()
        for r in readings:
            if r.throttle_reasons is not None:
                for reason, bit in catalog.THROTTLE_REASONS.items():
                    throttle.add_metric([str(r.index), r.uuid, r.name, reason],
                                        1 if r.throttle_reasons & bit else 0)
        return [*families, throttle, up]


class GpuSampler:
    """For the pipeline's per-job resource summary: sample() during a job, keep the maxima."""

    def __init__(self, session: Nvml | None = None):
        self._session = Nvml() if session is None else session

    @property
    def nvml(self) -> Nvml:
        """The NVML session, shared with the GPU collector: one library handle per process."""
        return self._session

    def sample(self) -> tuple[float, int] | None:
        """(highest utilisation ratio of any GPU, this process's GPU memory in bytes on all
        GPUs), or None without NVML."""
        readings = self._session.read()
        if not readings:
            return None
        return (max((r.utilization_ratio or 0.0) for r in readings),
                sum((r.process_memory_bytes or 0) for r in readings))

    def inventory(self) -> list[GpuMemory] | None:
        """The GPUs and their free memory now (`pipeline.contract.GpuInventory`): what the
        daemon plans its GPU workers with. None without NVML."""
        readings = self._session.read()
        if not readings:
            return None
        return [GpuMemory(r.index, r.uuid, r.name, r.memory_total_bytes or 0,
                          r.memory_free_bytes or 0, r.compute_capability)
                for r in readings if r.memory_total_bytes]
