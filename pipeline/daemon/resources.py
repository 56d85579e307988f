"""A per-job resource summary: CPU average/max, RSS max and, where a GPU is used, its peak use."""

from __future__ import annotations

import threading
from typing import Callable

import psutil

SAMPLE_SECONDS = 0.5

# Returns (utilisation ratio, this process's GPU memory bytes), or None without a GPU.
GpuProbe = Callable[[], "tuple[float, int] | None"]


class ResourceSampler:
    def __init__(self, gpu_probe: GpuProbe | None = None):
        self._proc = psutil.Process()
        self._gpu_probe = gpu_probe
        self._stop = threading.Event()
        self._cpu: list[float] = []
        self._rss_max = 0
        self._gpu_util_max: float | None = None
        self._gpu_mem_max: int | None = None
        self._thread = threading.Thread(target=self._loop, name="job-resources", daemon=True)

    def __enter__(self) -> "ResourceSampler":
        self._proc.cpu_percent(None)   # the first call only sets the reference point
        self._sample(cpu=False)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self, cpu: bool = True) -> None:
        try:
            if cpu:
                # Per-process percent is per core: 200 % on two busy cores.
                # Report a ratio of the machine.
                self._cpu.append(self._proc.cpu_percent(None) / 100.0 / (psutil.cpu_count() or 1))
            self._rss_max = max(self._rss_max, self._proc.memory_info().rss)
        except psutil.Error:
            return
        if self._gpu_probe is not None:
            reading = self._gpu_probe()
            if reading is not None:
                util, mem = reading
                self._gpu_util_max = max(self._gpu_util_max or 0.0, util)
                self._gpu_mem_max = max(self._gpu_mem_max or 0, mem)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def summary(self) -> dict:
        return {
            "cpu_avg_ratio": sum(self._cpu) / len(self._cpu) if self._cpu else None,
            "cpu_max_ratio": max(self._cpu) if self._cpu else None,
            "rss_max_bytes": self._rss_max or None,
            "gpu_util_max_ratio": self._gpu_util_max,
            "gpu_memory_max_bytes": self._gpu_mem_max,
        }
