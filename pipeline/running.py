"""A job a worker is running: its state, and what the daemon does around each stage (the
runner's `JobHooks`): the store's stage, progress checkpoints and language, the reporter's stage
timings. `view()` makes the observers' `RunningJob` from it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import TYPE_CHECKING

from .contract import RunningJob
from .job import Job
from .runner import JobHooks
from .stages import Cancelled

if TYPE_CHECKING:
    from .daemon import Daemon
    from .devices import Slot

# Transcription progress is checkpointed in the store at fixed positions in the audio, not on a
# timer: a file that kills the daemon at one spot then dies at the same recorded checkpoint every
# time, which is what tells it apart from a kill from outside. Whisper works in 30 s windows, so
# finer is pointless; at most ~100 per pass keeps a long film's writes negligible.
CHECKPOINT_MIN_AUDIO_SECONDS = 30.0
CHECKPOINTS_PER_PASS = 100


@dataclasses.dataclass(eq=False)
class Running(JobHooks):
    """A job a worker is running: its mutable state, and what the daemon does around each stage
    (the runner's hooks). Its identity is the claimed `Job`; `view()` is the one place the
    observers' `RunningJob` is made from it."""
    job: Job
    worker: str
    daemon: "Daemon"
    slot: "Slot"
    progress: float = 0.0
    audio_seconds: float | None = None
    stage_seconds: dict = dataclasses.field(default_factory=dict)
    stage_spans: dict = dataclasses.field(default_factory=dict)   # stage -> [start, end], unix
    cancel: bool = False
    # Whoever settles the job first (the worker finishing it, or shutdown giving up on it and
    # re-queueing it) writes its final state; the other one then leaves it alone.
    settled: bool = False
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    recorded: float = 0.0     # the last checkpoint written to the store

    def settle(self, action) -> bool:
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            action()
            return True

    def view(self) -> RunningJob:
        return RunningJob(self.job.id, self.worker, self.job.started_at, self.progress,
                          self.audio_seconds, path=self.job.path, watch_dir=self.job.root,
                          stage=self.stage, gpu=self.slot.index)

    # -- hooks -----------------------------------------------------------------------------
    def timed(self, stage: str, fn, *args):
        if self.settled:
            raise Cancelled()   # shutdown already gave up on this job
        self.stage = stage
        store, reporter = self.daemon.store, self.daemon.reporter
        store.set_stage(self.job.id, stage, self.stage_seconds)
        if stage == "transcribe":
            self.daemon.transcribing()
        t0, wall = time.perf_counter(), time.time()
        try:
            return fn(*args)
        finally:
            dt = time.perf_counter() - t0
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + dt
            self.stage_spans[stage] = [wall, wall + dt]
            reporter.stage_observed(stage, dt)

    def done_before(self, stage: str, result, start: float, end: float):
        """A stage the prefetch ran before the claim: recorded as if timed here."""
        if self.settled:
            raise Cancelled()
        self.stage = stage
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + (end - start)
        self.stage_spans[stage] = [start, end]
        self.daemon.store.set_stage(self.job.id, stage, self.stage_seconds)
        self.daemon.reporter.stage_observed(stage, end - start)
        return result

    def probed(self, probe) -> None:
        self.daemon.store.update(self.job.id, audio_seconds=probe.duration)

    def decoded(self, audio_seconds: float) -> None:
        self.audio_seconds = audio_seconds
        self.daemon.store.update(self.job.id, audio_seconds=audio_seconds)

    def transcribed(self, transcript) -> None:
        model = self.slot.manager
        self.daemon.store.update(self.job.id, model=model.name, device=model.where,
                                 compute_type=model.compute_type,
                                 suspect=list(transcript.suspect) or None)

    def language_decided(self, choice) -> None:
        self.daemon.store.update(self.job.id, language=choice.language,
                                 language_source=choice.source,
                                 language_probability=choice.probability)
        self.daemon.reporter.language_decided(choice.language, choice.source, choice.probability)

    def progressed(self, ratio: float, passes_before: int) -> None:
        self.progress = ratio
        duration = self.audio_seconds or 0.0
        step = max(CHECKPOINT_MIN_AUDIO_SECONDS, duration / CHECKPOINTS_PER_PASS)
        # Seconds of audio transcribed in this stage (a re-run counts on from the first).
        line = (passes_before * duration + ratio * duration) // step * step
        if line > self.recorded:
            self.recorded = line
            self.daemon.store.set_checkpoint(self.job.id, line)

    def rerun(self, findings) -> None:
        self.daemon.reporter.suspect_transcript()
        self.progress = 0.0

    def should_stop(self) -> bool:
        return self.cancel
