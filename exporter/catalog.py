"""The metric catalog: every family scribewatch exposes, declared once.

The reporter creates its client objects from here (`create_metrics`), the custom collectors take
their names, help and labels from here (`family(name).new()`), `docs/metrics.md` is generated
from here (`python -m scribewatch.exporter.docs`) and the tests hold the registry to it. Names are
fixed by docs/architecture.md: dashboards and alerts depend on them.
"""

from __future__ import annotations

import dataclasses

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..pipeline.contract import (
    ARR_APPS,
    FAILURE_LABELS,
    FAILURE_REASONS,
    OUTCOMES,
    OUTPUT_KINDS,
    SKIP_REASONS,
    SOURCES,
    STAGES,
)
from .buckets import (
    CONFIDENCE_BUCKETS,
    LONG_BUCKETS,
    NOTIFY_BUCKETS,
    RTF_BUCKETS,
    STAGE_BUCKETS,
)
from .labels import (  # noqa: F401  (the label domains are the catalog's names too)
    API_CODES,
    API_ENDPOINTS,
    GPU_LABELS,
    LABEL_PATTERNS,
    RETRY_REQUEST_RESULTS,
    ROLES,
    THROTTLE_REASONS,
    _one_of,
)

# Where a family comes from (and the section it is documented in).
PIPELINE = "pipeline"   # client objects updated by PrometheusReporter
STATE = "state"         # StateCollector, from StatusSource.snapshot() at scrape time
GPU = "gpu"             # GpuCollector, from NVML once a second (exporter.sampling)
HOST = "host"           # HostCollector, from psutil once a second (exporter.sampling)
PROCESS = "process"     # client_python's ProcessCollector, once a second (names are the library's)

@dataclasses.dataclass(frozen=True)
class Family:
    name: str                      # as exposed in the text format (counters with `_total`)
    type: str                      # counter | gauge | histogram
    help: str
    source: str
    example: str                   # PromQL an operator would actually write
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    known: tuple[tuple[str, ...], ...] = ()   # label values pre-initialised to 0

    def new(self):
        """An empty metric family for a custom collector, with this name, help and labels."""
        cls = CounterMetricFamily if self.type == "counter" else GaugeMetricFamily
        return cls(self.name, self.help, labels=self.labels)


def _pairs(values):
    return tuple((v,) for v in values)


_RETRY_LABELS = tuple((s, r) for s, r in FAILURE_LABELS if FAILURE_REASONS[r][1])
_GPU_EXAMPLE_MEM = "scribewatch_gpu_memory_used_bytes / scribewatch_gpu_memory_total_bytes"

FAMILIES: tuple[Family, ...] = (
    # -- pipeline events ------------------------------------------------------------------
    Family("scribewatch_stage_duration_seconds", "histogram",
           "Time one stage of one job took.", PIPELINE,
           "histogram_quantile(0.95, sum by (le, stage) "
           "(rate(scribewatch_stage_duration_seconds_bucket[5m])))",
           labels=("stage",), buckets=STAGE_BUCKETS, known=_pairs(STAGES)),
    Family("scribewatch_job_duration_seconds", "histogram",
           "Time from detection of a file to its subtitles written, for succeeded jobs.",
           PIPELINE,
           "histogram_quantile(0.5, sum by (le) "
           "(rate(scribewatch_job_duration_seconds_bucket[30m])))",
           buckets=LONG_BUCKETS),
    Family("scribewatch_queue_wait_seconds", "histogram",
           "Time a job waited between detection and a worker picking it up.", PIPELINE,
           "histogram_quantile(0.95, sum by (le) "
           "(rate(scribewatch_queue_wait_seconds_bucket[30m])))",
           buckets=LONG_BUCKETS),
    Family("scribewatch_realtime_factor", "histogram",
           "Processing seconds per audio second of succeeded jobs (below 1 is faster than "
           "real time).", PIPELINE,
           "histogram_quantile(0.5, sum by (le) (rate(scribewatch_realtime_factor_bucket[1h])))",
           buckets=RTF_BUCKETS),
    Family("scribewatch_jobs_total", "counter",
           "Jobs finished, by outcome and source (a watched folder, or an upload to the "
           "HTTP API).", PIPELINE,
           "sum by (outcome) (rate(scribewatch_jobs_total[5m]))",
           labels=("outcome", "source"), known=tuple((o, s) for s in SOURCES for o in OUTCOMES)),
    Family("scribewatch_job_failures_total", "counter",
           "Failed jobs, by the stage that failed, the reason code and the source.", PIPELINE,
           "sum by (stage, reason) (increase(scribewatch_job_failures_total[1h])) > 0",
           labels=("stage", "reason", "source"),
           # the folder's failures from the start; the API's appear with their first request
           known=tuple((*k, "folder") for k in FAILURE_LABELS)),
    Family("scribewatch_job_retries_total", "counter",
           "Transient failures that sent a job back to the queue for another attempt.", PIPELINE,
           "sum by (reason) (increase(scribewatch_job_retries_total[1h]))",
           labels=("stage", "reason"), known=_RETRY_LABELS),
    Family("scribewatch_files_skipped_total", "counter",
           "Files that needed no subtitle from us, by reason.", PIPELINE,
           "sum by (reason) (increase(scribewatch_files_skipped_total[1d]))",
           labels=("reason",), known=_pairs(SKIP_REASONS)),
    Family("scribewatch_api_requests_total", "counter",
           "Requests to the HTTP transcription API, by endpoint and HTTP status (499: the "
           "client hung up).", PIPELINE,
           'sum by (endpoint) (rate(scribewatch_api_requests_total{code!="200"}[5m]))',
           labels=("endpoint", "code"), known=tuple((e, "200") for e in API_ENDPOINTS)),
    Family("scribewatch_api_request_duration_seconds", "histogram",
           "Time from an API request's upload received to its answer (the wait for a worker "
           "included).", PIPELINE,
           "histogram_quantile(0.95, sum by (le, endpoint) "
           "(rate(scribewatch_api_request_duration_seconds_bucket[30m])))",
           labels=("endpoint",), buckets=STAGE_BUCKETS),   # an endpoint's, once it is used
    # Languages: Whisper's codes and `unknown` (101 values) by 5 sources; only the pairs that
    # occur are created (a library has a handful of languages).
    Family("scribewatch_language_decisions_total", "counter",
           "Jobs whose language was decided, by language and by where it came from (forced, "
           "tag, hint, model, vote, default).", PIPELINE,
           "sum by (language, source) (increase(scribewatch_language_decisions_total[1d]))",
           labels=("language", "source")),
    Family("scribewatch_language_decision_confidence_ratio", "histogram",
           "The probability of each language decision (1 for forced, tagged and English-only "
           "decisions; the vote's share otherwise).", PIPELINE,
           "sum(rate(scribewatch_language_decision_confidence_ratio_bucket{le=\"0.6\"}[1d])) / "
           "sum(rate(scribewatch_language_decision_confidence_ratio_count[1d]))",
           buckets=CONFIDENCE_BUCKETS),
    Family("scribewatch_subtitles_written_total", "counter",
           "Succeeded jobs' subtitles by kind: the spoken language's (transcription) and "
           "Whisper's English translation (`translate_to_english`).", PIPELINE,
           "sum by (kind) (increase(scribewatch_subtitles_written_total[1d]))",
           labels=("kind",), known=_pairs(OUTPUT_KINDS)),
    Family("scribewatch_audio_seconds_total", "counter",
           "Seconds of audio transcribed by succeeded jobs.", PIPELINE,
           "rate(scribewatch_audio_seconds_total[5m])"),
    Family("scribewatch_model_load_failures_total", "counter",
           "Attempts to load the Whisper model that failed.", PIPELINE,
           "increase(scribewatch_model_load_failures_total[15m]) > 0"),
    Family("scribewatch_suspect_transcripts_total", "counter",
           "Transcripts the hallucination guard flagged (each is re-run once with safer "
           "settings).", PIPELINE,
           "increase(scribewatch_suspect_transcripts_total[1d])"),
    Family("scribewatch_notifications_total", "counter",
           "Media-server refreshes and webhooks after jobs (rows of the job store's outbox: a "
           "video or folder refreshed, a webhook), by target and result (sent; failed: given "
           "up after its retries, the row kept with its error).", PIPELINE,
           'sum by (target) (increase(scribewatch_notifications_total{result!="sent"}[1h])) > 0',
           labels=("target", "result")),   # the configured targets' (notification_targets)
    Family("scribewatch_notification_request_duration_seconds", "histogram",
           "Time one HTTP request to a notification target took (each retry counts).", PIPELINE,
           "histogram_quantile(0.95, sum by (le, target) "
           "(rate(scribewatch_notification_request_duration_seconds_bucket[1h])))",
           labels=("target",), buckets=NOTIFY_BUCKETS),   # the configured targets' only
    Family("scribewatch_notification_queue_items", "gauge",
           "Refreshes and webhooks waiting to be sent in the job store's outbox (a shared "
           "store's figure: every node exports it alike).", PIPELINE,
           "max_over_time(scribewatch_notification_queue_items[1h])"),
    Family("scribewatch_gpu_oom_total", "counter",
           "CUDA out-of-memory errors during a model load or a job, by GPU index: the job was "
           "queued again (never failed) and that GPU's batch or workers shrunk.", PIPELINE,
           "sum by (gpu) (increase(scribewatch_gpu_oom_total[1h])) > 0",
           labels=("gpu",)),
    Family("scribewatch_job_takeovers_total", "counter",
           "Jobs this node found with an expired lease (their node killed, paused or cut off) "
           "and put back in the shared queue to be attempted again.", PIPELINE,
           "sum by (cluster) (increase(scribewatch_job_takeovers_total[1h]))"),
    Family("scribewatch_lease_renewals_failed_total", "counter",
           "Heartbeats that could not renew a running job's lease (store unreachable, or the "
           "job already another node's).", PIPELINE,
           "rate(scribewatch_lease_renewals_failed_total[5m]) > 0"),
    Family("scribewatch_model_load_seconds", "gauge",
           "How long the last successful model load took.", PIPELINE,
           "max_over_time(scribewatch_model_load_seconds[1d])"),
    Family("scribewatch_model_info", "gauge",
           "The model last loaded, its device and compute type (value 1).", PIPELINE,
           "count by (model, device, compute_type) (scribewatch_model_info)",
           labels=("model", "device", "compute_type")),
    Family("scribewatch_retry_requests_total", "counter",
           "Requests to retry a failed job from the status page, by result: queued, "
           "not_failed (already queued again, or never failed), not_found, or refused as "
           "possibly cross-site.", PIPELINE,
           'increase(scribewatch_retry_requests_total{result="refused"}[1h]) > 0',
           labels=("result",), known=_pairs(RETRY_REQUEST_RESULTS)),
    # Sonarr and Radarr webhooks: 2 apps x 6 events x 12 results at most; the pairs a working
    # setup sends from the start (so `increase()` sees the first import).
    Family("scribewatch_arr_webhooks_total", "counter",
           "Sonarr and Radarr webhooks received, by app, event (test, import, upgrade, rename, "
           "other, unknown) and result (queued, promoted, done, skipped, renamed, ignored, ok; "
           "refused: outside_libraries, missing, bad_request, unauthorized, unavailable).",
           PIPELINE,
           'sum by (app, result) (increase(scribewatch_arr_webhooks_total'
           '{result=~"outside_libraries|missing|bad_request|unauthorized|unavailable"}[1h]))',
           labels=("app", "event", "result"),
           known=tuple((a, e, r) for a in ARR_APPS for e, r in
                       (("import", "queued"), ("upgrade", "queued"), ("rename", "renamed")))),
    # -- daemon state, read at scrape time ------------------------------------------------
    Family("scribewatch_queue_jobs", "gauge",
           "Jobs waiting in the queue. With a shared store, a cluster-wide figure every node "
           "exports alike: aggregate with max, never sum.", STATE,
           "max by (cluster) (max_over_time(scribewatch_queue_jobs[1h]))"),
    Family("scribewatch_oldest_queued_job_age_seconds", "gauge",
           "Age of the oldest job waiting in the queue (0 when empty). With a shared store, a "
           "cluster-wide figure every node exports alike: aggregate with max, never sum.",
           STATE,
           "max by (cluster) (scribewatch_oldest_queued_job_age_seconds)"),
    Family("scribewatch_leases_held", "gauge",
           "Running jobs whose lease this node holds (renewed by its heartbeat).", STATE,
           "sum by (cluster) (scribewatch_leases_held)"),
    Family("scribewatch_store_up", "gauge",
           "1 while the job store answers (SQLite file or PostgreSQL server); 0 stops claims "
           "and makes /readyz 503.", STATE,
           "scribewatch_store_up == 0"),
    Family("scribewatch_jobs_running", "gauge",
           "Jobs being processed now.", STATE,
           "scribewatch_jobs_running"),
    Family("scribewatch_oldest_running_job_age_seconds", "gauge",
           "Age of the longest-running job in hand (0 when idle): the stuck-job signal.", STATE,
           "scribewatch_oldest_running_job_age_seconds > 3 * 3600"),
    Family("scribewatch_job_progress_ratio", "gauge",
           "Progress (transcribed audio / total audio) of each worker's job (0 when idle).",
           STATE,
           "max by (instance) (scribewatch_job_progress_ratio)",
           labels=("worker",)),
    Family("scribewatch_worker_info", "gauge",
           "Where each worker runs (value 1): `device` cpu or cuda:N, `gpu` its GPU index "
           "(empty on CPU), to join with scribewatch_job_progress_ratio and scribewatch_gpu_*.",
           STATE,
           "scribewatch_job_progress_ratio * on (instance, worker) group_left (gpu) "
           "scribewatch_worker_info",
           labels=("worker", "device", "gpu")),
    Family("scribewatch_gpu_workers_active", "gauge",
           "Workers that may take a job on each GPU now: the plan's count, fewer after CUDA ran "
           "out of memory, 0 while the GPU waits for memory.", STATE,
           "scribewatch_gpu_workers_active == 0", labels=("gpu",)),
    Family("scribewatch_jobs_waiting_for_vram", "gauge",
           "Queued jobs held back for lack of GPU memory (sent back by an out-of-memory error, "
           "or every queued job while no GPU has room and gpu_fallback_to_cpu is off).", STATE,
           "max_over_time(scribewatch_jobs_waiting_for_vram[30m]) > 0"),
    Family("scribewatch_last_success_timestamp_seconds", "gauge",
           "Unix time the last job succeeded (0 if none ever did).", STATE,
           "time() - (scribewatch_last_success_timestamp_seconds > 0)"),
    Family("scribewatch_model_loaded", "gauge",
           "1 while the Whisper model is in memory (0 before the first load and after an "
           "idle unload).", STATE,
           "scribewatch_model_loaded"),
    Family("scribewatch_watcher_up", "gauge",
           "1 while the folder watcher runs and every watch folder is reachable.", STATE,
           "scribewatch_watcher_up == 0"),
    Family("scribewatch_watch_dirs_unavailable", "gauge",
           "Watch folders missing or unreadable now (a dropped mount).", STATE,
           "scribewatch_watch_dirs_unavailable > 0"),
    Family("scribewatch_ready", "gauge",
           "1 when the daemon can take work (model usable, watcher up, job store writable); "
           "/readyz says why not.", STATE,
           "avg_over_time(scribewatch_ready[10m]) < 0.5"),
    Family("scribewatch_start_time_seconds", "gauge",
           "Unix time the daemon started.", STATE,
           "changes(scribewatch_start_time_seconds[1d])"),
    Family("scribewatch_build_info", "gauge",
           "Versions of scribewatch, faster-whisper, CTranslate2 and Python (value 1).", STATE,
           "count by (version) (scribewatch_build_info)",
           labels=("version", "faster_whisper", "ctranslate2", "python")),
    # -- GPU (NVML), read once a second; absent without NVML -------------------------------
    Family("scribewatch_gpu_utilization_ratio", "gauge",
           "Fraction of the last sample period the GPU was busy (all processes).", GPU,
           "avg_over_time(scribewatch_gpu_utilization_ratio[5m])", labels=GPU_LABELS),
    Family("scribewatch_gpu_memory_used_bytes", "gauge",
           "GPU memory in use (all processes).", GPU, _GPU_EXAMPLE_MEM, labels=GPU_LABELS),
    Family("scribewatch_gpu_memory_total_bytes", "gauge",
           "GPU memory installed.", GPU, _GPU_EXAMPLE_MEM, labels=GPU_LABELS),
    Family("scribewatch_gpu_process_memory_bytes", "gauge",
           "GPU memory used by this scribewatch process (0 when it holds none; NVML reports "
           "host PIDs, so 0 inside a container without the host PID namespace).", GPU,
           "scribewatch_gpu_process_memory_bytes / scribewatch_gpu_memory_total_bytes",
           labels=GPU_LABELS),
    Family("scribewatch_gpu_temperature_celsius", "gauge",
           "GPU core temperature.", GPU,
           "max_over_time(scribewatch_gpu_temperature_celsius[10m]) > 85", labels=GPU_LABELS),
    Family("scribewatch_gpu_power_watts", "gauge",
           "GPU board power draw.", GPU,
           "avg_over_time(scribewatch_gpu_power_watts[5m])", labels=GPU_LABELS),
    Family("scribewatch_gpu_sm_clock_hertz", "gauge",
           "GPU streaming-multiprocessor clock.", GPU,
           "scribewatch_gpu_sm_clock_hertz / 1e9", labels=GPU_LABELS),
    Family("scribewatch_gpu_throttle_reason_active", "gauge",
           "1 while NVML reports this reason for holding the GPU clocks down.", GPU,
           'max_over_time(scribewatch_gpu_throttle_reason_active{reason=~".*thermal.*"}[10m]) == 1',
           labels=(*GPU_LABELS, "reason")),
    Family("scribewatch_nvml_up", "gauge",
           "1 when NVML answered this scrape with at least one GPU; 0 means the GPU families "
           "are absent (no library, no driver, no GPU, or an NVML error).", GPU,
           "scribewatch_nvml_up == 0"),
    # -- host, read once a second ---------------------------------------------------------
    Family("scribewatch_host_cpu_usage_ratio", "gauge",
           "Host CPU busy fraction (all cores) over the last second.", HOST,
           "avg_over_time(scribewatch_host_cpu_usage_ratio[5m])"),
    Family("scribewatch_host_memory_used_bytes", "gauge",
           "Host memory in use.", HOST,
           "scribewatch_host_memory_used_bytes / scribewatch_host_memory_total_bytes"),
    Family("scribewatch_host_memory_available_bytes", "gauge",
           "Host memory available to new work without swapping.", HOST,
           "scribewatch_host_memory_available_bytes / scribewatch_host_memory_total_bytes < 0.1"),
    Family("scribewatch_host_memory_total_bytes", "gauge",
           "Host memory installed.", HOST,
           "scribewatch_host_memory_total_bytes"),
    Family("scribewatch_filesystem_free_bytes", "gauge",
           "Free space for unprivileged users on the filesystem of a folder role (for several "
           "folders of one role, the one with the least free space).", HOST,
           'predict_linear(scribewatch_filesystem_free_bytes{role="output"}[6h], 86400) < 0',
           labels=("role",)),
    Family("scribewatch_filesystem_size_bytes", "gauge",
           "Size of the filesystem reported in scribewatch_filesystem_free_bytes.", HOST,
           "scribewatch_filesystem_free_bytes / scribewatch_filesystem_size_bytes < 0.05",
           labels=("role",)),
    # -- this process (client_python's ProcessCollector) ----------------------------------
    Family("process_cpu_seconds_total", "counter",
           "Total user and system CPU time spent in seconds.", PROCESS,
           'rate(process_cpu_seconds_total{job="scribewatch"}[5m])'),
    Family("process_resident_memory_bytes", "gauge",
           "Resident memory size in bytes.", PROCESS,
           'max_over_time(process_resident_memory_bytes{job="scribewatch"}[1h])'),
    Family("process_virtual_memory_bytes", "gauge",
           "Virtual memory size in bytes.", PROCESS,
           'process_virtual_memory_bytes{job="scribewatch"}'),
    Family("process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.", PROCESS,
           'time() - process_start_time_seconds{job="scribewatch"}'),
    Family("process_open_fds", "gauge",
           "Number of open file descriptors.", PROCESS,
           'process_open_fds{job="scribewatch"} / process_max_fds{job="scribewatch"}'),
    Family("process_max_fds", "gauge",
           "Maximum number of open file descriptors.", PROCESS,
           'process_max_fds{job="scribewatch"}'),
)

BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}


def family(name: str) -> Family:
    return BY_NAME[name]


def create_metrics(registry: CollectorRegistry) -> dict:
    """Create the pipeline families' client objects on `registry`, known label values at 0.

    Returns {name: metric}. Also turns off client_python's `_created` series (a process-wide
    switch): in the text format Prometheus stores each as one more gauge series per counter and
    histogram child, which nothing here uses.
    """
    prometheus_client.disable_created_metrics()
    metrics = {}
    for f in FAMILIES:
        if f.source != PIPELINE:
            continue
        if f.type == "counter":
            metric = Counter(f.name, f.help, f.labels, registry=registry)
        elif f.type == "histogram":
            metric = Histogram(f.name, f.help, f.labels, registry=registry, buckets=f.buckets)
        else:
            metric = Gauge(f.name, f.help, f.labels, registry=registry)
        for values in f.known:
            metric.labels(*values)
        metrics[f.name] = metric
    return metrics
