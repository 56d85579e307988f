"""The daemon's side of the prefetch (`prefetch.py`'s `Prefetcher` does the work): when to
prepare the next file, which job, which audio track, whether to VAD it ahead."""

from __future__ import annotations

from typing import Callable

from ..config import Config
from ..job import Job
from ..libraries import Libraries
from ..media.tracks import chosen_index
from ..store import JobStore
from .claimed_job import ClaimedJobs
from .devices import DevicePool
from .leases import StoreHealth
from .prefetch import Prefetcher


class PrefetchPolicy:
    def __init__(self, cfg: Config, store: JobStore, health: StoreHealth, jobs: ClaimedJobs,
                 devices: DevicePool, libraries: Libraries, *,
                 available_libraries: Callable[[], list[str]], suspects: Callable[[], bool]):
        self.cfg, self.store, self.health, self.jobs = cfg, store, health, jobs
        self.devices, self.libraries = devices, libraries
        self._available_libraries = available_libraries   # the names whose roots are mounted
        self._suspects = suspects                          # may suspect jobs be tried now?
        self.prefetcher = Prefetcher(
            self.peek_next, max_audio_seconds=cfg.prefetch_max_audio_seconds,
            vad_wanted=self.vad_ahead, choose_track=self.track_ahead)

    def transcribing(self) -> None:
        """A worker started transcribing (or a file was queued): with no worker left free,
        prepare the next file."""
        if self.jobs and len(self.jobs) >= self.devices.claimable():
            self.prefetcher.poke()

    def peek_next(self) -> Job | None:
        """The job a free worker would claim next, at this node's path (the prefetch's)."""
        if not self.health.up:
            return None
        job = self.store.peek_next(self._available_libraries(), suspects=self._suspects())
        return job and self.libraries.localize(job)

    def track_ahead(self, probe) -> int | None:
        """The audio track a worker will decode (the same choice as the runner's)."""
        return chosen_index(probe.audio_tracks, tuple(self.cfg.preferred_audio_languages))

    def vad_ahead(self, audio_seconds: float) -> bool:
        """VAD a prefetched file ahead whenever the VAD is on: a file that will be batched needs
        its speech regions for the cues too (the batched pipeline's own VAD is internal)."""
        return self.cfg.vad
