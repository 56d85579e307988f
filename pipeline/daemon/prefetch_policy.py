"""The daemon's side of the prefetch (`prefetch.py`'s `Prefetcher` does the work)."""

from __future__ import annotations

from ..job import Job
from ..tracks import chosen_index


class Prefetching:
    """The daemon's side of the prefetch (a mixin of `Daemon`: its store, devices, libraries,
    settings and running jobs): when to prefetch, which job, which track, whether to VAD."""

    def transcribing(self) -> None:
        """A worker started transcribing (or a file was queued): with no worker left free,
        prepare the next file."""
        if self._running and len(self._running) >= self.devices.claimable():
            self.prefetcher.poke()

    def _peek_next(self) -> Job | None:
        """The job a free worker would claim next, at this node's path (the prefetch's)."""
        if self._store_error is not None:
            return None
        job = self.store.peek_next(self.libraries.names_of(self.watcher.available_roots),
                                   suspects=self._up_long_enough())
        return job and self.libraries.localize(job)

    def _track_ahead(self, probe) -> int | None:
        """The audio track a worker will decode (the same choice as the runner's)."""
        return chosen_index(probe.audio_tracks, tuple(self.cfg.preferred_audio_languages))

    def _vad_ahead(self, audio_seconds: float) -> bool:
        """VAD a prefetched file ahead unless it may be batched (the batched pipeline has
        VAD settings of its own)."""
        return self.cfg.vad and not any(
            s.batch_size and audio_seconds >= self.cfg.batch_min_audio_seconds
            for s in self.devices.slots)
