"""Prefetch: the next queued file's probe, decode and VAD while the current file is transcribed,
so the model does not wait for the disk, FFmpeg or the VAD between two files.

* Lookahead of one file, in memory only. The job stays `queued` in the store: nothing here
  writes to it, so a crash (kill -9) during or after a prefetch loses nothing and duplicates
  nothing — the job is simply decoded again by whoever claims it. A worker claims it as before
  (only when it is free) and takes the prefetched result only if it is for that job and the
  file's size and mtime are unchanged.
* Memory-bounded: decoded audio is 16 kHz mono float32, 64 KB per second (a 2-hour film is
  ~460 MB). Only files whose probed duration is at most `prefetch_max_audio_seconds` are
  decoded ahead (30 min = ~115 MB by default, beside the current file's own audio); a longer
  one is decoded by its worker as before. 0 turns prefetching off.
* VAD: Silero runs here too (`speech.detect`: faster-whisper's default speech chunks, the very
  ones it computes inside `transcribe`, and the precise speech regions cues are timed on), and
  the transcription then runs on the collected speech with the timestamps restored the way
  faster-whisper does (stages.transcribe) — the same transcript. Files that will be batched
  are VAD-ed here too, for their regions: the batched pipeline still runs its own VAD.
* It runs only when every worker that may take a job is busy (the daemon pokes it when one
  starts transcribing): an idle worker would take the file itself.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import stages
from ..job import Job
from ..media.tracks import chosen_index
from ..speech import Speech, detect

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Prefetched:
    job_id: int
    path: str
    size: int
    mtime_ns: int
    probe: stages.ProbeResult
    audio: np.ndarray
    speech: Speech | None                          # None: VAD left to the transcription
    spans: dict                                    # stage -> (start, end), unix time
    track_index: int | None = None                 # the audio stream decoded (None: default)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class Prefetcher:
    def __init__(self, next_job: Callable[[], Job | None], *, max_audio_seconds: float,
                 vad_wanted: Callable[[float], bool],
                 choose_track: Callable[[stages.ProbeResult], int | None] | None = None):
        self._next_job = next_job
        # The audio track its worker will choose (tracks.choose_audio_track with the same
        # settings); the runner takes the audio only when it decodes that same track.
        self._choose_track = choose_track or (lambda probe: chosen_index(probe.audio_tracks))
        self.max_audio_seconds = max_audio_seconds
        self._vad_wanted = vad_wanted
        self._lock = threading.Lock()
        self._cached: Prefetched | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.prefetched = 0   # files prepared ahead (diagnostics, tests)

    @property
    def enabled(self) -> bool:
        return self.max_audio_seconds > 0

    def start(self) -> None:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="prefetch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def poke(self) -> None:
        """A worker started transcribing and none is free: prepare the next file."""
        if self.enabled:
            self._wake.set()

    def take(self, job: Job) -> Prefetched | None:
        """The prefetched result for this claimed job, if it is for it and the file is
        unchanged; the cache is emptied either way (its memory goes with it)."""
        with self._lock:
            cached, self._cached = self._cached, None
        if cached is None or cached.job_id != job.id or cached.path != job.path:
            return None
        if _stat(job.path) != (cached.size, cached.mtime_ns):
            return None   # rewritten since: read it again
        return cached

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                job = self._next_job()
                with self._lock:
                    if job is None or (self._cached and self._cached.job_id == job.id):
                        continue
                    self._cached = None   # a stale one: free its memory before decoding
                prepared = self._prepare(job)
                with self._lock:
                    self._cached = prepared
            except Exception:   # never let a bug kill the thread; the worker reads the file
                log.exception("prefetch failed")

    def _prepare(self, job: Job) -> Prefetched | None:
        """Probe, decode and VAD `job`'s file; None when it is not worth keeping (too long,
        unreadable, damaged: its worker then meets the same problem and reports it)."""
        before = _stat(job.path)
        if before is None:
            return None
        path = Path(job.path)
        t0 = time.time()
        try:
            probe = stages.probe(path)
            if probe.duration is None or probe.duration > self.max_audio_seconds:
                return None
            t1 = time.time()
            track = self._choose_track(probe)
            audio = stages.decode(path, track)
            duration = len(audio) / stages.SAMPLE_RATE
            speech = detect(audio) if self._vad_wanted(duration) else None
        except Exception as e:   # the worker reads it again and reports it properly
            log.debug("prefetch of %s: %s: %s", path, type(e).__name__, e)
            return None
        t2 = time.time()
        if _stat(job.path) != before:
            return None
        self.prefetched += 1
        log.debug("prefetched %s (%.1fs of audio) in %.2fs", path, duration, t2 - t0)
        return Prefetched(job.id, job.path, before[0], before[1], probe, audio, speech,
                          {"probe": (t0, t1), "decode": (t1, t2)}, track)
