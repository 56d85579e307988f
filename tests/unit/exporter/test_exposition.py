"""The cached OpenMetrics encoder writes the same bytes as prometheus-client's own, for the real
exporter registry and for awkward names, label values and help texts; the exporter's
Exposition reuses the pipeline families' text only until the reporter records an event."""

from __future__ import annotations

import inspect
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as om
from prometheus_client.samples import Exemplar

from scribewatch.exporter import Exporter
from scribewatch.exporter.exposition import CachedOpenMetricsEncoder
from tests.harness.status import Source, snapshot

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


class Frozen:
    """The families one collect() gave, served again: both encoders see the same values."""

    def __init__(self, families):
        self.families = list(families)

    def collect(self):
        return self.families


def frozen(registry: CollectorRegistry) -> CollectorRegistry:
    out = CollectorRegistry()
    out.register(Frozen(registry.collect()))
    return out


def test_same_bytes_as_prometheus_client_for_the_exporter_registry():
    exp = Exporter(Source())
    exp.reporter.stage_observed("transcribe", 3.5)
    exp.reporter.job_finished("failed", reason="not_media", stage="probe")
    exp.reporter.model_loaded("tiny.en", "cpu", "int8", 0.4)
    encoder = CachedOpenMetricsEncoder()
    registry = frozen(exp.registry)
    expected = om.generate_latest(registry)
    assert b"scribewatch_stage_duration_seconds_bucket" in expected
    assert encoder(registry) == expected
    assert encoder(registry) == expected, "the second render comes from the cache"
    # New values in known series: only the numbers change.
    exp.reporter.stage_observed("transcribe", 7.25)
    registry = frozen(exp.registry)
    assert encoder(registry) == om.generate_latest(registry)


def test_same_bytes_for_awkward_names_labels_and_help():
    registry = CollectorRegistry()
    Counter("odd_total", 'help with "quotes", a \\ and a\nnewline', ["path", "why"],
            registry=registry).labels('a"b\\c', "line\nbreak ünïcode").inc(2)
    Gauge("with_unit_bytes", "a unit", unit="bytes", registry=registry).set(1e21)
    Gauge("tiny", "small and special values", ["v"], registry=registry).labels("nan").set(
        float("nan"))
    Histogram("lat_seconds", "buckets", buckets=(0.1, 1, float("inf")),
              registry=registry).observe(0.5)
    Info("build", "an info metric", registry=registry).info({"version": "1.2", "x": ""})

    class Custom:
        def collect(self):
            g = GaugeMetricFamily("recording:rule_like", "a colon in the name", labels=["k"])
            g.add_metric(["v"], -0.0)
            yield g

    registry.register(Custom())
    encoder = CachedOpenMetricsEncoder()
    assert encoder(registry) == om.generate_latest(registry)
    assert encoder(registry) == om.generate_latest(registry)


def test_what_it_does_not_handle_falls_back_to_prometheus_client():
    class WithExtras:
        def collect(self):
            c = CounterMetricFamily("ex", "an exemplar and a timestamp", labels=["a"])
            c.add_metric(["1"], 3, timestamp=1700000000.5)
            c.samples[-1] = c.samples[-1]._replace(
                exemplar=Exemplar({"trace_id": "abc"}, 1.0, 1700000000.0))
            yield c

    registry = CollectorRegistry()
    registry.register(WithExtras())
    body = CachedOpenMetricsEncoder()(registry)
    assert body == om.generate_latest(registry)
    assert b"# {trace_id=\"abc\"}" in body


def test_it_replaces_only_the_encoder_prometheus_gets_by_default():
    encoder, _ = choose_encoder(PROMETHEUS_ACCEPT)
    assert CachedOpenMetricsEncoder.can_replace(encoder)
    assert CachedOpenMetricsEncoder.can_replace(choose_encoder("application/openmetrics-text")[0])
    for accept in ("text/plain", None,
                   "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
                   "application/openmetrics-text;version=2.0.0"):
        assert not CachedOpenMetricsEncoder.can_replace(choose_encoder(accept)[0]), accept
    assert not CachedOpenMetricsEncoder.can_replace(partial(om.generate_latest, version="1.0.0",
                                                            escaping=om.DOTS))


# -- Exposition: the pipeline families' text is kept between the reporter's events ---------------
def idle_exporter() -> Exporter:
    # No running job: the state then has no age that grows between two renders.
    return Exporter(Source(snapshot(running=())))


def test_exposition_writes_what_prometheus_client_writes():
    exp = idle_exporter()
    exp.reporter.stage_observed("decode", 0.25)
    exp.reporter.job_finished("skipped", reason="no_speech")
    body = exp.registry.openmetrics()
    # Nothing changes between the two (the sampled collectors serve their last reading).
    assert body == om.generate_latest(exp.registry)
    assert b"scribewatch_stage_duration_seconds_bucket" in body
    assert b"scribewatch_host_memory_total_bytes" in body and b"process_cpu_seconds_total" in body
    assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1


def stage_count(body: bytes, stage: str) -> float:
    prefix = f'scribewatch_stage_duration_seconds_count{{stage="{stage}"}} '.encode()
    [line] = [x for x in body.splitlines() if x.startswith(prefix)]
    return float(line[len(prefix):])


def test_exposition_reuses_the_event_text_until_the_reporter_records():
    exp = idle_exporter()
    assert stage_count(exp.registry.openmetrics(), "probe") == 0
    # A change the reporter did not record is not seen: the text really is reused...
    exp.reporter._stage["probe"].observe(1.0)
    assert stage_count(exp.registry.openmetrics(), "probe") == 0
    # ...and the next recorded event renders it again, with both observations.
    exp.reporter.stage_observed("probe", 2.0)
    assert stage_count(exp.registry.openmetrics(), "probe") == 2
    assert exp.registry.openmetrics() == om.generate_latest(exp.registry)


# A value for each parameter name of the Reporter protocol's events: a call of every event is
# made from its signature, so a new event needs nothing here unless it brings a new parameter.
ARGUMENTS = {
    "stage": "probe", "seconds": 0.1, "queue_wait_seconds": 1.0, "outcome": "succeeded",
    "reason": "transcribe_error", "name": "tiny.en", "device": "cpu", "compute_type": "int8",
    "targets": ("jellyfin",), "target": "jellyfin", "result": "sent", "length": 3,
    "language": "de", "source": "tag", "probability": 0.9, "kind": "translation",
    "pairs": (("fr", "forced"),), "gpu": 0,
}
# Events that record nothing on purpose: scribewatch_model_loaded is read from the daemon's state.
RECORD_NOTHING = {"model_unloaded"}
# The web server's events (not the pipeline's): the status page's retries and API requests.
WEB_EVENTS = {"api_request": ("asr", 200, 1.5), "retry_requested": ("queued",)}


def reporter_calls() -> dict[str, tuple]:
    """Every event of the pipeline's Reporter protocol, read from the protocol itself, with
    arguments for its required parameters."""
    from scribewatch.pipeline.contract import Reporter

    calls = {}
    for name, method in vars(Reporter).items():
        if callable(method) and not name.startswith("_"):
            params = list(inspect.signature(method).parameters.values())[1:]
            missing = [p.name for p in params if p.name not in ARGUMENTS
                       and p.default is inspect.Parameter.empty]
            assert not missing, f"{name}: give ARGUMENTS a value for {missing}"
            calls[name] = tuple(ARGUMENTS[p.name] for p in params
                                if p.default is inspect.Parameter.empty)
    return calls


def test_every_reporter_event_is_instrumented_and_moves_the_version_on():
    """Each event of the Reporter protocol must change the metrics text and move the version
    on (else a scrape would serve the old text): a new event without instrumentation fails."""
    calls = reporter_calls()
    assert len(calls) > 15 and RECORD_NOTHING <= set(calls)
    exp = idle_exporter()
    r = exp.reporter
    for event, args in {**calls, **WEB_EVENTS}.items():
        if event in RECORD_NOTHING:
            continue
        before, version = exp.registry.openmetrics(), r.version
        getattr(r, event)(*args)
        assert r.version > version, f"{event}{args}: the version did not move on"
        assert exp.registry.openmetrics() != before, f"{event}{args}: /metrics unchanged"


def test_each_outcome_of_a_finished_job_is_recorded():
    exp = idle_exporter()
    for outcome, reason in (("succeeded", None), ("failed", "not_media"),
                            ("skipped", "no_speech")):
        before = exp.registry.openmetrics()
        exp.reporter.job_finished(outcome, reason=reason, job_seconds=3, audio_seconds=11,
                                  processing_seconds=2)
        assert exp.registry.openmetrics() != before, outcome


def test_a_reporter_and_gpu_sampler_made_first_are_the_ones_served():
    """`scribewatch run` builds the reporter and GPU sampler before the daemon (which takes them
    at construction) and hands the same objects to the exporter: what the daemon reports is
    what /metrics serves, with no re-wiring after construction."""
    from scribewatch.exporter import GpuSampler, PrometheusReporter

    reporter, gpu = PrometheusReporter(), GpuSampler()
    exp = Exporter(Source(), reporter=reporter, gpu_sampler=gpu)
    assert exp.reporter is reporter and exp.gpu_sampler is gpu
    reporter.job_finished("failed", reason="disk_full", stage="write")
    text = om.generate_latest(exp.registry).decode()
    assert ('scribewatch_job_failures_total{reason="disk_full",source="folder",stage="write"} 1.0'
            in text)
