"""The daemon's status (`StatusReport`, its `snapshot()`) and the job store's part of it
(`StoreStatus`): figures read from the store, kept for a second — concurrent scrapes and every
open status page ask at once, and the store need not be asked each time.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

from ... import __version__
from ..api.queue import ApiJobs
from ..contract import WAITING_FOR_VRAM, DayFigures, FailedJob, QueuedJob, StatusSnapshot
from ..libraries import Libraries
from ..store import FINAL, JobStore, StoreUnavailable
from ..watcher import Watcher
from .claimed_job import ClaimedJobs
from .devices import DevicePool
from .leases import StoreHealth

CACHE_SECONDS = 1.0
DETAIL_ROWS = 10          # queued files and failures the status page lists


@dataclasses.dataclass(frozen=True)
class StoreFigures:
    queue: int
    counts: dict                                  # final outcome -> jobs ever
    last_success: float | None
    vram: int = 0                                 # queued jobs sent back to wait for GPU memory
    oldest_queued: float | None = None            # detection time of the oldest queued job
    # snapshot(details=True) only: the status page's lists (they sort the queue: not per scrape)
    queue_next: tuple[QueuedJob, ...] = ()
    recent_failures: tuple[FailedJob, ...] = ()
    today: DayFigures | None = None


class StoreStatus:
    def __init__(self, store: JobStore, cache_seconds: float = CACHE_SECONDS,
                 clock=time.monotonic, on_unavailable=lambda error: None):
        self._store, self._cache_seconds, self._clock = store, cache_seconds, clock
        # A shared store that is away: the daemon is told (readyz, no claims) and the last
        # figures known are shown meanwhile (the store's own series say it is down).
        self._on_unavailable = on_unavailable
        self._lock = threading.Lock()
        self._cache: dict[bool, tuple[float, StoreFigures]] = {}

    def figures(self, details: bool = False) -> StoreFigures:
        with self._lock:   # concurrent askers: one of them reads the store, the rest reuse it
            now = self._clock()
            cached = self._cache.get(details)
            if cached and now - cached[0] < self._cache_seconds:
                return cached[1]
            try:
                figures = self._read(details)
            except StoreUnavailable as e:
                self._on_unavailable(e)
                return cached[1] if cached else StoreFigures(0, {k: 0 for k in FINAL}, None)
            self._cache[details] = (now, figures)
            return figures

    def invalidate(self) -> None:
        """The daemon changed the store on request (a retry): the next answer shows it."""
        with self._lock:
            self._cache.clear()

    def _read(self, details: bool) -> StoreFigures:
        store = self._store
        counts = store.counts()
        base = StoreFigures(counts["queued"], {k: counts[k] for k in FINAL},
                            store.last_success_at(), store.queued_with_reason(WAITING_FOR_VRAM),
                            store.oldest_queued_at())
        if not details:
            return base
        return dataclasses.replace(
            base, queue_next=tuple(store.next_queued(DETAIL_ROWS)),
            recent_failures=tuple(store.recent_failures(DETAIL_ROWS)),
            today=store.finished_since(local_midnight()))


def local_midnight(now: float | None = None) -> float:
    """Unix time of the last midnight in the host's time zone ("today" on the status page)."""
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


class StatusReport:
    """The daemon's `StatusSource.snapshot()`: its state now, from the parts that hold it (each
    answers for itself), the store's figures cached (`StoreStatus`)."""

    def __init__(self, *, figures: StoreStatus, health: StoreHealth, jobs: ClaimedJobs,
                 devices: DevicePool, watcher: Watcher, libraries: Libraries, api: ApiJobs,
                 node: str, store_folder: str | None, output_dir: Path | None,
                 started_at: float):
        self.figures, self.health, self.jobs = figures, health, jobs
        self.devices, self.watcher, self.libraries, self.api = devices, watcher, libraries, api
        self.node, self.store_folder, self.output_dir = node, store_folder, output_dir
        self.started_at = started_at

    def snapshot(self, details: bool = False) -> StatusSnapshot:
        figures = self.figures.figures(details)
        output_dirs = [str(self.output_dir)] if self.output_dir else self.libraries.roots
        model, loaded, ready, error = self.devices.model_state()
        return StatusSnapshot(
            version=__version__, started_at=self.started_at, model_name=model.name,
            device=model.device, compute_type=model.compute_type,
            model_loaded=loaded, model_ready=ready,
            model_error=error, watcher_up=self.watcher.alive(),
            watch_dirs_unavailable=self.watcher.unavailable_count,
            store_writable=self.health.writable, queue_jobs=figures.queue,
            running=self.jobs.views(),
            workers=len(self.devices.workers), counts=figures.counts,
            last_success_at=figures.last_success,
            dirs={"watch": self.libraries.roots, "output": output_dirs,
                  "store": [self.store_folder] if self.store_folder else []},
            startup_scan_seconds=self.watcher.scan_seconds,
            startup_scan_files=self.watcher.scan_files, queue_next=figures.queue_next,
            recent_failures=figures.recent_failures, today=figures.today,
            api_waiting=self.api.waiting, api_running=self.api.running,
            plan=self.devices.view(),
            # Nothing can run for lack of GPU memory: every queued job waits for it.
            waiting_for_vram=(figures.queue if self.devices.all_waiting() else figures.vram),
            node=self.node, store_kind=self.health.kind, store_up=self.health.up,
            store_error=self.health.error,
            leases_held=self.jobs.leases_held(),
            oldest_queued_at=figures.oldest_queued,
        )
