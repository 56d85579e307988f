"""Host CPU and memory, and the filesystems of the watch / output / store folders (psutil)."""

from __future__ import annotations

import psutil

from ..pipeline.contract import StatusSource
from . import catalog

_NAMES = (
    "scribewatch_host_cpu_usage_ratio", "scribewatch_host_memory_used_bytes",
    "scribewatch_host_memory_available_bytes", "scribewatch_host_memory_total_bytes",
    "scribewatch_filesystem_free_bytes", "scribewatch_filesystem_size_bytes",
)


class HostCollector:
    def __init__(self, status_source: StatusSource):
        self._source = status_source
        self._dirs: dict | None = None
        # cpu_percent(None) measures since its previous call and never blocks; this first call
        # starts the interval so the first scrape gets a real number.
        psutil.cpu_percent(None)

    def describe(self):
        return [catalog.family(n).new() for n in _NAMES]

    def collect(self):
        f = {n: catalog.family(n).new() for n in _NAMES}
        f["scribewatch_host_cpu_usage_ratio"].add_metric([], psutil.cpu_percent(None) / 100.0)
        vm = psutil.virtual_memory()
        f["scribewatch_host_memory_used_bytes"].add_metric([], vm.used)
        f["scribewatch_host_memory_available_bytes"].add_metric([], vm.available)
        f["scribewatch_host_memory_total_bytes"].add_metric([], vm.total)
        if self._dirs is None:
            # The configured folders, fixed for the daemon's life: asked once, so a reading
            # never makes the daemon ask its job store for the rest of a snapshot.
            self._dirs = self._source.snapshot().dirs
        dirs = self._dirs
        for role in catalog.ROLES:
            usage = _tightest(dirs.get(role, ()))
            if usage is not None:
                f["scribewatch_filesystem_free_bytes"].add_metric([role], usage.free)
                f["scribewatch_filesystem_size_bytes"].add_metric([role], usage.total)
        return list(f.values())


def _tightest(folders):
    """disk_usage of the folder with the least free space; missing folders are skipped (a
    dropped mount is reported by the watcher, not by failing the scrape)."""
    usages = []
    for folder in folders:
        try:
            usages.append(psutil.disk_usage(str(folder)))
        except OSError:
            continue
    return min(usages, key=lambda u: u.free, default=None)
