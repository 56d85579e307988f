"""What the pipeline and its observers (the exporter) share: the one module both import.

* the stages, outcomes and reason codes: a public contract (job store, `history --json`, log
  lines, the `reason` label of metrics). Add new codes; never rename or reuse one;
* `Reporter`: the pipeline *pushes* events (a stage took t seconds, a job finished with outcome O
  and reason R). The exporter implements it with prometheus-client; the pipeline never imports
  prometheus-client and the exporter never imports faster-whisper;
* `StatusSource.snapshot()`: the observer *pulls* the daemon's current state (queue depth, the
  running jobs, watcher health) when it is asked — at scrape time — so gauges are never stale;
  `snapshot(details=True)` adds what the status page lists (next queued files, recent failures,
  today's figures), which a scrape never pays for;
* `JobControl`: what an observer may ask the daemon to do (retry a failed job: the status page);
* the web settings' formats (listen address, TLS pair, password hashes; `web_settings.py`,
  re-exported here): config checks them at start, the exporter when it is built on its own;
* `ApiQueue`: the HTTP transcription API (the exporter) hands requests to the daemon's workers,
  which take them ahead of the folder backlog (`pipeline/api/queue.py`).

The pipeline never imports the exporter, and the exporter imports nothing else of the pipeline
(tests/unit/test_imports.py).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

# The HTTP transcription API's requests and answers, and its outputs (api/contract.py, which
# imports nothing of this module: the arrow points one way).
from .api.contract import (  # noqa: F401
    API_OUTPUTS,
    API_TASKS,
    ASR_OUTPUTS,
    OPENAI_OUTPUTS,
    ApiFailed,
    ApiQueue,
    ApiRequest,
    ApiResult,
    ApiTicket,
)

# Sonarr's and Radarr's webhooks: the labels and the interface web/hooks.py calls.
from .arr.contract import (  # noqa: F401
    ARR_APPS,
    ARR_EVENTS,
    ARR_OUTCOMES,
    ArrHooks,
    HookAnswer,
)

# The GPU views (what NVML sees, what the daemon plans), shared through this module.
from .gpu.views import (  # noqa: F401
    DevicePlanView,
    GpuInventory,
    GpuMemory,
    GpuSlotView,
)

# Whisper's codes and `unknown`: the bounded values of a `language` label (pure data).
from .language.codes import LANGUAGE_LABELS  # noqa: F401

# The web settings' parsers (pure functions), shared with config through this module.
from .web_settings import parse_listen, tls_pair, validate_tokens, validate_users  # noqa: F401

# -- stages, outcomes, reasons -----------------------------------------------------------------
# The four stages, in order. The exporter labels stage metrics with these names.
STAGES = ("probe", "decode", "transcribe", "write")

OUTCOMES = ("succeeded", "failed", "skipped")
# Where a job came from: a watched folder, or an upload to the HTTP API (a label on job metrics).
SOURCES = ("folder", "api")

# Where a file's language came from (language/decision.py): a folder or `language` setting, the
# audio stream's tag, what Sonarr/Radarr said at import (`hint`), the English-only model, the
# vote over the speech, or `default_language` after an uncertain vote. The `source` label of
# scribewatch_language_decisions_total.
LANGUAGE_SOURCES = ("forced", "tag", "hint", "model", "vote", "default")

# What a job writes: subtitles in the spoken language, and Whisper's English translation
# (`translate_to_english`). The `kind` label of scribewatch_subtitles_written_total.
OUTPUT_KINDS = ("transcription", "translation")


@dataclasses.dataclass(frozen=True)
class Reason:
    code: str
    stage: str | None  # the stage a failure is reported under; None for a skip (no stage label)
    retried: bool     # transient: retried with backoff up to `max_attempts`
    when: str         # one line for people (the README's table)


FAILURES: tuple[Reason, ...] = (
    Reason("empty_file", "probe", False, "the file has 0 bytes"),
    Reason("not_media", "probe", False,
           "the content is no known media format (a text file renamed `.mp4`)"),
    Reason("corrupt_container", "probe", False, "it starts like media but cannot be opened or "
           "its streams read (a truncated MP4)"),
    Reason("no_audio_stream", "probe", False, "a video without sound"),
    Reason("unreadable", "probe", True, "permission denied or an I/O error reading the source"),
    Reason("vanished", "probe", False, "deleted or moved away before or during the job (while "
           "its watch folder is still there)"),
    Reason("decode_error", "decode", False, "the container opens but its audio does not decode: "
           "an audio stream with no codec (an overwritten header, or a codec FFmpeg lacks), an "
           "impossible sample rate, most packets damaged, over 24 h of audio. A few damaged "
           "packets are skipped and the rest kept"),
    Reason("timestamp_jump", "decode", False, "the audio's timestamps leap over 30 minutes "
           "ahead (or it starts that late): a broken mux, not a dropout. Shorter holes become "
           "silence, so that cues stay on the player's clock"),
    Reason("model_load_failed", "transcribe", True,
           "the model could not be (re)loaded for this job"),
    Reason("transcribe_error", "transcribe", True, "faster-whisper failed (e.g. out of memory)"),
    Reason("output_not_writable", "write", True, "the output folder is read-only or not ours"),
    Reason("disk_full", "write", True, "no space left (ENOSPC/EDQUOT) while writing subtitles"),
    Reason("write_error", "write", True, "any other error while writing subtitles"),
    Reason("crashed_repeatedly", "transcribe", False, "the daemon died `max_attempts` times in "
           "a row at the same point of this job (stage and progress), with no progress between"),
    Reason("internal_error", "transcribe", True, "a bug in scribewatch, never a damaged file: "
           "the message and a traceback are in the log"),
)

SKIPS: tuple[Reason, ...] = (
    Reason("subtitle_exists", None, False, "a subtitle for the target language is already "
           "beside the file or in the output folder (`Movie.en.srt`, `.eng.srt`, …)"),
    Reason("embedded_subtitle", None, False,
           "the container carries a subtitle stream in the target language"),
    Reason("no_speech", None, False, "VAD found no speech (silence, music only, an audio "
           "stream with no samples): an empty track is useless, so none is written"),
    Reason("language_uncertain", None, False, "the language vote across the file is below "
           "`language_min_confidence` (a mixed or unclear file) and "
           "`language_uncertain_action` is `skip`"),
    Reason("language_mismatch", None, False, "the model transcribes English only (`*.en`) and "
           "the audio track's tag (or a forced language) says another language"),
    Reason("same_stem", None, False, "another media file in the folder has the same name "
           "without extension (`Movie.mkv` beside `Movie.mp4`): one subtitle serves both, and "
           "that one is transcribed (README, \"Same name, two containers\")"),
)

# Why a job waits without failing: the GPU has no room for it now (free VRAM short before a
# load, or CUDA ran out of memory mid-job). It stays queued and is retried; never a failure.
WAITING_FOR_VRAM = "waiting_for_vram"
WAIT_REASONS: tuple[str, ...] = (WAITING_FOR_VRAM,)

# reason -> (stage it is reported under, transient?)
FAILURE_REASONS: dict[str, tuple[str, bool]] = {r.code: (r.stage, r.retried) for r in FAILURES}
SKIP_REASONS: tuple[str, ...] = tuple(r.code for r in SKIPS)

# Every (stage, reason) pair a failure can be reported with: the exporter pre-initialises them.
# `vanished` and `unreadable` can happen in every stage that touches the source file;
# `internal_error` and `crashed_repeatedly` in any stage.
FAILURE_LABELS: tuple[tuple[str, str], ...] = tuple(
    sorted(
        {(stage, reason) for reason, (stage, _) in FAILURE_REASONS.items()}
        | {("decode", "vanished"), ("decode", "unreadable"), ("write", "vanished")}
        | {(s, r) for s in STAGES for r in ("internal_error", "crashed_repeatedly")}
    )
)


# Requests refused before any job runs; the HTTP status is the `code` label, these the log's and
# the error body's name for it. Jobs that run and fail carry a FAILURES code instead.
API_REJECTIONS: tuple[Reason, ...] = (
    Reason("bad_request", None, False, "a missing upload field or a bad parameter (400)"),
    Reason("unauthorized", None, False, "no valid basic-auth user or bearer token (401)"),
    Reason("length_required", None, False, "an upload without Content-Length (411)"),
    Reason("upload_too_large", None, False, "Content-Length over `api_max_upload_bytes`, "
           "refused before the body is read (413)"),
    Reason("busy", None, False, "no worker took the request within `api_max_wait_seconds` "
           "(503, with Retry-After)"),
)

# Notifications after a job (pipeline/notify/, rows of the store's outbox): who was told, and
# how that went. `failed`: given up after its retries (or refused for good, e.g. a bad token);
# the row keeps its error. None is dropped: what waits is in the store.
NOTIFY_TARGETS = ("jellyfin", "emby", "plex", "webhook")
NOTIFY_RESULTS = ("sent", "failed")


# -- events pushed, state pulled ---------------------------------------------------------------
class Reporter(Protocol):
    def stage_observed(self, stage: str, seconds: float) -> None:
        """One stage (`probe`, `decode`, `transcribe`, `write`) of one job ran for `seconds`."""

    def job_started(self, queue_wait_seconds: float) -> None:
        """A worker picked up a job that had waited `queue_wait_seconds` since detection."""

    def job_finished(
        self,
        outcome: str,
        *,
        reason: str | None = None,
        stage: str | None = None,
        job_seconds: float | None = None,
        audio_seconds: float = 0.0,
        processing_seconds: float | None = None,
        source: str = "folder",
    ) -> None:
        """A job ended. outcome in OUTCOMES; reason/stage set for failed (and reason for skipped);
        `source` in SOURCES.

        job_seconds: detected → outputs written. processing_seconds: the time spent running the
        stages (for the real-time factor = processing_seconds / audio_seconds).
        """

    def job_retried(self, stage: str, reason: str) -> None:
        """A transient failure; the job goes back to the queue for another attempt."""

    def model_loaded(self, name: str, device: str, compute_type: str, seconds: float) -> None: ...

    def model_unloaded(self) -> None: ...

    def model_load_failed(self) -> None: ...

    def suspect_transcript(self) -> None:
        """The hallucination guard flagged a result (it is re-run once with safer settings)."""

    def notification_targets(self, targets: tuple[str, ...]) -> None:
        """The configured notification targets (NOTIFY_TARGETS), at start."""

    def notification_finished(self, target: str, result: str) -> None:
        """A media-server refresh or webhook (target in NOTIFY_TARGETS) ended: NOTIFY_RESULTS."""

    def notification_request(self, target: str, seconds: float) -> None:
        """One HTTP request to a notification target took `seconds` (retries each count)."""

    def notification_queue(self, length: int) -> None:
        """Notification items waiting to be sent now."""

    def language_decided(self, language: str, source: str, probability: float) -> None:
        """A job's language was decided: a code of LANGUAGE_LABELS, a LANGUAGE_SOURCES entry,
        and its probability (0..1)."""

    def subtitles_written(self, kind: str) -> None:
        """A job wrote its subtitles of `kind` (OUTPUT_KINDS), whatever the number of formats."""

    def languages_expected(self, pairs: tuple[tuple[str, str], ...]) -> None:
        """The (language, source) pairs the settings will surely decide (at start)."""

    def gpu_out_of_memory(self, gpu: int) -> None:
        """CUDA ran out of memory on GPU `gpu` (its NVML index) during a job: the job was
        queued again and the GPU's plan shrunk."""

    def lease_renewal_failed(self) -> None:
        """A heartbeat could not renew a running job's lease (store unreachable, or lost)."""

    def job_taken_over(self) -> None:
        """This node took over a job whose lease another node (or a dead self) let expire."""


class NullReporter:
    """A Reporter that records nothing (one-shot CLI, unit tests of the pipeline)."""

    def stage_observed(self, stage, seconds): pass
    def job_started(self, queue_wait_seconds): pass
    def job_finished(self, outcome, **kw): pass
    def job_retried(self, stage, reason): pass
    def model_loaded(self, name, device, compute_type, seconds): pass
    def model_unloaded(self): pass
    def model_load_failed(self): pass
    def suspect_transcript(self): pass
    def notification_targets(self, targets): pass
    def notification_finished(self, target, result): pass
    def notification_request(self, target, seconds): pass
    def notification_queue(self, length): pass
    def language_decided(self, language, source, probability): pass
    def subtitles_written(self, kind): pass
    def languages_expected(self, pairs): pass
    def gpu_out_of_memory(self, gpu): pass
    def lease_renewal_failed(self): pass
    def job_taken_over(self): pass


@dataclasses.dataclass(frozen=True)
class RunningJob:
    job_id: int
    worker: str            # "0", "1", … — bounded by the `workers` setting
    started_at: float      # unix time
    progress: float        # 0..1, transcribed audio / total audio
    audio_seconds: float | None
    # The file (full path) and the watch folder it is in: for people (/api/status, `scribewatch
    # status`), behind the same auth as /metrics. Never a metric label.
    path: str | None = None
    watch_dir: str | None = None
    stage: str | None = None   # probe / decode / transcribe / write: the one running now
    gpu: int | None = None     # the GPU (NVML index) its worker runs on; None: CPU


# For people (the status page, /api/status), behind the same auth as /metrics: paths and error
# messages are fine here, never in a metric label.
@dataclasses.dataclass(frozen=True)
class QueuedJob:
    job_id: int
    path: str
    watch_dir: str
    detected_at: float                     # unix time
    retry_at: float | None = None          # a transient failure's backoff: not before this time


@dataclasses.dataclass(frozen=True)
class FailedJob:
    job_id: int
    path: str
    watch_dir: str
    reason: str | None                     # a FAILURES code
    stage: str | None
    message: str | None
    finished_at: float | None


@dataclasses.dataclass(frozen=True)
class DayFigures:
    """Jobs finished since local midnight on the daemon's host."""
    since: float                           # unix time of that midnight
    counts: dict                           # outcome -> jobs finished since then
    audio_seconds: float                   # transcribed by the succeeded ones
    processing_seconds: float              # their stages' time (claimed -> finished)

    @property
    def realtime_factor(self) -> float | None:
        """Processing seconds per audio second, weighted by audio (long files count more, as
        in the `ratio_rate1d` recording rule); None before the first transcription."""
        return self.processing_seconds / self.audio_seconds if self.audio_seconds > 0 else None


@dataclasses.dataclass(frozen=True)
class StatusSnapshot:
    version: str
    started_at: float                      # daemon start, unix time
    # a short name (`tiny.en`, or a folder's base name) — never a path
    model_name: str
    device: str                            # resolved: cpu / cuda
    compute_type: str                      # resolved: int8 / float16 / …
    model_loaded: bool                     # in memory now
    model_ready: bool                      # loaded, or unloaded after idle and known to load
    model_error: str | None                # why the last load failed
    watcher_up: bool                       # observer thread alive and every watch dir reachable
    watch_dirs_unavailable: int            # watch roots missing/unreadable (a dropped mount)
    store_writable: bool
    queue_jobs: int
    running: tuple[RunningJob, ...]
    workers: int
    counts: dict                           # outcome -> jobs ever, from the store
    last_success_at: float | None
    dirs: dict                             # role (`watch`, `output`, `store`) -> list of folders
    startup_scan_seconds: float | None = None   # None while the startup scan runs
    startup_scan_files: int | None = None       # media files it found (done or not yet queued)
    api_waiting: int = 0                        # HTTP API requests waiting for a worker
    api_running: int = 0                        # … and being transcribed now
    # Only with snapshot(details=True):
    queue_next: tuple[QueuedJob, ...] = ()      # the next jobs a worker will claim, in order
    recent_failures: tuple[FailedJob, ...] = ()  # failed jobs (still failed), newest first
    today: DayFigures | None = None
    plan: DevicePlanView | None = None          # None: not planned (a daemon built without)
    waiting_for_vram: int = 0                   # queued jobs held back for lack of GPU memory
    node: str = ""                         # this daemon's node name in the store
    store_kind: str = "sqlite"             # sqlite | postgresql
    store_up: bool = True                  # the store answered its last health check
    store_error: str | None = None         # why not
    leases_held: int = 0                   # running jobs whose lease this node holds
    oldest_queued_at: float | None = None  # the queue's oldest job (shared: cluster-wide)

    @property
    def ready(self) -> bool:
        return self.model_ready and self.watcher_up and self.store_writable and self.store_up

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        if not self.model_ready:
            reasons.append(f"model not loaded: {self.model_error or 'loading'}")
        if not self.watcher_up:
            reasons.append(
                f"watcher down ({self.watch_dirs_unavailable} watch folder(s) unavailable)"
                if self.watch_dirs_unavailable else "watcher down"
            )
        if not self.store_up:
            reasons.append(f"job store unreachable: {self.store_error or 'no answer'}")
        elif not self.store_writable:
            reasons.append("job store not writable")
        return reasons


class StatusSource(Protocol):
    def snapshot(self, details: bool = False) -> StatusSnapshot: ...


# What JobControl.retry_failed_job answers (the exporter counts them, a bounded label).
RETRY_RESULTS = ("queued", "not_failed", "not_found")


class JobControl(Protocol):
    def retry_failed_job(self, job_id: int) -> str:
        """Queue a failed job again with fresh attempts (its cause is fixed): one of
        RETRY_RESULTS — `not_failed` when the job exists but is not failed now."""
