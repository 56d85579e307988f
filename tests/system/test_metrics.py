"""The real daemon's /metrics after real jobs on real speech (good and bad files), checked
against the job store — the ground truth — and against the catalog; promtool on the real scrape;
no label value of a real scrape is a path, a file name or free text; the GPU families with the
fake pynvml standing in for nvidia-ml-py in the daemon process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import av
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from scribewatch import __version__
from scribewatch.exporter import catalog
from scribewatch.pipeline.contract import FAILURE_LABELS, OUTCOMES, SKIP_REASONS, STAGES
from tests.harness import media as gen
from tests.harness import require_binary, wait_for

pytestmark = pytest.mark.slow

MEDIA_EXTENSIONS = re.compile(
    r"\.(mp3|m4a|aac|flac|wav|ogg|opus|wma|mp4|m4v|mkv|avi|mov|webm|ts|m2ts|wmv|srt|vtt|txt|"
    r"json|db|yaml|part|tmp)$", re.I)
# In the name of every file and folder the tests drop: no label value may contain it.
TOKEN = "qz7x"


class Scrape:
    """One parsed /metrics answer."""

    def __init__(self, text: str):
        self.text = text
        self.families = {}
        for fam in parse_text(text):
            self.families[fam.name + "_total" if fam.type == "counter" else fam.name] = fam

    def samples(self):
        return [s for fam in self.families.values() for s in fam.samples]

    def value(self, sample: str, /, **labels) -> float:
        if sample in ("scribewatch_jobs_total", "scribewatch_job_failures_total"):
            labels.setdefault("source", "folder")     # watched files, unless a test says "api"
        found = [s.value for s in self.samples() if s.name == sample and s.labels == labels]
        assert len(found) == 1, (sample, labels, found)
        return found[0]

    def series(self, sample: str) -> dict:
        return {tuple(sorted(s.labels.items())): s.value for s in self.samples()
                if s.name == sample}


def check_against_catalog(scrape: Scrape) -> None:
    """Every family is declared, of the declared type, with the declared labels."""
    for name, fam in scrape.families.items():
        assert name in catalog.BY_NAME, f"{name} is not in the catalog"
        declared = catalog.family(name)
        assert fam.type == declared.type, name
        for s in fam.samples:
            assert set(s.labels) - {"le"} == set(declared.labels), (name, s.labels)


def check_labels_are_bounded(scrape: Scrape) -> None:
    """Walk every label value: inside its declared domain, never a path, file name or text."""
    for s in scrape.samples():
        for label, v in s.labels.items():
            if label == "le":
                float(v)
                continue
            assert re.fullmatch(catalog.LABEL_PATTERNS[label], v), (s.name, label, v)
            assert "/" not in v and "\\" not in v, (s.name, label, v)
            assert not MEDIA_EXTENSIONS.search(v), (s.name, label, v)
            assert TOKEN not in v, (s.name, label, v)
            assert len(v) <= 64 and v.count(" ") <= 4, (s.name, label, v)


def promtool_check(text: str) -> None:
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                            capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stdout and not result.stderr, \
        (result.stdout + result.stderr).decode()


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        return container.duration / 1e6


def test_metrics_tell_what_happened(daemon_factory, media, tmp_path):
    d = daemon_factory().start()
    started = time.time()

    # Before any file: every known series is there, at zero.
    first = Scrape(d.metrics())
    check_against_catalog(first)
    for outcome in OUTCOMES:
        assert first.value("scribewatch_jobs_total", outcome=outcome) == 0
    for stage, reason in FAILURE_LABELS:
        assert first.value("scribewatch_job_failures_total", stage=stage, reason=reason) == 0
    for stage in STAGES:
        assert first.value("scribewatch_stage_duration_seconds_count", stage=stage) == 0
    assert first.value("scribewatch_ready") == 1
    promtool_check(first.text)

    # Good and bad files, made outside the watch folder and moved in at once.
    src = tmp_path / "src"
    src.mkdir()

    def named(stem: str, ext: str) -> Path:
        return src / f"{stem} {TOKEN}.{ext}"

    shutil.copy(media / "jfk.flac", named("good1", "flac"))
    gen.mux_with_video(media / "jfk.flac", named("good2", "mkv"), acodec="flac")
    named("empty", "mp3").write_bytes(b"")
    named("notmedia", "mp4").write_text("this is a shopping list, not a film\n" * 20)
    gen.mux_with_video(media / "jfk.flac", tmp_path / "whole.mp4")
    gen.truncated_copy(tmp_path / "whole.mp4", named("truncated", "mp4"), 0.6)
    gen.mux_with_video(None, named("noaudio", "mp4"), seconds=3)
    gen.silence_wav(named("silence", "wav"), 6)
    shutil.copy(media / "hotwords.mp3", named("subbed", "mp3"))
    named("subbed", "en.srt").write_text("1\n00:00:00,000 --> 00:00:02,000\nAlready here.\n")
    good_audio = audio_seconds(named("good1", "flac")) + audio_seconds(named("good2", "mkv"))
    inbox = d.watch / f"Films {TOKEN}"
    inbox.mkdir()
    for p in sorted(src.iterdir()):
        os.rename(p, inbox / p.name)

    expected = {
        "good1": ("succeeded", None), "good2": ("succeeded", None),
        "empty": ("failed", "empty_file"), "notmedia": ("failed", "not_media"),
        "truncated": ("failed", "corrupt_container"), "noaudio": ("failed", "no_audio_stream"),
        "silence": ("skipped", "no_speech"), "subbed": ("skipped", "subtitle_exists"),
    }
    jobs = d.wait_jobs(len(expected), timeout=240)
    assert {Path(j["path"]).name.split(" ")[0]: (j["status"], j["reason"]) for j in jobs} == \
        expected
    # The store is written just before the reporter is told: wait for the reporter to catch up.
    def settled():
        s = Scrape(d.metrics())
        done = sum(s.series("scribewatch_jobs_total").values()) == len(expected)
        return s if done and s.value("scribewatch_jobs_running") == 0 else None

    scrape = wait_for(settled, 30, what="every job counted and no job running")
    check_against_catalog(scrape)
    promtool_check(scrape.text)
    check_labels_are_bounded(scrape)

    # Counters match the job store.
    by_status = Counter(j["status"] for j in jobs)
    for outcome in OUTCOMES:
        assert scrape.value("scribewatch_jobs_total", outcome=outcome) == by_status[outcome]
    failures = Counter((j["error_stage"], j["reason"]) for j in jobs if j["status"] == "failed")
    assert set(failures) <= set(FAILURE_LABELS)
    assert all(n == 1 for n in failures.values()) and len(failures) == 4
    assert {(dict(k)["stage"], dict(k)["reason"])
            for k in scrape.series("scribewatch_job_failures_total")} == set(FAILURE_LABELS)
    for stage, reason in FAILURE_LABELS:
        assert scrape.value("scribewatch_job_failures_total", stage=stage, reason=reason) == \
            failures[(stage, reason)], (stage, reason)
    skips = Counter(j["reason"] for j in jobs if j["status"] == "skipped")
    for reason in SKIP_REASONS:
        assert scrape.value("scribewatch_files_skipped_total", reason=reason) == skips[reason]
    assert sum(scrape.series("scribewatch_job_retries_total").values()) == \
        sum(j["attempts"] - 1 for j in jobs if j["attempts"] > 1)
    assert scrape.value("scribewatch_suspect_transcripts_total") == \
        sum(1 for j in jobs if j["suspect"] and json.loads(j["suspect"]))
    assert scrape.value("scribewatch_model_load_failures_total") == 0

    # Audio: what was dropped, what the store recorded.
    audio = scrape.value("scribewatch_audio_seconds_total")
    assert audio == pytest.approx(good_audio, abs=1.0)
    assert audio == pytest.approx(sum(j["audio_seconds"] for j in jobs
                                      if j["status"] == "succeeded"), rel=1e-6)

    # Histograms: one observation per stage run, the same seconds the store kept.
    for stage in STAGES:
        ran = [json.loads(j["stage_seconds"])[stage] for j in jobs
               if stage in json.loads(j["stage_seconds"])]
        assert scrape.value("scribewatch_stage_duration_seconds_count", stage=stage) == len(ran)
        assert scrape.value("scribewatch_stage_duration_seconds_sum", stage=stage) == \
            pytest.approx(sum(ran), rel=1e-3, abs=1e-3)
    started_jobs = [j for j in jobs if j["started_at"] is not None]
    assert scrape.value("scribewatch_queue_wait_seconds_count") == len(started_jobs)
    assert scrape.value("scribewatch_job_duration_seconds_count") == by_status["succeeded"]
    assert scrape.value("scribewatch_realtime_factor_count") == by_status["succeeded"]
    rtf = scrape.value("scribewatch_realtime_factor_sum") / by_status["succeeded"]
    assert 0 < rtf < 5, rtf

    # State, read at scrape time.
    assert scrape.value("scribewatch_queue_jobs") == 0
    assert scrape.value("scribewatch_oldest_running_job_age_seconds") == 0
    assert set(scrape.series("scribewatch_job_progress_ratio").values()) == {0}
    last_success = scrape.value("scribewatch_last_success_timestamp_seconds")
    assert last_success == pytest.approx(max(j["finished_at"] for j in jobs
                                             if j["status"] == "succeeded"), abs=1)
    assert started - 120 < scrape.value("scribewatch_start_time_seconds") <= started
    for gauge in ("scribewatch_model_loaded", "scribewatch_watcher_up", "scribewatch_ready"):
        assert scrape.value(gauge) == 1, gauge
    assert scrape.value("scribewatch_watch_dirs_unavailable") == 0
    assert scrape.value("scribewatch_model_info", model="tiny.en", device="cpu",
                        compute_type="int8") == 1
    assert scrape.value("scribewatch_model_load_seconds") > 0
    [build] = scrape.families["scribewatch_build_info"].samples
    assert build.labels["version"] == __version__ and build.value == 1

    # Host and process.
    for role in catalog.ROLES:
        free = scrape.value("scribewatch_filesystem_free_bytes", role=role)
        assert 0 < free <= scrape.value("scribewatch_filesystem_size_bytes", role=role)
    assert 0 <= scrape.value("scribewatch_host_cpu_usage_ratio") <= 1
    assert 0 < scrape.value("scribewatch_host_memory_available_bytes") <= \
        scrape.value("scribewatch_host_memory_total_bytes")
    assert scrape.value("process_resident_memory_bytes") > 50e6       # the model is in there
    if scrape.value("scribewatch_nvml_up") == 0:
        # NVML's families are absent; the daemon's own GPU families (its plan, out-of-memory
        # counts) have no series on a CPU box.
        nvml = {f.name for f in catalog.FAMILIES if f.source == catalog.GPU} - {
            "scribewatch_nvml_up"}
        assert not nvml & set(scrape.families)
        assert not any(scrape.families[n].samples for n in scrape.families
                       if n.startswith("scribewatch_gpu_"))
    assert scrape.value("scribewatch_worker_info", worker="0", device="cpu", gpu="") == 1
    assert scrape.value("scribewatch_jobs_waiting_for_vram") == 0

    # The same through OpenMetrics and gzip, and /api/status agrees with the store.
    status, body = d.get("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and {f.name for f in parse_om(body.decode())} >= {
        "scribewatch_jobs", "scribewatch_stage_duration_seconds"}
    status, body = d.get("/api/status")
    doc = json.loads(body)
    assert status == 200 and doc["counts"] == {o: by_status[o] for o in OUTCOMES}
    assert doc["model"] == "tiny.en" and doc["queue_jobs"] == 0 and doc["running"] == []
    assert doc["startup_scan"]["done"] is True and doc["startup_scan"]["seconds"] >= 0
    assert d.stop() == 0


def test_gpu_families_from_the_fake_nvml_in_the_daemon(daemon_factory, media, tmp_path):
    nvml_config = tmp_path / "nvml.json"
    two_gpus = {"gpus": [
        {"name": "NVIDIA GeForce RTX 3060", "uuid": "GPU-5a7c3e1d-8f2b-4c69-9e0a-1d2b3c4d5e6f",
         "utilization": 40, "processes": [{"pid": "self", "memory": 1024 ** 3}]},
        {"name": "NVIDIA GeForce GTX 1660 SUPER",
         "uuid": "GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "utilization": 0,
         "memory_total": 6 * 1024 ** 3, "processes": []},
    ]}
    nvml_config.write_text(json.dumps(two_gpus))
    d = daemon_factory({"device": "cpu"}, fake_nvml=True,
                       env={"FAKE_NVML_CONFIG": str(nvml_config)}).start()
    shutil.copy(media / "jfk.flac", d.watch / f"jfk {TOKEN}.flac")
    [job] = d.wait_jobs(1, timeout=120)
    assert job["status"] == "succeeded"

    scrape = Scrape(d.metrics())
    check_against_catalog(scrape)
    promtool_check(scrape.text)
    check_labels_are_bounded(scrape)
    assert scrape.value("scribewatch_nvml_up") == 1
    gpu0 = {"gpu": "0", "uuid": two_gpus["gpus"][0]["uuid"], "name": two_gpus["gpus"][0]["name"]}
    for f in catalog.FAMILIES:
        if f.source == catalog.GPU and f.name != "scribewatch_nvml_up":
            assert {dict(k)["gpu"] for k in scrape.series(f.name)} == {"0", "1"}, f.name
    assert scrape.value("scribewatch_gpu_utilization_ratio", **gpu0) == 0.4
    # "self" is the daemon process: its own memory on the GPU is found by its pid.
    assert scrape.value("scribewatch_gpu_process_memory_bytes", **gpu0) == 1024 ** 3
    # The job ran on the CPU (no CUDA device for CTranslate2 here), so its resource summary
    # holds no GPU figures: they would be another process's load (a Plex transcode).
    assert job["gpu_util_max_ratio"] is None and job["gpu_memory_max_bytes"] is None

    # NVML breaks while the daemon runs: the scrape still works, the GPU families go away
    # from the next sample (read once a second, never by a scrape), and the log says so once.
    nvml_config.write_text(json.dumps({**two_gpus, "fail": "read"}))
    wait_for(lambda: Scrape(d.metrics()).value("scribewatch_nvml_up") == 0, 10,
             what="the next GPU sample to see NVML fail")
    for _ in range(5):
        broken = Scrape(d.metrics())
        assert broken.value("scribewatch_nvml_up") == 0
        assert not any(broken.families[n].samples for n in broken.families
                       if n.startswith("scribewatch_gpu_"))
    assert sum("GPU metrics unavailable" in line for line in d.log().splitlines()) == 1, d.log()
    assert d.get("/readyz")[0] == 200
    assert d.stop() == 0
