"""Decoded audio placed on the clock a player shows: sample i of the result is at i / rate
seconds after the container's start.

Players (mpv with its default `--rebase-start-time`, VLC, Jellyfin, Plex) show a file's time
from the container's start time (FFmpeg's `AVFormatContext.start_time`, the earliest stream),
and play each audio frame at its presentation timestamp. Subtitles written against the samples
counted from 0 are early by the audio stream's own start (a WEB-DL whose audio begins 3.5 s
after its video) and late after every hole in the timestamps (a DVR recording's dropout).

`Timeline` takes the decoded frames' times in order and the resampled samples, and builds the
array: a hole in the timestamps becomes silence of its length, audio stamped over what is
already there is dropped, a frame stamped before the start is cut. Small differences between
timestamps and the samples (rounding of a container's millisecond or 90 kHz ticks, an encoder's
jitter) are not holes: the samples are kept back to back while the difference stays under
`TOLERANCE_SECONDS`, so no clicks or tiny gaps are made, and the drift never grows past it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import StageError

# Timestamps and samples may disagree by this much before the audio is moved. Matroska stamps
# to the millisecond, MPEG-TS to 1/90000 s, so an AAC frame of 1024 samples at 48 kHz (21.33 ms)
# is never exactly on a tick; FFmpeg's own timestamp follower (af_asyncts `min_delta`, and
# aresample's `min_hard_comp`) waits for 0.1 s. A tighter 40 ms (a video frame at 25 fps) keeps
# cues within a frame of the picture and is still ~40x the rounding.
TOLERANCE_SECONDS = 0.04
# A step back in the timestamps longer than this is not an overlap to trim but a reset (two
# recordings joined byte-wise, an encoder restarted): trimming would drop the audio after it
# wholesale, so it is appended where the audio before it ended. Real overlaps are a few frames.
MAX_OVERLAP_SECONDS = 1.0
# A hole longer than this is a broken mux, not a dropout: a DVR loses seconds to minutes of
# signal, while a file whose timestamps leap hours ahead would decode into hours of silence
# (memory, and a transcript of nothing). Half an hour is far past any dropout we have seen and
# far below the hours a damaged timestamp jumps by. Also bounds where the audio may start.
MAX_HOLE_SECONDS = 30 * 60


@dataclasses.dataclass(frozen=True)
class Hole:
    """Silence put where the timestamps skip: `seconds` long, from `at` on the player's clock."""
    at: float
    seconds: float


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the decoded audio went on the player's clock (what `media.decode_placed` found)."""
    start: float = 0.0                  # the first audio sample's time (0: with the container)
    holes: tuple[Hole, ...] = ()        # silence put into the timeline, in order
    trimmed: float = 0.0                # seconds of audio dropped: stamped over other audio
    resets: int = 0                     # steps back appended instead (`MAX_OVERLAP_SECONDS`)

    def describe(self) -> str:
        """One line for the log; empty when the audio simply starts at 0 and runs on."""
        parts = []
        if self.start > TOLERANCE_SECONDS:
            parts.append(f"starts at {self.start:.3f}s")
        if self.holes:
            shown = ", ".join(f"{h.seconds:.3f}s at {h.at:.3f}s" for h in self.holes[:3])
            more = f" and {len(self.holes) - 3} more" if len(self.holes) > 3 else ""
            parts.append(f"{len(self.holes)} hole(s) filled with silence ({shown}{more})")
        if self.trimmed > TOLERANCE_SECONDS:
            parts.append(f"{self.trimmed:.3f}s of overlapping audio dropped")
        if self.resets:
            parts.append(f"timestamps stepped back {self.resets} time(s): appended")
        return "; ".join(parts)


class Timeline:
    """Builds one int16 array at `rate` Hz from runs of resampled audio.

    For each decoded frame, `place(time, seconds)` says whether it continues the audio before
    it (None) or where, as a sample index, a new run starts (the caller then flushes its
    resampler into the old run and `seek`s). `write` appends resampled samples at the current
    run's position, padding a hole with silence or dropping what lies before what is written.
    """

    def __init__(self, origin: float | None, rate: int, where: str, max_samples: int):
        self._origin = origin           # the container's start time, seconds (None: unknown)
        self._rate = rate
        self._where = where             # names the file in error messages
        self._max_samples = max_samples
        self._expected: float | None = None   # where the next frame should start, seconds
        self._shift = 0.0               # added to timestamps after a reset
        self._chunks: list[np.ndarray] = []
        self._written = 0               # samples in the array so far
        self._cursor = 0                # where the next written sample belongs
        self._start: int | None = None
        self._holes: list[Hole] = []
        self._trimmed = 0
        self._resets = 0

    @property
    def samples(self) -> int:
        return self._written

    def place(self, time: float | None, seconds: float) -> int | None:
        if time is None:               # no timestamp: it follows what came before
            if self._expected is None:
                self._expected = 0.0
            self._expected += seconds
            return None
        if self._origin is None:       # the container knows no start: the audio's own
            self._origin = time - (self._expected or 0.0)
        clock = time - self._origin + self._shift
        if self._expected is None:     # the first frame: where the audio starts
            self._check_hole(0.0, clock, "the audio starts")
            self._expected = clock + seconds
            return round(clock * self._rate)
        step = clock - self._expected
        if abs(step) <= TOLERANCE_SECONDS:
            self._expected += seconds  # by the samples, not the ticks: no drift past tolerance
            return None
        if step < -MAX_OVERLAP_SECONDS:
            self._shift -= step
            self._resets += 1
            self._expected += seconds
            return None
        self._check_hole(self._expected, step, "the timestamps jump")
        self._expected = clock + seconds
        return round(clock * self._rate)

    def _check_hole(self, at: float, seconds: float, what: str) -> None:
        if seconds > MAX_HOLE_SECONDS:
            raise StageError("timestamp_jump", f"{self._where}: {what} {seconds / 3600:.1f} h "
                                               f"ahead at {at:.1f}s (a broken mux: a dropout "
                                               f"is never over {MAX_HOLE_SECONDS // 60} min)")

    def seek(self, position: int) -> None:
        """The samples written next belong at `position` (a new run from `place`)."""
        self._cursor = position

    def write(self, samples: np.ndarray) -> None:
        if self._cursor < self._written:      # stamped over audio we have, or before 0
            drop = min(self._written - self._cursor, len(samples))
            if self._cursor >= 0:
                self._trimmed += drop
            samples = samples[drop:]
            self._cursor += drop
        if not len(samples):
            return
        if self._cursor > self._written:
            self._check_length(self._cursor)
            gap = self._cursor - self._written
            if self._start is not None:
                self._holes.append(Hole(self._written / self._rate, gap / self._rate))
            self._chunks.append(np.zeros(gap, dtype=samples.dtype))
            self._written = self._cursor
        if self._start is None:
            self._start = self._cursor
        self._chunks.append(samples)
        self._written += len(samples)
        self._cursor += len(samples)
        self._check_length(self._written)

    def _check_length(self, samples: int) -> None:
        if samples > self._max_samples:
            raise StageError("decode_error", f"{self._where}: over "
                                             f"{self._max_samples // self._rate // 3600} h of "
                                             "audio (a damaged header or index)")

    def audio(self) -> np.ndarray:
        """The array so far, as float32 in [-1, 1)."""
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._chunks, axis=None).astype(np.float32) / 32768.0

    def placement(self) -> Placement:
        return Placement(start=(self._start or 0) / self._rate, holes=tuple(self._holes),
                         trimmed=self._trimmed / self._rate, resets=self._resets)
