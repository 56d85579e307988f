"""Collectors that cost system calls (host, process, NVML) are read once a second on a thread of
their own; a scrape serves the latest reading.

Why: reading /proc, statvfs and NVML inside a scrape gives the GIL away at every call and waits
to get it back behind whatever thread holds it. With a transcription on both cores and twenty
scrapers at once, that waiting was what put a scrape's p99 over 10 ms. Figures at most a second
old are finer than any Prometheus scrape interval. (NVML's library is also retried from here,
never from a scrape.)
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 1.0


class SampledCollector:
    """Serves the families `inner.collect()` gave at the last `refresh()`. A collector that
    raises is logged (once, and once when it works again) and left out of the scrape until then:
    the other families are still served."""

    def __init__(self, inner, name: str):
        self._inner = inner
        self._name = name
        self._families: list | None = None      # None: never read yet
        self._failing = False

    def describe(self):
        # The family names for the registry, without reading anything at registration time.
        describe = getattr(self._inner, "describe", None)
        return describe() if describe is not None else []

    def refresh(self) -> None:
        try:
            families = list(self._inner.collect())
        except Exception:
            if not self._failing:
                log.exception("reading the %s figures failed; they are left out of /metrics "
                              "until they can be read", self._name)
            self._failing = True
            families = []
        else:
            if self._failing:
                log.info("the %s figures can be read again", self._name)
            self._failing = False
        self._families = families

    def collect(self):
        if self._families is None:      # a scrape before the sampler's first round
            self.refresh()
        return self._families


class Sampler:
    """Refreshes `collectors` every `interval` seconds on one thread, from start() to stop()."""

    def __init__(self, collectors: list[SampledCollector], interval: float = SAMPLE_SECONDS):
        self._collectors = collectors
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._refresh()                 # the first scrape already has figures
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._refresh()

    def _refresh(self) -> None:
        for c in self._collectors:
            c.refresh()
