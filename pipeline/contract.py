"""What the pipeline and its observers (the exporter) share: the one module both import.

* the stages, outcomes and reason codes: a public contract (job store, `history --json`, log
  lines, the `reason` label of metrics). Add new codes; never rename or reuse one;
* `Reporter`: the pipeline *pushes* events (a stage took t seconds, a job finished with outcome O
  and reason R). The exporter implements it with prometheus-client; the pipeline never imports
  prometheus-client and the exporter never imports faster-whisper;
* `StatusSource.snapshot()`: the observer *pulls* the daemon's current state (queue depth, the
  running jobs, watcher health) when it is asked — at scrape time — so gauges are never stale;
* the web settings' formats (listen address, TLS pair, password hashes): config checks them at
  start and the exporter when it is built on its own, with these same functions.

The pipeline never imports the exporter, and the exporter imports nothing else of the pipeline
(tests/unit/test_imports.py).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Protocol

# -- stages, outcomes, reasons -----------------------------------------------------------------
# The four stages, in order. The exporter labels stage metrics with these names.
STAGES = ("probe", "decode", "transcribe", "write")

OUTCOMES = ("succeeded", "failed", "skipped")


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
)

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
    ) -> None:
        """A job ended. outcome in OUTCOMES; reason/stage set for failed (and reason for skipped).

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
    def snapshot(self) -> StatusSnapshot: ...


# -- web settings: one parser each, for config (at start) and the exporter (when built) --------
_BCRYPT = re.compile(r"^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$")
_SHA256 = re.compile(r"^sha256:[0-9a-fA-F]{64}$")


def parse_listen(listen: str) -> tuple[str, int]:
    """'HOST:PORT', '[IPv6]:PORT' → (host, port); port 0 = any free one. Raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"listen {listen!r}: put an IPv6 address in brackets, e.g. [::]:9847")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen {listen!r}: expected HOST:PORT, e.g. 0.0.0.0:9847 or [::]:9847")
    return host, int(port)


def tls_pair(cert_file: str | None, key_file: str | None) -> tuple[str, str] | None:
    """(cert, key), or None for plain HTTP. Raises ValueError when only one is set."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
    return (cert_file, key_file) if cert_file else None


def validate_users(users: Mapping[str, str]) -> dict[str, str]:
    """The basic-auth users, checked: every value must be a bcrypt or sha256 hash, so a config
    can never hold a plain password. Raises ValueError."""
    checked = {}
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise ValueError(f"basic_auth_users: bad user name {user!r} (non-empty, no ':')")
        if not isinstance(hashed, str) or not (_BCRYPT.match(hashed) or _SHA256.match(hashed)):
            raise ValueError(
                f"basic_auth_users: user {user!r}: the value must be a bcrypt hash ($2b$…, "
                "e.g. from `htpasswd -nBC 12 USER`) or sha256:<64 hex digits>, never a plain "
                "password")
        checked[user] = hashed
    return checked
