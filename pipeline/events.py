"""The two narrow interfaces between the pipeline and whatever observes it.

* `Reporter`: the pipeline *pushes* events (a stage took t seconds, a job finished with outcome
  O and reason R). The exporter implements it with prometheus-client; the pipeline never imports
  prometheus-client and the exporter never imports faster-whisper.
* `StatusSource.snapshot()`: the observer *pulls* the daemon's current state (queue depth, the
  running jobs, watcher health) when it is asked — at scrape time — so gauges are never stale.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol


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
    model_name: str                        # a short name (`tiny.en`, or a folder's base name) — never a path
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

    @property
    def ready(self) -> bool:
        return self.model_ready and self.watcher_up and self.store_writable

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        if not self.model_ready:
            reasons.append(f"model not loaded: {self.model_error or 'loading'}")
        if not self.watcher_up:
            reasons.append(
                f"watcher down ({self.watch_dirs_unavailable} watch folder(s) unavailable)"
                if self.watch_dirs_unavailable else "watcher down"
            )
        if not self.store_writable:
            reasons.append("job store not writable")
        return reasons


class StatusSource(Protocol):
    def snapshot(self) -> StatusSnapshot: ...
