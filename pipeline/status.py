"""The job store's part of the daemon's status (`Daemon.snapshot`): figures read from the store,
kept for a second — concurrent scrapes and every open status page ask at once, and the store
need not be asked each time.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from .contract import DayFigures, FailedJob, QueuedJob
from .store import FINAL, JobStore

CACHE_SECONDS = 1.0
DETAIL_ROWS = 10          # queued files and failures the status page lists


@dataclasses.dataclass(frozen=True)
class StoreFigures:
    queue: int
    counts: dict                                  # final outcome -> jobs ever
    last_success: float | None
    # snapshot(details=True) only: the status page's lists (they sort the queue: not per scrape)
    queue_next: tuple[QueuedJob, ...] = ()
    recent_failures: tuple[FailedJob, ...] = ()
    today: DayFigures | None = None


class StoreStatus:
    def __init__(self, store: JobStore, cache_seconds: float = CACHE_SECONDS,
                 clock=time.monotonic):
        self._store, self._cache_seconds, self._clock = store, cache_seconds, clock
        self._lock = threading.Lock()
        self._cache: dict[bool, tuple[float, StoreFigures]] = {}

    def figures(self, details: bool = False) -> StoreFigures:
        with self._lock:   # concurrent askers: one of them reads the store, the rest reuse it
            now = self._clock()
            cached = self._cache.get(details)
            if cached and now - cached[0] < self._cache_seconds:
                return cached[1]
            figures = self._read(details)
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
                            store.last_success_at())
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
