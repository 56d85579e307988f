"""The metric catalog follows Prometheus conventions, and the generated docs/metrics.md (the one
list of the metric names; docs/architecture.md points to it) is up to date. (That the registry
matches the catalog is in test_instrumentation.py, where a full registry is built.)"""

from __future__ import annotations

import re

import promql_parser
import pytest

from scribewatch.exporter import catalog, docs
from scribewatch.pipeline.contract import (
    FAILURE_LABELS,
    LANGUAGE_SOURCES,
    OUTCOMES,
    SKIP_REASONS,
    SOURCES,
    STAGES,
)

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Base units (Prometheus naming): seconds, bytes, ratio (0..1), celsius, watts, hertz; `_info`
# for label-only gauges with value 1; `_total` for counters.
UNIT_SUFFIXES = ("_seconds", "_bytes", "_ratio", "_celsius", "_watts", "_hertz", "_info")
# Counts and 0/1 states have no unit; the real-time factor's name is fixed by the architecture
# (a dimensionless quotient, not a 0..1 ratio).
UNITLESS = {
    "scribewatch_queue_jobs", "scribewatch_jobs_running", "scribewatch_watch_dirs_unavailable",
    "scribewatch_model_loaded", "scribewatch_watcher_up", "scribewatch_ready",
    "scribewatch_nvml_up", "scribewatch_gpu_throttle_reason_active", "scribewatch_leases_held",
    "scribewatch_store_up",
    "scribewatch_realtime_factor", "process_open_fds", "process_max_fds",
    "scribewatch_notification_queue_items",
    "scribewatch_gpu_workers_active", "scribewatch_jobs_waiting_for_vram",   # counts
}
NON_BASE_UNITS = re.compile(
    r"_(milli|micro|nano)?(ms|us|ns|millis|milliseconds|minutes|hours|days|percent|pct|"
    r"kb|mb|gb|kib|mib|gib|kilobytes|megabytes|fahrenheit|mhz|khz|ghz|milliwatts|mw)(_|$)")
FORBIDDEN_LABELS = {"path", "file", "filename", "file_name", "dir", "directory", "folder",
                    "source", "url", "job_id", "id", "error", "message", "text",
                    "job", "instance", "le", "quantile"}
# Names from that list held to a fixed set of words. `source` is named by two issues: a job's
# origin (folder|api) on the outcome metrics, and where a language decision came from on
# `scribewatch_language_decisions_total{language, source}` — never a file.
ENUMERATED = {"source": (*SOURCES, *LANGUAGE_SOURCES)}


@pytest.mark.parametrize("f", catalog.FAMILIES, ids=lambda f: f.name)
def test_family_follows_prometheus_conventions(f: catalog.Family):
    assert NAME.match(f.name), f.name
    if f.source == catalog.PROCESS:
        assert f.name.startswith("process_")
    else:
        assert f.name.startswith("scribewatch_")
    assert f.type in ("counter", "gauge", "histogram")
    if f.type == "counter":
        assert f.name.endswith("_total"), "counters end in _total"
    else:
        assert not f.name.endswith("_total"), "only counters end in _total"
        assert f.name.endswith(UNIT_SUFFIXES) or f.name in UNITLESS, \
            f"{f.name}: give it a base-unit suffix ({', '.join(UNIT_SUFFIXES)})"
    assert not NON_BASE_UNITS.search(f.name), f"{f.name}: use base units"
    if f.name.endswith("_info"):
        assert f.type == "gauge" and f.labels, "info-style families are labelled gauges"
    if f.type == "histogram":
        assert not f.name.endswith(("_bucket", "_count", "_sum"))
        assert list(f.buckets) == sorted(set(f.buckets)) and f.buckets[0] > 0
    else:
        assert not f.buckets
    assert f.help and "\n" not in f.help and f.help.strip() == f.help
    assert len(set(f.labels)) == len(f.labels)
    for label in f.labels:
        assert NAME.match(label) and not label.startswith("__")
        if label in ENUMERATED:
            assert catalog.LABEL_PATTERNS[label] == catalog._one_of(ENUMERATED[label])
        else:
            assert label not in FORBIDDEN_LABELS, \
                f"{f.name}: label {label!r} invites unbounded values"
        assert label in catalog.LABEL_PATTERNS, f"{label}: declare its value domain"
    for values in f.known:
        assert len(values) == len(f.labels)
        for label, value in zip(f.labels, values):
            assert re.fullmatch(catalog.LABEL_PATTERNS[label], value), (label, value)


def test_names_are_unique_and_do_not_collide_with_generated_series():
    names = [f.name for f in catalog.FAMILIES]
    assert len(names) == len(set(names))
    generated = set()
    for f in catalog.FAMILIES:
        if f.type == "histogram":
            generated |= {f.name + s for s in ("_bucket", "_count", "_sum")}
        if f.type == "counter":
            generated.add(f.name[: -len("_total")])       # the OpenMetrics family name
    assert not generated & set(names)


def test_known_label_values_come_from_pipeline_errors():
    known = {f.name: set(f.known) for f in catalog.FAMILIES}
    assert known["scribewatch_stage_duration_seconds"] == {(s,) for s in STAGES}
    assert known["scribewatch_jobs_total"] == {(o, s) for o in OUTCOMES for s in SOURCES}
    # the folder's failures from the start; an API failure's series comes with the first one
    assert known["scribewatch_job_failures_total"] == {(*k, "folder") for k in FAILURE_LABELS}
    assert not known["scribewatch_api_request_duration_seconds"]
    assert not known["scribewatch_notifications_total"]
    assert known["scribewatch_api_requests_total"] == {(e, "200") for e in catalog.API_ENDPOINTS}
    assert known["scribewatch_files_skipped_total"] == {(r,) for r in SKIP_REASONS}
    assert known["scribewatch_job_retries_total"] <= set(FAILURE_LABELS)
    assert known["scribewatch_job_retries_total"], "transient reasons are pre-initialised"


def test_buckets_cover_the_workload():
    stage = catalog.family("scribewatch_stage_duration_seconds").buckets
    assert stage[0] <= 0.005 and stage[-1] >= 3600
    for name in ("scribewatch_job_duration_seconds", "scribewatch_queue_wait_seconds"):
        assert catalog.family(name).buckets[-1] >= 4 * 3600
    rtf = catalog.family("scribewatch_realtime_factor").buckets
    assert rtf[0] <= 0.01 and rtf[-1] >= 10 and 1 in rtf


@pytest.mark.parametrize("f", catalog.FAMILIES, ids=lambda f: f.name)
def test_example_promql_parses_and_uses_the_family(f: catalog.Family):
    promql_parser.parse(f.example)
    used = set(re.findall(r"[a-z_]+[a-z0-9_]*", f.example))
    base = f.name
    assert {base, base + "_bucket", base + "_count", base + "_sum"} & used, f.example


def test_docs_are_generated_from_the_catalog():
    # That docs/metrics.md is this text: tests/unit/test_generated.py.
    text = docs.render()
    for f in catalog.FAMILIES:
        assert f"### `{f.name}`" in text and f.example in text
    assert "[http.md](http.md)" in text   # scraping, TLS and auth: the web server's doc
