"""Pipeline metrics: `PrometheusReporter` (events pushed by the pipeline) and `StateCollector`
(the daemon's state, pulled from its `StatusSource` at scrape time so gauges are never stale).
"""

from __future__ import annotations

import functools
import importlib.metadata
import itertools
import os
import platform
import time

from prometheus_client import CollectorRegistry

from ..pipeline.contract import (
    ARR_APPS,
    ARR_EVENTS,
    ARR_OUTCOMES,
    FAILURE_REASONS,
    LANGUAGE_LABELS,
    LANGUAGE_SOURCES,
    NOTIFY_RESULTS,
    NOTIFY_TARGETS,
    OUTCOMES,
    OUTPUT_KINDS,
    SKIP_REASONS,
    SOURCES,
    STAGES,
    StatusSource,
)
from . import catalog


def _records(method):
    """Moves the reporter's `version` on after `method` changed a value (see Exposition)."""
    @functools.wraps(method)
    def recording(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        finally:
            # next() on a count is atomic under the GIL: two threads never get one number.
            self.version = next(self._versions)
    return recording


class PrometheusReporter:
    """`pipeline.contract.Reporter` backed by the catalog's client objects.

    Every child is resolved once here, so reporting is a dict lookup plus the client's own
    update (a stage observation costs about a microsecond). Label values outside the codes of
    `pipeline.contract` are a programming error and raise ValueError before anything is counted:
    a free-text label would be a new series per message.
    """

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = CollectorRegistry() if registry is None else registry
        m = catalog.create_metrics(self.registry)
        self._versions = itertools.count(1)
        self.version = 0       # moves on with every recorded event: the families' text is cached
        self._stage = {s: m["scribewatch_stage_duration_seconds"].labels(s) for s in STAGES}
        self._job_duration = m["scribewatch_job_duration_seconds"]
        self._queue_wait = m["scribewatch_queue_wait_seconds"]
        self._rtf = m["scribewatch_realtime_factor"]
        self._jobs = {(o, s): m["scribewatch_jobs_total"].labels(o, s)
                      for o in OUTCOMES for s in SOURCES}
        self._failures_metric = m["scribewatch_job_failures_total"]
        self._failures = {k: self._failures_metric.labels(*k)
                          for k in catalog.family("scribewatch_job_failures_total").known}
        self._retries_metric = m["scribewatch_job_retries_total"]
        self._retries = {k: self._retries_metric.labels(*k)
                         for k in catalog.family("scribewatch_job_retries_total").known}
        self._skipped = {r: m["scribewatch_files_skipped_total"].labels(r) for r in SKIP_REASONS}
        self._audio = m["scribewatch_audio_seconds_total"]
        self._api_requests = m["scribewatch_api_requests_total"]
        # An endpoint's histogram appears with its first request (20 lines each, idle otherwise).
        self._api_duration = m["scribewatch_api_request_duration_seconds"]
        self._load_failures = m["scribewatch_model_load_failures_total"]
        self._suspects = m["scribewatch_suspect_transcripts_total"]
        self._languages = m["scribewatch_language_decisions_total"]
        self._confidence = m["scribewatch_language_decision_confidence_ratio"]
        self._written = {k: m["scribewatch_subtitles_written_total"].labels(k)
                         for k in OUTPUT_KINDS}
        self._gpu_oom = m["scribewatch_gpu_oom_total"]
        self._takeovers = m["scribewatch_job_takeovers_total"]
        self._renewals_failed = m["scribewatch_lease_renewals_failed_total"]
        self._load_seconds = m["scribewatch_model_load_seconds"]
        self._model_info = m["scribewatch_model_info"]
        self._model_labels: tuple[str, str, str] | None = None
        self._arr_webhooks = m["scribewatch_arr_webhooks_total"]
        for known in catalog.family("scribewatch_arr_webhooks_total").known:
            self._arr_webhooks.labels(*known)   # at 0 until the first webhook
        self._retry_requests = {r: m["scribewatch_retry_requests_total"].labels(r)
                                for r in catalog.RETRY_REQUEST_RESULTS}
        # Series of the configured targets only (`notification_targets`, at start): an
        # unconfigured one would add 14 lines to every scrape and never move.
        self._notify_total = m["scribewatch_notifications_total"]
        self._notify_hist = m["scribewatch_notification_request_duration_seconds"]
        self._notify_queue = m["scribewatch_notification_queue_items"]

    # -- Reporter -------------------------------------------------------------------------
    @_records
    def stage_observed(self, stage: str, seconds: float) -> None:
        try:
            child = self._stage[stage]
        except KeyError:
            raise ValueError(f"unknown stage {stage!r}") from None
        child.observe(seconds)

    @_records
    def job_started(self, queue_wait_seconds: float) -> None:
        # Clock steps can make detected > started; a negative wait would only corrupt _sum.
        self._queue_wait.observe(max(0.0, queue_wait_seconds))

    @_records
    def job_finished(self, outcome: str, *, reason: str | None = None, stage: str | None = None,
                     job_seconds: float | None = None, audio_seconds: float = 0.0,
                     processing_seconds: float | None = None, source: str = "folder") -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        if outcome == "failed":
            self._child(self._failures, self._failures_metric, stage, reason, source).inc()
        elif outcome == "skipped":
            if reason not in self._skipped:
                raise ValueError(f"unknown skip reason {reason!r}")
            self._skipped[reason].inc()
        elif outcome != "succeeded":
            raise ValueError(f"unknown outcome {outcome!r}")
        self._jobs[outcome, source].inc()
        if outcome != "succeeded":
            return
        # Duration, audio and speed describe transcriptions: a skip takes milliseconds and a
        # failure's timing says nothing about throughput, so they would only blur these.
        if job_seconds is not None:
            self._job_duration.observe(job_seconds)
        if audio_seconds > 0:
            self._audio.inc(audio_seconds)
            if processing_seconds is not None and processing_seconds > 0:
                self._rtf.observe(processing_seconds / audio_seconds)

    @_records
    def job_retried(self, stage: str, reason: str) -> None:
        self._child(self._retries, self._retries_metric, stage, reason).inc()

    @_records
    def api_request(self, endpoint: str, code: int, seconds: float) -> None:
        """One API request answered (not part of the pipeline's Reporter: the server calls it)."""
        if endpoint not in catalog.API_ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        label = str(code) if str(code) in catalog.API_CODES else "other"
        self._api_requests.labels(endpoint, label).inc()
        self._api_duration.labels(endpoint).observe(max(0.0, seconds))

    @_records
    def model_loaded(self, name: str, device: str, compute_type: str, seconds: float) -> None:
        # The contract says a short name, never a path; the base name keeps a folder's path out
        # of the label even if a caller passes one.
        labels = (os.path.basename(name.rstrip("/\\")) or name, device, compute_type)
        self._model_info.labels(*labels).set(1)
        if self._model_labels not in (None, labels):
            # Set the new series before removing the old one: a scrape never sees none.
            self._model_info.remove(*self._model_labels)
        self._model_labels = labels
        self._load_seconds.set(seconds)

    def model_unloaded(self) -> None:
        # Nothing to record: scribewatch_model_loaded is read from the snapshot at scrape time,
        # and model_info keeps describing the model the daemon reloads on the next job.
        pass

    @_records
    def model_load_failed(self) -> None:
        self._load_failures.inc()

    @_records
    def suspect_transcript(self) -> None:
        self._suspects.inc()

    # -- not the pipeline's: the status page's requests and the webhooks (web.server) -----
    @_records
    def arr_webhook(self, app: str, event: str, result: str) -> None:
        """A Sonarr or Radarr webhook answered (web/hooks.py)."""
        if app not in ARR_APPS or event not in ARR_EVENTS or result not in ARR_OUTCOMES:
            raise ValueError(f"unknown webhook labels {(app, event, result)!r}")
        self._arr_webhooks.labels(app, event, result).inc()


    @_records
    def retry_requested(self, result: str) -> None:
        try:
            child = self._retry_requests[result]
        except KeyError:
            raise ValueError(f"unknown retry result {result!r}") from None
        child.inc()

    @_records
    def notification_targets(self, targets) -> None:
        for target in targets:
            self._check_target(target)
            for result in NOTIFY_RESULTS:
                self._notify_total.labels(target, result)   # at 0 until the first one
            self._notify_hist.labels(target)

    @_records
    def notification_finished(self, target: str, result: str) -> None:
        self._check_target(target)
        if result not in NOTIFY_RESULTS:
            raise ValueError(f"unknown notification result {result!r}")
        self._notify_total.labels(target, result).inc()

    @_records
    def notification_request(self, target: str, seconds: float) -> None:
        self._check_target(target)
        self._notify_hist.labels(target).observe(seconds)

    @staticmethod
    def _check_target(target: str) -> None:
        if target not in NOTIFY_TARGETS:
            raise ValueError(f"unknown notification target {target!r}")

    @_records
    def notification_queue(self, length: int) -> None:
        self._notify_queue.set(length)

    @_records
    def language_decided(self, language: str, source: str, probability: float) -> None:
        if language not in LANGUAGE_LABELS or source not in LANGUAGE_SOURCES:
            raise ValueError(f"unknown language {language!r} or source {source!r}")
        self._languages.labels(language, source).inc()
        self._confidence.observe(min(1.0, max(0.0, probability)))

    @_records
    def languages_expected(self, pairs) -> None:
        for language, source in pairs:
            if language in LANGUAGE_LABELS and source in LANGUAGE_SOURCES:
                self._languages.labels(language, source)   # at 0 until the first decision

    @_records
    def subtitles_written(self, kind: str) -> None:
        try:
            child = self._written[kind]
        except KeyError:
            raise ValueError(f"unknown output kind {kind!r}") from None
        child.inc()

    @_records
    def gpu_out_of_memory(self, gpu: int) -> None:
        if not isinstance(gpu, int) or not 0 <= gpu < 100:   # a bounded label: an index
            raise ValueError(f"bad GPU index {gpu!r}")
        self._gpu_oom.labels(str(gpu)).inc()

    @_records
    def lease_renewal_failed(self) -> None:
        self._renewals_failed.inc()

    @_records
    def job_taken_over(self) -> None:
        self._takeovers.inc()

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _child(children: dict, metric, stage: str | None, reason: str | None, *rest: str):
        """The (stage, reason, *rest) child; any stage with any known reason code is allowed."""
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        stage = stage or FAILURE_REASONS[reason][0]
        key = (stage, reason, *rest)
        child = children.get(key)
        if child is None:
            if stage not in STAGES:
                raise ValueError(f"unknown stage {stage!r}")
            # A pair errors.FAILURE_LABELS does not list: still a bounded set (stages × codes).
            child = children[key] = metric.labels(*key)
        return child


def _dist_version(name: str) -> str:
    # Read from the installed distribution's metadata: the exporter never imports faster-whisper.
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "none"


class StateCollector:
    """Gauges of the daemon's current state, from one `snapshot()` per scrape."""

    _NAMES = (
        "scribewatch_queue_jobs", "scribewatch_oldest_queued_job_age_seconds",
        "scribewatch_leases_held", "scribewatch_store_up", "scribewatch_jobs_running",
        "scribewatch_oldest_running_job_age_seconds", "scribewatch_job_progress_ratio",
        "scribewatch_last_success_timestamp_seconds", "scribewatch_model_loaded",
        "scribewatch_watcher_up", "scribewatch_watch_dirs_unavailable", "scribewatch_ready",
        "scribewatch_start_time_seconds", "scribewatch_build_info",
        "scribewatch_worker_info", "scribewatch_gpu_workers_active",
        "scribewatch_jobs_waiting_for_vram",
    )

    def __init__(self, status_source: StatusSource):
        self._source = status_source
        self._library_versions = (_dist_version("faster-whisper"), _dist_version("ctranslate2"),
                                  platform.python_version())

    def describe(self):
        # Lets the registry check names without calling snapshot() at registration time.
        return [catalog.family(n).new() for n in self._NAMES]

    def collect(self):
        snap = self._source.snapshot()
        now = time.time()
        f = {n: catalog.family(n).new() for n in self._NAMES}
        f["scribewatch_queue_jobs"].add_metric([], snap.queue_jobs)
        f["scribewatch_oldest_queued_job_age_seconds"].add_metric(
            [], max(0.0, now - snap.oldest_queued_at) if snap.oldest_queued_at else 0.0)
        f["scribewatch_leases_held"].add_metric([], snap.leases_held)
        f["scribewatch_store_up"].add_metric([], int(snap.store_up))
        f["scribewatch_jobs_running"].add_metric([], len(snap.running))
        oldest = min((j.started_at for j in snap.running), default=now)
        f["scribewatch_oldest_running_job_age_seconds"].add_metric([], max(0.0, now - oldest))
        # One series per worker, 0 when idle, so the series exist before the first job.
        progress = {str(w): 0.0 for w in range(snap.workers)}
        progress.update({j.worker: min(1.0, max(0.0, j.progress)) for j in snap.running})
        for worker, ratio in sorted(progress.items(), key=lambda kv: (len(kv[0]), kv[0])):
            f["scribewatch_job_progress_ratio"].add_metric([worker], ratio)
        f["scribewatch_last_success_timestamp_seconds"].add_metric([], snap.last_success_at or 0)
        f["scribewatch_model_loaded"].add_metric([], int(snap.model_loaded))
        f["scribewatch_watcher_up"].add_metric([], int(snap.watcher_up))
        f["scribewatch_watch_dirs_unavailable"].add_metric([], snap.watch_dirs_unavailable)
        f["scribewatch_ready"].add_metric([], int(snap.ready))
        f["scribewatch_start_time_seconds"].add_metric([], snap.started_at)
        f["scribewatch_build_info"].add_metric([snap.version, *self._library_versions], 1)
        f["scribewatch_jobs_waiting_for_vram"].add_metric([], snap.waiting_for_vram)
        plan = snap.plan
        if plan is not None:
            for slot in plan.gpus:
                f["scribewatch_gpu_workers_active"].add_metric([str(slot.index)],
                                                               slot.active_workers)
                for worker in slot.workers:
                    f["scribewatch_worker_info"].add_metric(
                        [worker, f"cuda:{slot.index}", str(slot.index)], 1)
            for worker in plan.cpu_workers:
                f["scribewatch_worker_info"].add_metric([worker, "cpu", ""], 1)
        return list(f.values())
