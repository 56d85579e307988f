"""Host, process and GPU figures are read by the sampler, once a second, never by a scrape; a
source that fails is logged once and left out while the rest is still served."""

from __future__ import annotations

import logging
import threading
import time

import psutil
from prometheus_client.core import GaugeMetricFamily

from scribewatch.exporter import Exporter
from scribewatch.exporter.sampling import SampledCollector, Sampler
from tests.harness import wait_for
from tests.harness.status import Source


class Reading:
    """A collector whose value is whatever `value` is when it is read; `fail` makes it raise."""

    def __init__(self):
        self.value, self.fail, self.reads = 1.0, False, 0

    def collect(self):
        self.reads += 1
        if self.fail:
            raise OSError("the source went away")
        g = GaugeMetricFamily("reading", "a value")
        g.add_metric([], self.value)
        return [g]


def value(collector) -> float | None:
    families = list(collector.collect())
    return families[0].samples[0].value if families else None


def test_a_scrape_serves_the_last_reading():
    inner = Reading()
    sampled = SampledCollector(inner, "test")
    assert value(sampled) == 1.0, "the first scrape before any round reads at once"
    inner.value = 2.0
    assert value(sampled) == 1.0 and inner.reads == 1
    sampled.refresh()
    assert value(sampled) == 2.0 and inner.reads == 2


def test_a_failing_source_is_logged_once_and_left_out(caplog):
    inner = Reading()
    sampled = SampledCollector(inner, "test")
    sampled.refresh()
    inner.fail = True
    with caplog.at_level(logging.INFO, logger="scribewatch.exporter.sampling"):
        for _ in range(3):
            sampled.refresh()
            assert list(sampled.collect()) == []
        inner.fail, inner.value = False, 5.0
        sampled.refresh()
    assert value(sampled) == 5.0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("reading the test figures failed" in m for m in messages) == 1, messages
    assert sum("test figures can be read again" in m for m in messages) == 1, messages


def test_the_sampler_reads_at_start_and_then_every_interval():
    inner = Reading()
    sampled = SampledCollector(inner, "test")
    sampler = Sampler([sampled], interval=0.05)
    sampler.start()
    try:
        assert inner.reads == 1
        inner.value = 3.0
        wait_for(lambda: value(sampled) == 3.0, 5, 0.01, "the next round")
    finally:
        sampler.stop()
    reads = inner.reads
    inner.value = 4.0
    time.sleep(0.2)
    assert inner.reads == reads and value(sampled) == 3.0, "no round after stop()"


def test_a_scrape_never_reads_the_host(monkeypatch):
    # Only reads on this (the scraping) thread count: the patch is process-wide, and a sampler
    # thread another test's exporter left running would otherwise be counted too.
    calls = []
    real = psutil.virtual_memory
    me = threading.current_thread()
    monkeypatch.setattr(psutil, "virtual_memory",
                        lambda: (threading.current_thread() is me and calls.append(1)) or real())
    exp = Exporter(Source())
    for _ in range(5):
        assert b"scribewatch_host_memory_used_bytes" in exp.registry.openmetrics()
    assert len(calls) == 1, "read once, by the first scrape before the sampler ran"
    exp._sampler.start()
    try:
        before = len(calls)
        for _ in range(5):
            exp.registry.openmetrics()
        assert len(calls) == before       # the sampler reads (on its thread); scrapes never do
    finally:
        exp._sampler.stop()
