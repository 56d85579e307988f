"""PrometheusReporter and StateCollector, scraped from a registry of their own: types, labels and
values; pre-initialised series; bounded series count; the whole registry matches the catalog and
passes `promtool check metrics`."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys
import time
import timeit

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scribewatch.exporter import Exporter, catalog
from scribewatch.exporter.instrumentation import PrometheusReporter, StateCollector
from scribewatch.pipeline.contract import (
    FAILURE_LABELS,
    OUTCOMES,
    SKIP_REASONS,
    STAGES,
    DevicePlanView,
    GpuSlotView,
    RunningJob,
    StatusSnapshot,
)
from tests.harness import FAKE_NVML_DIR, REPO, require_binary, status
from tests.harness.status import Source

NOW = time.time()


def snapshot(tmp_path=None, **changes) -> StatusSnapshot:
    """An idle daemon with two workers (the harness's default is a busy one)."""
    dirs = {role: [str(tmp_path)] for role in catalog.ROLES} if tmp_path else {}
    return status.snapshot(**{"started_at": NOW - 3600, "queue_jobs": 0, "running": (),
                              "workers": 2, "counts": {}, "last_success_at": None,
                              "dirs": dirs, **changes})


def scrape(registry) -> dict:
    """{family name: Metric} of the text exposition (counters under their `_total` name)."""
    text = generate_latest(registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name + "_total" if fam.type == "counter" else fam.name] = fam
    return out


def value(families: dict, sample: str, **labels) -> float:
    if sample in ("scribewatch_jobs_total", "scribewatch_job_failures_total"):
        labels.setdefault("source", "folder")     # the folder path unless a test says "api"
    family = families[sample if sample in families else sample.rsplit("_", 1)[0]]
    found = [s.value for s in family.samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, (sample, labels, found)
    return found[0]


@pytest.fixture
def reporter():
    registry = CollectorRegistry()
    return PrometheusReporter(registry), registry


@pytest.fixture
def fake_nvml(monkeypatch):
    """The fake pynvml (two GPUs) in place of the real one, at the import boundary."""
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_NVML_DIR / "pynvml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    for var in ("FAKE_NVML_CONFIG", "FAKE_NVML_FAIL", "FAKE_NVML_UNSUPPORTED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FAKE_NVML_GPUS", "2")
    return module


# -- reporter -----------------------------------------------------------------------------
def test_every_known_label_value_is_exported_at_zero_before_any_event(reporter):
    _, registry = reporter
    fams = scrape(registry)
    for outcome in OUTCOMES:
        assert value(fams, "scribewatch_jobs_total", outcome=outcome) == 0
    for stage, reason in FAILURE_LABELS:
        assert value(fams, "scribewatch_job_failures_total", stage=stage, reason=reason) == 0
    for stage, reason in catalog.family("scribewatch_job_retries_total").known:
        assert value(fams, "scribewatch_job_retries_total", stage=stage, reason=reason) == 0
    for reason in SKIP_REASONS:
        assert value(fams, "scribewatch_files_skipped_total", reason=reason) == 0
    for stage in STAGES:
        assert value(fams, "scribewatch_stage_duration_seconds_count", stage=stage) == 0
        assert value(fams, "scribewatch_stage_duration_seconds_bucket",
                     stage=stage, le="+Inf") == 0
    for name in ("scribewatch_audio_seconds_total", "scribewatch_model_load_failures_total",
                 "scribewatch_suspect_transcripts_total", "scribewatch_model_load_seconds",
                 "scribewatch_job_takeovers_total", "scribewatch_lease_renewals_failed_total"):
        assert value(fams, name) == 0
    for name in ("scribewatch_job_duration_seconds", "scribewatch_queue_wait_seconds",
                 "scribewatch_realtime_factor"):
        assert value(fams, name + "_count") == 0
    assert not fams["scribewatch_model_info"].samples, "no model is known before a load"
    assert not any(name.endswith("_created") for name in fams), "no _created series"


def test_reporter_counts_what_happened(reporter):
    r, registry = reporter
    r.job_started(queue_wait_seconds=4.0)
    for stage, seconds in zip(STAGES, (0.004, 0.8, 20.0, 0.02)):
        r.stage_observed(stage, seconds)
    r.job_finished("succeeded", job_seconds=26.0, audio_seconds=100.0, processing_seconds=21.0)
    r.job_started(queue_wait_seconds=1.0)
    r.stage_observed("probe", 0.003)
    r.job_finished("failed", reason="not_media", stage="probe", job_seconds=1.2)
    r.job_finished("failed", reason="decode_error")            # stage taken from the reason
    r.job_finished("skipped", reason="subtitle_exists", job_seconds=0.01)
    r.job_retried("write", "disk_full")
    r.job_retried("write", "disk_full")
    r.model_load_failed()
    r.suspect_transcript()
    r.job_taken_over()
    r.lease_renewal_failed()
    r.lease_renewal_failed()
    r.model_loaded("tiny.en", "cpu", "int8", 1.75)

    fams = scrape(registry)
    assert fams["scribewatch_stage_duration_seconds"].type == "histogram"
    assert fams["scribewatch_jobs_total"].type == "counter"
    assert fams["scribewatch_model_info"].type == "gauge"
    assert value(fams, "scribewatch_jobs_total", outcome="succeeded") == 1
    assert value(fams, "scribewatch_jobs_total", outcome="failed") == 2
    assert value(fams, "scribewatch_jobs_total", outcome="skipped") == 1
    assert value(fams, "scribewatch_job_failures_total", stage="probe", reason="not_media") == 1
    assert value(fams, "scribewatch_job_failures_total",
                 stage="decode", reason="decode_error") == 1
    assert value(fams, "scribewatch_files_skipped_total", reason="subtitle_exists") == 1
    assert value(fams, "scribewatch_job_retries_total", stage="write", reason="disk_full") == 2
    assert value(fams, "scribewatch_stage_duration_seconds_count", stage="probe") == 2
    assert value(fams, "scribewatch_stage_duration_seconds_sum", stage="probe") == \
        pytest.approx(0.007)
    assert value(fams, "scribewatch_stage_duration_seconds_bucket", stage="probe", le="0.005") == 2
    assert value(fams, "scribewatch_stage_duration_seconds_bucket",
                 stage="transcribe", le="10.0") == 0
    assert value(fams, "scribewatch_stage_duration_seconds_bucket",
                 stage="transcribe", le="30.0") == 1
    assert value(fams, "scribewatch_queue_wait_seconds_count") == 2
    assert value(fams, "scribewatch_queue_wait_seconds_sum") == 5.0
    # Job duration, audio and real-time factor describe succeeded transcriptions only.
    assert value(fams, "scribewatch_job_duration_seconds_count") == 1
    assert value(fams, "scribewatch_job_duration_seconds_sum") == 26.0
    assert value(fams, "scribewatch_audio_seconds_total") == 100.0
    assert value(fams, "scribewatch_realtime_factor_count") == 1
    assert value(fams, "scribewatch_realtime_factor_sum") == pytest.approx(0.21)
    assert value(fams, "scribewatch_realtime_factor_bucket", le="0.2") == 0
    assert value(fams, "scribewatch_realtime_factor_bucket", le="0.3") == 1
    assert value(fams, "scribewatch_model_load_failures_total") == 1
    assert value(fams, "scribewatch_suspect_transcripts_total") == 1
    assert value(fams, "scribewatch_job_takeovers_total") == 1
    assert value(fams, "scribewatch_lease_renewals_failed_total") == 2
    assert value(fams, "scribewatch_model_load_seconds") == 1.75
    assert value(fams, "scribewatch_model_info",
                 model="tiny.en", device="cpu", compute_type="int8") == 1


def test_realtime_factor_needs_audio_and_processing_time(reporter):
    r, registry = reporter
    r.job_finished("succeeded", job_seconds=3.0, audio_seconds=0.0, processing_seconds=2.0)
    r.job_finished("succeeded", job_seconds=3.0, audio_seconds=30.0, processing_seconds=None)
    r.job_finished("succeeded", job_seconds=3.0, audio_seconds=30.0, processing_seconds=0.0)
    fams = scrape(registry)
    assert value(fams, "scribewatch_realtime_factor_count") == 0
    assert value(fams, "scribewatch_audio_seconds_total") == 60.0
    assert value(fams, "scribewatch_jobs_total", outcome="succeeded") == 3


def test_model_info_has_one_series_for_the_current_model_and_never_a_path(reporter):
    r, registry = reporter
    r.model_loaded("tiny.en", "cpu", "int8", 1.0)
    r.model_unloaded()
    r.model_loaded("/srv/models/faster-whisper-small/", "cuda", "float16", 3.0)
    samples = scrape(registry)["scribewatch_model_info"].samples
    assert [s.labels for s in samples] == [
        {"model": "faster-whisper-small", "device": "cuda", "compute_type": "float16"}]


@pytest.mark.parametrize("call", [
    lambda r: r.stage_observed("transcode", 1.0),
    lambda r: r.job_finished("exploded"),
    lambda r: r.job_finished("failed", reason="No such file: /media/Movie.mkv", stage="probe"),
    lambda r: r.job_finished("failed", reason="not_media", stage="upload"),
    lambda r: r.job_finished("failed"),
    lambda r: r.job_finished("skipped", reason="because"),
    lambda r: r.job_retried("write", "it broke"),
    lambda r: r.notification_finished("http://jellyfin:8096", "sent"),
    lambda r: r.notification_finished("plex", "HTTP 401"),
    lambda r: r.notification_request("kodi", 0.1),
], ids=["stage", "outcome", "free-text reason", "bad stage", "no reason", "skip reason", "retry",
        "notify target", "notify result", "notify request"])
def test_label_values_outside_the_codes_are_refused_and_nothing_is_counted(reporter, call):
    r, registry = reporter
    before = generate_latest(registry)
    with pytest.raises(ValueError):
        call(r)
    assert generate_latest(registry) == before


def test_notifications_are_counted_by_target_and_result(reporter):
    r, registry = reporter
    assert not scrape(registry)["scribewatch_notifications_total"].samples   # nothing configured
    r.notification_targets(("plex", "webhook"))
    before = scrape(registry)
    for target in ("plex", "webhook"):                  # the configured targets' series at 0
        for result in ("sent", "failed"):
            assert value(before, "scribewatch_notifications_total", target=target,
                         result=result) == 0
    assert {s.labels["target"] for s in before["scribewatch_notifications_total"].samples} == {
        "plex", "webhook"}
    with pytest.raises(ValueError):
        r.notification_targets(("kodi",))
    r.notification_finished("plex", "sent")
    r.notification_finished("plex", "sent")
    r.notification_finished("webhook", "failed")
    r.notification_request("plex", 0.03)
    r.notification_request("plex", 12.0)
    r.notification_queue(7)
    after = scrape(registry)
    assert value(after, "scribewatch_notifications_total", target="plex", result="sent") == 2
    assert value(after, "scribewatch_notifications_total", target="webhook",
                 result="failed") == 1
    assert value(after, "scribewatch_notification_request_duration_seconds_count",
                 target="plex") == 2
    assert value(after, "scribewatch_notification_request_duration_seconds_bucket",
                 target="plex", le="0.05") == 1
    assert value(after, "scribewatch_notification_queue_items") == 7


def test_a_valid_pair_outside_failure_labels_is_still_counted(reporter):
    r, registry = reporter
    r.job_finished("failed", reason="vanished", stage="write")
    fams = scrape(registry)
    assert value(fams, "scribewatch_job_failures_total", stage="write", reason="vanished") == 1


def test_series_count_does_not_grow_with_the_number_of_jobs(reporter):
    r, registry = reporter

    def run_jobs(n):
        for i in range(n):
            r.job_started(i % 50)
            for stage in STAGES:
                r.stage_observed(stage, (i % 97) / 10)
            stage, reason = FAILURE_LABELS[i % len(FAILURE_LABELS)]
            if i % 3 == 0:
                r.job_finished("failed", reason=reason, stage=stage)
            elif i % 3 == 1:
                r.job_finished("skipped", reason=SKIP_REASONS[i % len(SKIP_REASONS)])
            else:
                r.job_finished("succeeded", job_seconds=i, audio_seconds=i + 1,
                               processing_seconds=i / 3)

    def series():
        return sum(len(f.samples) for f in scrape(registry).values())

    run_jobs(len(FAILURE_LABELS) * 3)
    first = series()
    run_jobs(2000)
    assert series() == first


def test_stage_observation_is_cheap(reporter):
    r, _ = reporter
    n = 20_000
    per_call = min(timeit.repeat(lambda: r.stage_observed("transcribe", 12.5),
                                 number=n, repeat=5)) / n
    assert per_call < 10e-6, f"{per_call * 1e6:.2f} µs per stage observation"


# -- state collector ----------------------------------------------------------------------
def test_state_gauges_come_from_the_snapshot_at_scrape_time():
    source = Source(snapshot())
    registry = CollectorRegistry()
    registry.register(StateCollector(source))
    assert source.calls == 0, "registration must not ask the daemon for its state"

    running = (RunningJob(job_id=7, worker="1", started_at=time.time() - 120, progress=0.25,
                          audio_seconds=600.0),
               RunningJob(job_id=9, worker="0", started_at=time.time() - 5, progress=0.9,
                          audio_seconds=30.0))
    source.snap = snapshot(queue_jobs=3, running=running, last_success_at=NOW - 60,
                           watch_dirs_unavailable=1, watcher_up=False)
    fams = scrape(registry)
    assert source.calls == 1
    assert value(fams, "scribewatch_queue_jobs") == 3
    assert value(fams, "scribewatch_jobs_running") == 2
    assert 119 <= value(fams, "scribewatch_oldest_running_job_age_seconds") < 130
    assert value(fams, "scribewatch_job_progress_ratio", worker="0") == 0.9
    assert value(fams, "scribewatch_job_progress_ratio", worker="1") == 0.25
    assert value(fams, "scribewatch_last_success_timestamp_seconds") == NOW - 60
    assert value(fams, "scribewatch_model_loaded") == 1
    assert value(fams, "scribewatch_watcher_up") == 0
    assert value(fams, "scribewatch_watch_dirs_unavailable") == 1
    assert value(fams, "scribewatch_ready") == 0
    assert value(fams, "scribewatch_start_time_seconds") == NOW - 3600
    for name in StateCollector._NAMES:
        assert fams[name].type == "gauge"


def test_idle_daemon_reports_zeros_and_one_progress_series_per_worker():
    registry = CollectorRegistry()
    registry.register(StateCollector(Source(snapshot(workers=3, model_loaded=False))))
    fams = scrape(registry)
    assert value(fams, "scribewatch_jobs_running") == 0
    assert value(fams, "scribewatch_oldest_running_job_age_seconds") == 0
    assert [s.labels["worker"] for s in fams["scribewatch_job_progress_ratio"].samples] == \
        ["0", "1", "2"]
    assert all(s.value == 0 for s in fams["scribewatch_job_progress_ratio"].samples)
    assert value(fams, "scribewatch_last_success_timestamp_seconds") == 0
    assert value(fams, "scribewatch_model_loaded") == 0
    assert value(fams, "scribewatch_ready") == 1, "model_ready (loadable) is what counts"


def test_build_info_reads_versions_from_package_metadata():
    registry = CollectorRegistry()
    registry.register(StateCollector(Source(snapshot(version="0.1.0"))))
    labels = scrape(registry)["scribewatch_build_info"].samples[0].labels
    assert labels == {
        "version": "0.1.0",
        "faster_whisper": importlib.metadata.version("faster-whisper"),
        "ctranslate2": importlib.metadata.version("ctranslate2"),
        "python": platform.python_version(),
    }


def test_the_exporter_never_imports_whisper_nor_the_web_server():
    code = ("import sys, scribewatch.exporter as exporter; "
            "import scribewatch.exporter.docs; "
            "assert 'scribewatch.web' not in sys.modules; "
            "import scribewatch.web.status_cli; "
            "from prometheus_client import generate_latest; "
            "from tests.harness.status import Source; "
            "e = exporter.Exporter(Source()); "
            "generate_latest(e.registry); "
            "bad = {'faster_whisper', 'ctranslate2', 'scribewatch.pipeline.stages'}"
            " & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


# -- the whole registry -------------------------------------------------------------------
@pytest.fixture
def full_registry(tmp_path, fake_nvml):
    """Every collector of the daemon (fake GPUs, real host), after one job of each outcome."""
    plan = DevicePlanView("cuda", ("GPU 0: 2 worker(s), batch 16",), gpus=(GpuSlotView(
        0, "GPU-5a7c3e1d-8f2b-4c69-9e0a-1d2b3c4d5e6f", "NVIDIA GeForce RTX 3060", ("0", "1"), 2,
        16, "active"),), cpu_workers=("2",))
    exporter = Exporter(Source(snapshot(tmp_path, running=(
        RunningJob(1, "0", time.time() - 3, 0.5, 11.0, gpu=0),), last_success_at=NOW,
        plan=plan, waiting_for_vram=1)))
    r = exporter.reporter
    r.job_started(2.0)
    r.stage_observed("probe", 0.01)
    r.job_finished("succeeded", job_seconds=30, audio_seconds=11, processing_seconds=3)
    r.job_finished("failed", reason="corrupt_container")
    r.job_finished("skipped", reason="no_speech")
    r.job_retried("transcribe", "transcribe_error")
    r.model_loaded("tiny.en", "cpu", "int8", 0.8)
    r.language_decided("de", "tag", 1.0)
    r.subtitles_written("translation")
    r.gpu_out_of_memory(0)
    r.api_request("asr", 200, 1.5)
    r.notification_targets(("jellyfin",))
    return exporter.registry


def test_language_decisions_are_counted_with_bounded_labels():
    from prometheus_client import CollectorRegistry

    from scribewatch.exporter.instrumentation import PrometheusReporter

    registry = CollectorRegistry()
    r = PrometheusReporter(registry)
    r.language_decided("de", "tag", 1.0)
    r.language_decided("de", "vote", 0.97)
    r.language_decided("en", "vote", 0.49)
    r.subtitles_written("transcription")
    r.subtitles_written("translation")
    get = registry.get_sample_value
    assert get("scribewatch_language_decisions_total", {"language": "de", "source": "tag"}) == 1
    assert get("scribewatch_language_decisions_total", {"language": "en", "source": "vote"}) == 1
    assert get("scribewatch_language_decision_confidence_ratio_bucket", {"le": "0.5"}) == 1
    assert get("scribewatch_language_decision_confidence_ratio_bucket", {"le": "0.99"}) == 2
    assert get("scribewatch_language_decision_confidence_ratio_count") == 3
    assert get("scribewatch_subtitles_written_total", {"kind": "translation"}) == 1
    for bad in (("German", "tag"), ("de", "guess"), ("/media/film.mkv", "vote")):
        with pytest.raises(ValueError):
            r.language_decided(*bad, 1.0)
    with pytest.raises(ValueError):
        r.subtitles_written("karaoke")
    # Pairs the settings make certain exist at 0 before their first decision (so increase()
    # counts it); unknown ones are ignored, never a label.
    r.languages_expected((("ja", "forced"), ("/media/x", "forced")))
    assert get("scribewatch_language_decisions_total", {"language": "ja", "source": "forced"}) == 0
    assert get("scribewatch_language_decisions_total",
               {"language": "/media/x", "source": "forced"}) is None


def test_registry_matches_the_catalog(full_registry):
    fams = scrape(full_registry)
    assert set(fams) == {f.name for f in catalog.FAMILIES}
    for f in catalog.FAMILIES:
        fam = fams[f.name]
        assert fam.type == f.type, f.name
        assert fam.documentation == f.help, f.name
        assert fam.samples, f"{f.name} has no series"
        for s in fam.samples:
            assert set(s.labels) - {"le"} == set(f.labels), (f.name, s.labels)
        if f.type == "histogram":
            les = sorted({float(s.labels["le"]) for s in fam.samples if "le" in s.labels})
            assert les == [*f.buckets, float("inf")], f.name


def test_label_values_stay_in_their_declared_domains(full_registry):
    for fam in scrape(full_registry).values():
        for s in fam.samples:
            for label, v in s.labels.items():
                if label != "le":
                    assert re.fullmatch(catalog.LABEL_PATTERNS[label], v), (s.name, label, v)


def test_ratios_are_between_zero_and_one(full_registry):
    for name, fam in scrape(full_registry).items():
        if name.endswith("_ratio"):
            assert fam.samples and all(0 <= s.value <= 1 for s in fam.samples), name


def test_promtool_accepts_the_exposition(full_registry):
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=generate_latest(full_registry),
                            capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stdout and not result.stderr, \
        (result.stdout + result.stderr).decode()


def test_api_jobs_and_requests_are_counted_apart_from_folder_jobs(reporter):
    r, registry = reporter
    r.job_finished("succeeded", job_seconds=2.0, audio_seconds=11.0, processing_seconds=1.5,
                   source="api")
    r.job_finished("failed", reason="not_media", stage="probe", source="api")
    r.api_request("asr", 200, 1.7)
    r.api_request("asr", 503, 30.0)
    r.api_request("transcriptions", 418, 0.1)        # an odd status: "other", still bounded
    fams = scrape(registry)
    assert value(fams, "scribewatch_jobs_total", outcome="succeeded", source="api") == 1
    assert value(fams, "scribewatch_jobs_total", outcome="succeeded") == 0
    assert value(fams, "scribewatch_job_failures_total", stage="probe", reason="not_media",
                 source="api") == 1
    assert value(fams, "scribewatch_api_requests_total", endpoint="asr", code="200") == 1
    assert value(fams, "scribewatch_api_requests_total", endpoint="asr", code="503") == 1
    assert value(fams, "scribewatch_api_requests_total", endpoint="transcriptions",
                 code="other") == 1
    assert value(fams, "scribewatch_api_request_duration_seconds_count", endpoint="asr") == 2
    assert value(fams, "scribewatch_audio_seconds_total") == 11.0
    with pytest.raises(ValueError):
        r.api_request("/asr?x", 200, 1.0)           # never a path or free text
    with pytest.raises(ValueError):
        r.job_finished("succeeded", source="upload")
