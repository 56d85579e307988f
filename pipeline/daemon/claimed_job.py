"""A job a worker claimed (`Running`): its state, its lease, and what is done around each stage
(the runner's `JobHooks`): the store's stage, progress checkpoints and language, the reporter's
stage timings. Every store write about it carries its lease token, so once another node has
taken the job over, this one's writes change nothing. `view()` makes the observers'
`RunningJob` from it. `ClaimedJobs`: the jobs this node's workers hold.

A `Running` is handed what it writes to (the store, the reporter) and its lease's timings; it
does not know the daemon.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable

from ..contract import Reporter, RunningJob
from ..job import Job
from ..stages import Cancelled
from ..store import JobStore, StoreUnavailable
from .devices import Slot
from .runner import JobHooks

log = logging.getLogger(__name__)

# Transcription progress is checkpointed in the store at fixed positions in the audio, not on a
# timer: a file that kills the daemon at one spot then dies at the same recorded checkpoint every
# time, which is what tells it apart from a kill from outside. Whisper works in 30 s windows, so
# finer is pointless; at most ~100 per pass keeps a long film's writes negligible.
CHECKPOINT_MIN_AUDIO_SECONDS = 30.0
CHECKPOINTS_PER_PASS = 100


class LeaseLost(Cancelled):
    """Another node has this job now (our lease ran out): drop the work, write nothing."""


@dataclasses.dataclass(eq=False)
class Running(JobHooks):
    """Its identity is the claimed `Job` (with the node's local path); `view()` is the one
    place the observers' `RunningJob` is made from it."""
    job: Job
    worker: str
    slot: Slot
    store: JobStore
    reporter: Reporter
    lease_seconds: float
    heartbeat_seconds: float            # before_commit's margin while the store is away
    on_transcribing: Callable[[], None] = lambda: None   # the prefetch's cue
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
    # The lease: when it was last renewed (monotonic), and whether it is known to be lost.
    renewed_at: float = dataclasses.field(default_factory=time.monotonic)
    lost: bool = False
    own_outputs: list = dataclasses.field(default_factory=list)   # recorded by writing()

    @property
    def token(self) -> str | None:
        return self.job.lease_token

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

    # -- the lease -------------------------------------------------------------------------
    def lease_left(self) -> float:
        """Seconds of lease left by this node's own count (the store is not asked)."""
        return self.lease_seconds - (time.monotonic() - self.renewed_at)

    def lose(self, why: str) -> None:
        if not self.lost:
            self.lost = True
            self.cancel = True
            log.warning("job %d (%s): lease lost (%s); another node may take it over, this "
                        "node writes nothing for it", self.job.id, self.job.path, why)

    def _write(self, method, *args, **kwargs) -> None:
        """A progress write: fenced by the token; the job goes on when the store is away."""
        try:
            method(self.job.id, *args, token=self.token, **kwargs)
        except StoreUnavailable as e:
            log.debug("job %d: progress not recorded: %s", self.job.id, e)

    # -- hooks -----------------------------------------------------------------------------
    def timed(self, stage: str, fn, *args):
        if self.settled or self.lost:
            raise LeaseLost() if self.lost else Cancelled()
        self.stage = stage
        self._write(self.store.set_stage, stage, self.stage_seconds)
        if stage == "transcribe":
            self.on_transcribing()
        t0, wall = time.perf_counter(), time.time()
        try:
            return fn(*args)
        finally:
            dt = time.perf_counter() - t0
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + dt
            self.stage_spans[stage] = [wall, wall + dt]
            self.reporter.stage_observed(stage, dt)

    def done_before(self, stage: str, result, start: float, end: float):
        """A stage the prefetch ran before the claim: recorded as if timed here."""
        if self.settled or self.lost:
            raise LeaseLost() if self.lost else Cancelled()
        self.stage = stage
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + (end - start)
        self.stage_spans[stage] = [start, end]
        self._write(self.store.set_stage, stage, self.stage_seconds)
        self.reporter.stage_observed(stage, end - start)
        return result

    def probed(self, probe) -> None:
        self._write(self.store.update, audio_seconds=probe.duration)

    def decoded(self, audio_seconds: float) -> None:
        self.audio_seconds = audio_seconds
        self._write(self.store.update, audio_seconds=audio_seconds)

    def transcribed(self, transcript) -> None:
        model = self.slot.manager
        self._write(self.store.update, model=model.name, device=model.where,
                    compute_type=model.compute_type, suspect=list(transcript.suspect) or None)

    def language_decided(self, choice) -> None:
        self._write(self.store.update, language=choice.language,
                    language_source=choice.source, language_probability=choice.probability)
        self.reporter.language_decided(choice.language, choice.source, choice.probability)

    def progressed(self, ratio: float, passes_before: int) -> None:
        self.progress = ratio
        duration = self.audio_seconds or 0.0
        step = max(CHECKPOINT_MIN_AUDIO_SECONDS, duration / CHECKPOINTS_PER_PASS)
        # Seconds of audio transcribed in this stage (a re-run counts on from the first).
        line = (passes_before * duration + ratio * duration) // step * step
        if line > self.recorded:
            self.recorded = line
            self._write(self.store.set_checkpoint, line)

    def rerun(self, findings) -> None:
        self.reporter.suspect_transcript()
        self.progress = 0.0

    def should_stop(self) -> bool:
        return self.cancel

    def writing(self, outputs: list[str]) -> None:
        """Recorded before the first rename: a death between the rename and the job's end
        re-runs the job, which must then replace these (and end `succeeded`, which refreshes
        the media servers), not skip the file for a subtitle that is its own."""
        known = list(dict.fromkeys([*self.job.outputs, *self.own_outputs, *outputs]))
        self.own_outputs = known
        self._write(self.store.update, outputs=known)

    def before_commit(self) -> None:
        """Just before an output is renamed into place: is the job still ours? A node that
        lost its lease (paused, cut off) must not replace what the new owner wrote. With the
        store away, our own count of the lease decides, with a heartbeat's margin."""
        if self.lost:
            raise LeaseLost()
        try:
            held = self.store.holds(self.job.id, self.token)
        except StoreUnavailable:
            held = self.lease_left() > self.heartbeat_seconds
        if not held:
            self.lose("checked before writing the subtitle")
            raise LeaseLost()


class ClaimedJobs:
    """The jobs this node's workers hold, one per worker: what the heartbeat renews, shutdown
    waits for, the prefetch counts and the status shows."""

    def __init__(self):
        self._by_worker: dict[str, Running] = {}

    def add(self, running: Running) -> None:
        self._by_worker[running.worker] = running

    def remove(self, worker: str) -> None:
        self._by_worker.pop(worker, None)

    def __len__(self) -> int:
        return len(self._by_worker)

    def all(self) -> list[Running]:
        """A copy: workers add and remove jobs meanwhile."""
        return list(self._by_worker.values())

    def views(self) -> tuple[RunningJob, ...]:
        return tuple(r.view() for r in self.all())

    def leases_held(self) -> int:
        return sum(1 for r in self.all() if not r.lost)
