"""Audio wrapped the way real releases and recordings carry it, each with the rule that says
where a moment of the input is on the clock a player shows (mpv, VLC, Jellyfin, Plex):

    from tests.harness import containers
    clock = containers.mkv_late(speech, tmp / "webdl.mkv", 3.5)
    clock.at(12.0)      # where the input's 12.0 s plays: 15.5

WAV, FLAC, MKV and MP4 whose audio starts late (the WEB-DL case), MPEG-TS at its natural start
(FFmpeg's mux delay puts it near 1.4 s) or any `-output_ts_offset`, MPEG-TS with a dropout (a
hole, or an overlap, in its timestamps: a DVR recording), Opus in Ogg/MKV/WebM (pre-skip) and
AAC in MP4 (priming hidden by an edit list). Made with ffmpeg (`require_binary` first: a skip on
a user's machine, a failure under CI=true).

Where the clock comes from, never from scribewatch's own decoder: for the files with a video
track, from ffprobe's start times (the player's clock is `pts - format start_time`, and ffmpeg
keeps the audio input's t = 0 with the video input's t = 0, shifted by `-itsoffset`); for
audio-only files, from what the format guarantees (an MP4 edit list and Opus pre-skip cut the
encoder delay, RFC 7845 §4.2, ISO/IEC 14496-12 §8.6.6). Lossy codecs smear a burst over a
frame: measure onsets, not single samples.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import wave
from pathlib import Path

import numpy as np

from tests.harness import require_binary
from tests.harness.media import RATE, ffmpeg, write_encoded, write_wav

# A black picture is enough to make a container a video file (5 fps, tiny, mpeg4: no B-frames,
# so the video's first timestamp is its first frame's).
_VIDEO = ("-c:v", "mpeg4", "-q:v", "31")


@dataclasses.dataclass(frozen=True)
class Clock:
    """Where the input array's moments play in the written file: `at(t)` seconds from the
    container's start, as players show it. `hole`: (at, seconds) — input from `at` on plays
    `seconds` later (negative: earlier, over the audio before it, which the overlap loses)."""
    path: Path
    offset: float = 0.0
    hole: tuple[float, float] | None = None

    def at(self, t: float) -> float:
        shifted = t + self.offset
        if self.hole is not None and t >= self.hole[0]:
            shifted += self.hole[1]
        return shifted


def start_times(path: Path) -> tuple[float, dict[str, float]]:
    """ffprobe's `format=start_time` and each stream type's first `stream=start_time` (the
    ones it reports: none for a stream whose start is unknown)."""
    require_binary("ffprobe", "apt-get install ffmpeg")
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_type,start_time:format=start_time", "-of", "json",
                          str(path)], check=True, capture_output=True, text=True, timeout=60)
    info = json.loads(out.stdout)
    streams: dict[str, float] = {}
    for s in info["streams"]:
        if "start_time" in s:
            streams.setdefault(s["codec_type"], float(s["start_time"]))
    return float(info["format"].get("start_time", 0.0)), streams


def _source_wav(source: np.ndarray | Path, dst: Path) -> tuple[Path, float]:
    """A WAV of the input (written beside `dst` when given an array), and its length in s."""
    require_binary("ffmpeg", "apt-get install ffmpeg")
    if isinstance(source, Path):
        with wave.open(str(source)) as w:
            return source, w.getnframes() / w.getframerate()
    dst.parent.mkdir(parents=True, exist_ok=True)
    return write_wav(dst.with_name(dst.name + ".src.wav"), source), len(source) / RATE


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


def _video_offset(path: Path) -> float:
    """Where the input's t = 0 plays: the video track's start on the player's clock."""
    origin, streams = start_times(path)
    return streams["video"] - origin


def wav(source: np.ndarray | Path, dst: Path) -> Clock:
    """16-bit PCM WAV: sample i is at i / rate, nothing else to know."""
    audio = source if isinstance(source, np.ndarray) else _read_wav(source)
    write_wav(dst, audio)
    return Clock(dst)


def flac(source: np.ndarray | Path, dst: Path) -> Clock:
    audio = source if isinstance(source, np.ndarray) else _read_wav(source)
    write_encoded(dst, audio, "flac")
    return Clock(dst)


def _late(source: np.ndarray | Path, dst: Path, seconds: float) -> Clock:
    wav_in, length = _source_wav(source, dst)
    ffmpeg("-f", "lavfi", "-i", f"color=c=black:s=64x48:r=5:d={length + max(seconds, 0) + 1}",
           "-itsoffset", str(seconds), "-i", str(wav_in), "-map", "0:v", "-map", "1:a",
           *_VIDEO, "-c:a", "aac", str(dst))
    _cleanup(source, wav_in)
    return Clock(dst, offset=_video_offset(dst) + seconds)


def mkv_late(source: np.ndarray | Path, dst: Path, seconds: float) -> Clock:
    """A Matroska video whose AAC audio starts `seconds` after the picture (`-itsoffset`, the
    WEB-DL case; negative: before it)."""
    return _late(source, dst, seconds)


def mp4_late(source: np.ndarray | Path, dst: Path, seconds: float) -> Clock:
    """An MP4 video whose AAC audio starts `seconds` after the picture: ffmpeg writes an edit
    list with an empty edit for the audio track (ISO/IEC 14496-12 §8.6.6)."""
    return _late(source, dst, seconds)


def mpegts(source: np.ndarray | Path, dst: Path, ts_offset: float | None = None, *,
           m2ts: bool = False) -> Clock:
    """An MPEG-TS recording (mpeg4 video, AAC audio) with FFmpeg's natural start (its mux delay,
    ~1.4 s) or, with `ts_offset`, its timestamps moved that far (`-output_ts_offset`). `m2ts`:
    Blu-ray's M2TS, 192-byte packets (a 4-byte arrival timestamp before each 188-byte TS
    packet; FFmpeg's `-mpegts_m2ts_mode 1`), the same timestamps inside."""
    wav_in, length = _source_wav(source, dst)
    _ts_piece(wav_in, dst, 0.0, length, ts_offset or 0.0, m2ts=m2ts)
    _cleanup(source, wav_in)
    return Clock(dst, offset=_video_offset(dst))


def mpegts_dropout(source: np.ndarray | Path, dst: Path, at: float, seconds: float) -> Clock:
    """An MPEG-TS recording whose timestamps skip `seconds` at input time `at` (a DVR's signal
    dropout; negative: they step back, an overlap). Two TS pieces, the second one's timestamps
    moved by `-output_ts_offset`, joined byte-wise as transport streams allow.

    Near `at` the codec's frames blur the edge: the first piece's audio runs up to ~0.13 s past
    it (the encoder's last frame and flush), the second's starts ~0.06 s before (AAC priming).
    A step back of over a second is no overlap but a reset, which scribewatch appends where the
    first piece ended (pipeline/media/timeline.py): `Clock.at` does not describe that case."""
    wav_in, length = _source_wav(source, dst)
    first, second = dst.with_name(dst.name + ".1.ts"), dst.with_name(dst.name + ".2.ts")
    _ts_piece(wav_in, first, 0.0, at, 0.0)
    # The hole as ffprobe sees it: where the second piece's picture starts against the first's.
    # A moved piece does not keep the unmoved one's start (FFmpeg 5.1: the picture at 1.464 s
    # unmoved, at 1.400 s + the offset moved), so the offset is corrected once by what it made.
    shift = at + seconds
    for _ in range(2):
        _ts_piece(wav_in, second, at, length - at, shift)
        hole = _video_offset_from(second, first) - at
        shift += seconds - hole
    assert abs(hole - seconds) < 0.002, f"ffmpeg made a {hole:.3f}s hole, not {seconds}s"
    dst.write_bytes(first.read_bytes() + second.read_bytes())
    offset = _video_offset(first)
    for piece in (first, second):
        piece.unlink()
    _cleanup(source, wav_in)
    return Clock(dst, offset=offset, hole=(at, hole))


def _video_offset_from(piece: Path, base: Path) -> float:
    return start_times(piece)[1]["video"] - start_times(base)[1]["video"]


def _ts_piece(wav_in: Path, dst: Path, start: float, length: float, ts_offset: float, *,
              m2ts: bool = False) -> None:
    ffmpeg("-f", "lavfi", "-i", f"color=c=black:s=64x48:r=5:d={length}",
           "-ss", str(start), "-t", str(length), "-i", str(wav_in),
           "-map", "0:v", "-map", "1:a", *_VIDEO, "-c:a", "aac",
           "-output_ts_offset", str(ts_offset), *(("-mpegts_m2ts_mode", "1") if m2ts else ()),
           "-f", "mpegts", str(dst))


def opus(source: np.ndarray | Path, dst: Path) -> Clock:
    """Opus in Ogg, Matroska or WebM (by `dst`'s suffix): its 312-sample pre-skip (RFC 7845
    §4.2; Matroska's CodecDelay) is not played, so the input's t plays at t."""
    wav_in, _ = _source_wav(source, dst)
    ffmpeg("-i", str(wav_in), "-c:a", "libopus", "-b:a", "48k", str(dst))
    _cleanup(source, wav_in)
    return Clock(dst)


def aac_mp4(source: np.ndarray | Path, dst: Path) -> Clock:
    """AAC in MP4 (an `.m4a`): the encoder's 1024 priming samples are hidden by the edit list
    (the demuxer marks them with skip_samples), so the input's t plays at t."""
    wav_in, _ = _source_wav(source, dst)
    ffmpeg("-i", str(wav_in), "-c:a", "aac", "-f", "mp4", str(dst))
    _cleanup(source, wav_in)
    return Clock(dst)


def _cleanup(source: np.ndarray | Path, wav_in: Path) -> None:
    if not isinstance(source, Path):
        wav_in.unlink()


# -- a signal whose moments can be found exactly ----------------------------------------------
BURST_SECONDS = 0.05


def bursts(times: list[float], seconds: float) -> np.ndarray:
    """`seconds` of silence with a 50 ms 1 kHz tone burst (amplitude 0.5) starting at each of
    `times`: where each one lands in a decode is found to a sample by `onsets`."""
    audio = np.zeros(int(seconds * RATE), np.float32)
    n = int(BURST_SECONDS * RATE)
    for t in times:
        i = round(t * RATE)
        audio[i:i + n] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / RATE)
    return audio


def onsets(audio: np.ndarray, threshold: float = 0.2) -> list[float]:
    """The start of each burst in `audio` (seconds): its first sample over `threshold`, bursts
    apart by over 0.1 s. The burst's sine reaches 0.2 on its 2nd sample (0.125 ms late); lossy
    codecs smear it by well under a millisecond more."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if not len(loud):
        return []
    firsts = loud[np.concatenate(([True], np.diff(loud) > 0.1 * RATE))]
    return [float(i) / RATE for i in firsts]
