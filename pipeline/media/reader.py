"""Reading media with PyAV: `probe` (is it media, has it sound, how long, which subtitle streams)
and `decode` (16 kHz mono float32), and what PyAV needs to be tolerated on every version we
support (`open_container`). Raises `StageError` with a stable reason code for damaged input.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
from pathlib import Path

import numpy as np

from .. import skip_policy
from ..errors import StageError
from ..language.codes import to_iso639_1
from .timeline import Placement, Timeline
from .tracks import AudioTrack, SubtitleTrack, audio_track

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000

# Leading bytes of containers and streams we accept. A file that fails to open is a corrupt
# container when it starts like media, and "not media" (text renamed .mp4) when it does not.
_SIGNATURES = (
    (4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (0, b"RIFF"), (0, b"ID3"), (0, b"fLaC"),
    (0, b"OggS"), (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"), (0, b"FORM"), (0, b"#!AMR"),
    (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"), (0, b"\x00\x00\x01\xba"),
)


def _looks_like_media(head: bytes) -> bool:
    if any(head[off:off + len(sig)] == sig for off, sig in _SIGNATURES):
        return True
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:   # MPEG audio / ADTS sync
        return True
    if len(head) > 196 and head[4] == 0x47 and head[196] == 0x47:         # M2TS: 192-byte packets
        return True
    return len(head) > 188 and head[0] == 0x47 and head[188] == 0x47      # MPEG-TS packets


def open_container(path: Path):
    """`av.open` for reading that tolerates tags which are not valid UTF-8, on every PyAV we
    support: PyAV ≤ 18 raises `UnicodeDecodeError` on them unless given
    `metadata_errors="ignore"`, and PyAV 19 (Python ≥ 3.12) removed that argument and decodes
    them with surrogate escapes instead. faster-whisper's `decode_audio` passes the argument
    unconditionally, which is why the pipeline never calls it."""
    import av

    if _pyav_takes_metadata_errors():
        return av.open(str(path), mode="r", metadata_errors="ignore")
    return av.open(str(path), mode="r")


@functools.cache
def _pyav_takes_metadata_errors() -> bool:
    import av

    return int(av.__version__.split(".")[0]) < 19


def _tag(value: str | None) -> str | None:
    """A container tag as plain text: PyAV 19's surrogate escapes dropped
    (they cannot be stored)."""
    if value is None:
        return None
    return value.encode("utf-8", "ignore").decode("utf-8")


def _source_error(err: OSError, path: Path, stage: str) -> StageError:
    if isinstance(err, FileNotFoundError) or err.errno == errno.ENOENT:
        return StageError("vanished", f"{path}: the file is gone", stage)
    if isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM):
        return StageError("unreadable", f"{path}: permission denied", stage)
    return StageError("unreadable", f"{path}: {os.strerror(err.errno) if err.errno else err}",
                      stage)


def _source_problem(path: Path, stage: str) -> StageError | None:
    """Why the file itself cannot be read now, or None when it can. PyAV's errors subclass
    OSError by error code, and a decoder says EPERM or ENOMEM about bad data as readily as the
    file system says it about the file: only the file system is asked whether the file is gone
    or unreadable; everything else PyAV raises is about the content."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        return _source_error(e, path, stage)
    return None


# What PyAV lets out on damaged input: its own `av.error.FFmpegError` family (whose members also
# subclass OSError, MemoryError, ValueError, LookupError… by error code), and plain Python
# errors from its Cython code on values no real file has (a None codec, a size that overflows,
# a tag that is not text, a frame unlike the first). Caught only around PyAV calls, and only
# when raised inside PyAV: the same types raised by a line of ours are a bug (`_from_library`).
_LIBRARY_ERRORS = (OSError, EOFError, LookupError, ValueError, TypeError, AttributeError,
                   ArithmeticError, MemoryError, BufferError)

# The pipeline package (this file is in pipeline/media/): a raise in any of its modules is ours.
_OUR_CODE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _from_library(err: BaseException) -> bool:
    """Raised inside PyAV (or numpy under it), not by a line of the pipeline itself."""
    import av

    if isinstance(err, av.error.FFmpegError):
        return True
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return not os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_OUR_CODE)


def _describe(err: BaseException) -> str:
    """One short line: FFmpeg's own words when it has them, never a repr of a C call."""
    import av

    if isinstance(err, av.error.FFmpegError) and err.strerror:
        text = str(err.strerror)
    else:
        text = f"{type(err).__name__}: {err}"
    return text if len(text) <= 160 else text[:157] + "..."


def _claimed_seconds(container, stream) -> float | None:
    """The duration the container (else the stream) claims, unless a damaged header invented
    it: finite, positive, under MAX_AUDIO_SECONDS. None when unknown."""
    for ticks, unit in ((container.duration, 1 / 1_000_000), (stream.duration, stream.time_base)):
        if not ticks or not unit:
            continue
        try:
            seconds = float(ticks * unit)
        except (TypeError, ValueError, ArithmeticError):   # a time base of n/0
            continue
        if 0 < seconds <= MAX_AUDIO_SECONDS:
            return seconds
    return None


def _audio_stream(container, index: int | None = None):
    """The audio stream with the container's stream `index`; without one, the first audio
    stream FFmpeg can decode, else the first audio stream, else None. A damaged header can
    leave a stream without a codec (its codec context is None)."""
    audio = list(container.streams.audio)
    if index is not None:
        chosen = next((s for s in audio if s.index == index), None)
        if chosen is not None:
            return chosen
    return next((s for s in audio if s.codec_context is not None), audio[0] if audio else None)


def _dispositions(stream) -> set[str]:
    """FFmpeg's disposition flags of a stream, by name (`default`, `forced`, `comment`)."""
    flags = getattr(stream, "disposition", None)
    if flags is None:
        return set()
    return {name for name, member in type(flags).__members__.items() if member and member in flags}


def _close(container) -> None:
    import av

    try:
        container.close()
    except (av.error.FFmpegError, *_LIBRARY_ERRORS) as e:
        if not _from_library(e):
            raise
        # Nothing is lost: everything was read already.


# -- probe -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProbeResult:
    duration: float | None          # seconds (container's, None when unknown)
    audio_codec: str
    audio_streams: int
    channels: int
    sample_rate: int
    subtitle_languages: tuple[str, ...]   # Whisper codes of embedded full subtitle streams
    container: str
    audio_tracks: tuple[AudioTrack, ...] = ()
    subtitle_tracks: tuple[SubtitleTrack, ...] = ()   # forced-only ones too


def probe(path: Path) -> ProbeResult:
    """Is it media, does it have sound, how long is it, does it carry subtitles already?

    A stream FFmpeg has no decoder for (a damaged header, a codec this build lacks) is
    reported with codec "unknown" and 0 Hz; `decode` is where it fails, as `decode_error`.
    """
    import av

    try:
        size = os.stat(path).st_size
        if size == 0:
            raise StageError("empty_file", f"{path}: the file is empty (0 bytes)")
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise _source_error(e, path, "probe") from None
    try:
        container = open_container(path)
    except (av.error.FFmpegError, *_LIBRARY_ERRORS) as e:
        if not _from_library(e):
            raise
        if problem := _source_problem(path, "probe"):
            raise problem from None
        if _looks_like_media(head):
            raise StageError("corrupt_container",
                             f"{path}: damaged or truncated media: {_describe(e)}") from None
        raise StageError("not_media", f"{path}: not a media file (unrecognised content)") from None
    try:
        return _probe_streams(container, path)
    except (av.error.FFmpegError, *_LIBRARY_ERRORS) as e:
        if not _from_library(e):
            raise
        raise StageError("corrupt_container", f"{path}: damaged media: {_describe(e)}") from None
    finally:
        _close(container)


def _probe_streams(container, path: Path) -> ProbeResult:
    stream = _audio_stream(container)
    if stream is None:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise StageError("no_audio_stream", f"{path}: no audio stream ({kinds})")
    tracks = tuple(audio_track(s.index, _tag(s.metadata.get("language")),
                               _tag(s.metadata.get("title")) or "", _dispositions(s),
                               s.codec_context is not None)
                   for s in container.streams.audio)
    subtitles = tuple(SubtitleTrack(to_iso639_1(_tag(s.metadata.get("language"))),
                                    "forced" in _dispositions(s))
                      for s in container.streams.subtitles)
    # A forced-only stream (signs, the foreign lines) is not the file's subtitles.
    subs = tuple(sorted({t.language for t in subtitles if t.language and not t.forced}))
    codec = stream.codec_context
    return ProbeResult(duration=_claimed_seconds(container, stream),
                       audio_codec=(codec.name if codec is not None else None) or "unknown",
                       audio_streams=len(container.streams.audio),
                       channels=(codec.channels if codec is not None else 0) or 0,
                       sample_rate=(codec.sample_rate if codec is not None else 0) or 0,
                       subtitle_languages=subs, container=container.format.name,
                       audio_tracks=tracks, subtitle_tracks=subtitles)


# -- decode ------------------------------------------------------------------------------------
# Longer than anything we subtitle; a damaged header (a sample rate of 1 Hz resampled to 16 kHz)
# or a looping index can otherwise decode into tens of gigabytes.
MAX_AUDIO_SECONDS = 24 * 3600
# Lower than any real audio (telephone speech is 8 kHz): a rate like 1 Hz is a damaged header.
MIN_SAMPLE_RATE = 1000
# Each byte of the file is in at most one packet; a demuxer handing out many times the file's
# size is looping over a damaged index, and would never end.
_PACKET_BYTES_PER_FILE_BYTE = 4


def decode(path: Path, stream_index: int | None = None) -> np.ndarray:
    """The audio stream `stream_index` (the container's index; None: the first decodable one)
    as 16 kHz mono float32, what Whisper takes, on the player's clock: sample i is at
    i / 16000 s from the container's start (`decode_placed` says where the audio went).

    Damaged packets are skipped and the rest is kept, as players do; audio mostly or wholly
    damaged is a `decode_error`, timestamps leaping hours a `timestamp_jump`. A stream that is
    simply empty is skipped as `no_speech`.
    """
    return decode_placed(path, stream_index).audio


@dataclasses.dataclass(frozen=True)
class DecodedAudio:
    audio: np.ndarray          # 16 kHz mono float32 on the player's clock
    placement: Placement       # where it started, the holes filled, what overlapped


def decode_placed(path: Path, stream_index: int | None = None) -> DecodedAudio:
    """`decode`, and where the audio was placed on the player's clock (logged when it was not
    simply 0 onwards)."""
    import av

    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise _source_error(e, path, "decode") from None
    try:
        out = _decode_audio(path, size, stream_index)
    except (av.error.FFmpegError, *_LIBRARY_ERRORS) as e:
        if not _from_library(e):
            raise
        if problem := _source_problem(path, "decode"):
            raise problem from None
        raise StageError("decode_error",
                         f"{path}: audio cannot be decoded: {_describe(e)}") from None
    if out.damaged and out.damaged >= out.good:
        # Subtitles for the few scraps that decoded would pass for the whole file's.
        raise StageError("decode_error", f"{path}: the audio is damaged: {out.damaged} of "
                                         f"{out.good + out.damaged} packets do not decode "
                                         f"({out.first_damage})")
    if len(out.audio) == 0:
        if out.claimed:
            raise StageError("decode_error", f"{path}: no audio decodes "
                                             f"({out.claimed:.1f}s claimed)")
        raise skip_policy.empty_audio(path)
    if moved := out.placement.describe():
        log.info("%s: audio placed on the player's clock: %s", path, moved)
    return DecodedAudio(out.audio, out.placement)


@dataclasses.dataclass
class _Decoded:
    audio: np.ndarray
    good: int = 0               # packets that decoded
    damaged: int = 0            # packets that did not, or a demuxer that stopped on damage
    first_damage: str = ""      # FFmpeg's words about the first of them
    claimed: float | None = None   # seconds the container says it holds
    placement: Placement = Placement()


def _decode_audio(path: Path, size: int, stream_index: int | None = None) -> _Decoded:
    """faster_whisper.decode_audio's result (s16 resampling, then scaled to float), without the
    full `gc.collect()` it ends with: that holds the GIL for tens of milliseconds on a loaded
    machine, and every /metrics answer waits behind it. Packet by packet, so that one damaged
    packet costs that packet, not the rest of the file (`container.decode` stops at the first).
    Each frame is placed by its presentation time (`timeline.Timeline`), not counted from 0."""
    import av

    out = _Decoded(np.zeros(0, dtype=np.float32))
    resampler, source = None, None
    timeline: Timeline | None = None

    def damaged(err: BaseException) -> None:
        out.damaged += 1
        out.first_damage = out.first_damage or _describe(err)

    def resampled(frame) -> None:
        nonlocal resampler, source
        if frame is not None:
            if frame.sample_rate < MIN_SAMPLE_RATE:
                raise StageError("decode_error", f"{path}: implausible sample rate "
                                                 f"{frame.sample_rate} Hz (a damaged header)")
            at = timeline.place(_presentation_time(frame, stream),
                                frame.samples / frame.sample_rate)
            shape = (frame.format.name, frame.layout.name, frame.sample_rate)
            if shape != source or at is not None:
                # PyAV's resampler refuses a frame unlike its first, and streams do change:
                # TV recordings switch stereo ↔ 5.1, joined MP3s change rate. And the audio
                # before a hole or an overlap goes where it belongs, its resampler's tail too.
                # Flush, start anew.
                if resampler is not None:
                    resampled(None)
                if at is not None:
                    timeline.seek(at)
                resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono",
                                                              rate=SAMPLE_RATE)
                source = shape
            frame.pts = None    # resampled as one run; the timeline placed it
        elif resampler is None:
            return
        for resampled_frame in resampler.resample(frame):
            timeline.write(resampled_frame.to_ndarray().reshape(-1))

    container = open_container(path)
    try:
        stream = _audio_stream(container, stream_index)
        if stream is None:
            raise StageError("decode_error", f"{path}: no audio stream to decode")
        codec = stream.codec_context
        if codec is None:
            raise StageError("decode_error", f"{path}: no decoder for the audio stream "
                                             "(a damaged header, or a codec FFmpeg lacks)")
        out.claimed = _claimed_seconds(container, stream)
        # The player's clock starts at the container's start (AV_TIME_BASE, microseconds):
        # mpv's default --rebase-start-time, and what the other players show.
        origin = container.start_time / 1_000_000 if container.start_time is not None else None
        timeline = Timeline(origin, SAMPLE_RATE, str(path), MAX_AUDIO_SECONDS * SAMPLE_RATE)
        budget = _PACKET_BYTES_PER_FILE_BYTE * size + (1 << 20)
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.InvalidDataError as e:
                # The demuxer cannot go on past damage (its flush packet never comes): keep
                # what decoded, and flush the decoder ourselves. Other demuxer errors (EIO from
                # a dropped mount) fail the file: partial subtitles would pass for whole ones.
                damaged(e)
                try:
                    for frame in codec.decode(None):
                        resampled(frame)
                except av.error.InvalidDataError:
                    pass        # the frames it held were damaged too
                break
            budget -= packet.size
            if budget < 0:
                raise StageError("decode_error", f"{path}: the container repeats its data "
                                                 "(a damaged index)")
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:
                if isinstance(e, MemoryError):
                    raise       # the machine, not the packet
                # A decoder does no I/O: whatever it says (EINVAL, EPERM, ENOSYS…) is about
                # this packet, and it picks up at the next one.
                damaged(e)
                continue
            out.good += packet.size > 0
            for frame in frames:
                resampled(frame)
        resampled(None)         # flush
    finally:
        _close(container)
    out.audio = timeline.audio()
    out.placement = timeline.placement()
    return out


def _presentation_time(frame, stream) -> float | None:
    """The frame's presentation time in seconds (pts × time base; FFmpeg already applied MP4
    edit lists, AAC priming and Opus pre-skip to it), None when it has none."""
    if frame.pts is None:
        return None
    unit = frame.time_base or stream.time_base
    return float(frame.pts * unit) if unit else None
