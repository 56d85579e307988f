"""The four stages: probe → decode → transcribe → write. One job each, no metrics, no HTTP.

Each raises `StageError(reason, message)` with a stable reason code for anything wrong with the
input or the output, so the daemon can record, count and log it and move on. The daemon times
each call by its name in `STAGES`; nothing here knows it is being measured.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import SkipJob, StageError
from .languages import to_iso639_1
from .output import write_atomic, write_error_reason
from .transcript import Segment, Transcript, Word

SAMPLE_RATE = 16000

# Leading bytes of containers and streams we accept. A file that fails to open is a corrupt
# container when it starts like media, and "not media" (text renamed .mp4) when it does not.
_SIGNATURES = (
    (4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (0, b"RIFF"), (0, b"ID3"), (0, b"fLaC"),
    (0, b"OggS"), (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"), (0, b"FORM"), (0, b"#!AMR"),
    (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"), (0, b"\x00\x00\x01\xba"),
)


class Cancelled(Exception):
    """Shutdown asked the running transcription to stop; the job goes back to the queue."""


def _looks_like_media(head: bytes) -> bool:
    if any(head[off:off + len(sig)] == sig for off, sig in _SIGNATURES):
        return True
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:   # MPEG audio / ADTS sync
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
    """A container tag as plain text: PyAV 19's surrogate escapes dropped (they cannot be stored)."""
    if value is None:
        return None
    return value.encode("utf-8", "ignore").decode("utf-8")


def _source_error(err: OSError, path: Path, stage: str) -> StageError:
    if isinstance(err, FileNotFoundError) or err.errno == errno.ENOENT:
        return StageError("vanished", f"{path}: the file is gone", stage)
    if isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM):
        return StageError("unreadable", f"{path}: permission denied", stage)
    return StageError("unreadable", f"{path}: {os.strerror(err.errno) if err.errno else err}", stage)


# -- probe -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProbeResult:
    duration: float | None          # seconds (container's, None when unknown)
    audio_codec: str
    audio_streams: int
    channels: int
    sample_rate: int
    subtitle_languages: tuple[str, ...]   # ISO 639-1 codes of embedded subtitle streams
    container: str


def probe(path: Path) -> ProbeResult:
    """Is it media, does it have sound, how long is it, does it carry subtitles already?"""
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
    except (FileNotFoundError, PermissionError) as e:
        raise _source_error(e, path, "probe") from None
    except (av.error.FFmpegError, ValueError, OSError) as e:
        if _looks_like_media(head):
            raise StageError("corrupt_container", f"{path}: damaged or truncated media: {e}") from None
        raise StageError("not_media", f"{path}: not a media file (unrecognised content)") from None
    try:
        audio = list(container.streams.audio)
        if not audio:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
            raise StageError("no_audio_stream", f"{path}: no audio stream ({kinds})")
        stream = audio[0]
        duration = None
        if container.duration:
            duration = container.duration / 1_000_000
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        subs = tuple(sorted({code for s in container.streams.subtitles
                             if (code := to_iso639_1(_tag(s.metadata.get("language"))))}))
        codec = stream.codec_context
        return ProbeResult(duration=duration, audio_codec=codec.name or "unknown",
                           audio_streams=len(audio), channels=codec.channels or 0,
                           sample_rate=codec.sample_rate or 0, subtitle_languages=subs,
                           container=container.format.name)
    finally:
        container.close()


# -- decode ------------------------------------------------------------------------------------
def decode(path: Path) -> np.ndarray:
    """The first audio stream as 16 kHz mono float32, what Whisper takes."""
    import av

    try:
        return _decode_audio(path)
    except (FileNotFoundError, PermissionError) as e:
        raise _source_error(e, path, "decode") from None
    except (av.error.FFmpegError, ValueError) as e:
        raise StageError("decode_error", f"{path}: audio cannot be decoded: {e}") from None
    except OSError as e:
        raise _source_error(e, path, "decode") from None


def _decode_audio(path: Path) -> np.ndarray:
    """faster_whisper.decode_audio's result (s16 resampling, then scaled to float), without the
    full `gc.collect()` it ends with: that holds the GIL for tens of milliseconds on a loaded
    machine, and every /metrics answer waits behind it."""
    import av

    chunks = []
    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    with open_container(path) as container:
        frames = container.decode(audio=0)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.InvalidDataError:
                continue            # a damaged frame: keep what decodes, as faster-whisper does
            frame.pts = None        # resampled as one stream, whatever the timestamps say
            chunks += [f.to_ndarray() for f in resampler.resample(frame)]
        chunks += [f.to_ndarray() for f in resampler.resample(None)]   # flush
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks, axis=None).astype(np.float32) / 32768.0


# -- transcribe --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None         # None: detect
    beam_size: int = 5
    vad: bool = True
    batch_size: int = 8                 # 0: never batch
    batch_min_audio_seconds: float = 120.0

    def safer(self) -> "TranscribeOptions":
        """For a re-run of a suspect result: sequential decoding, VAD on, a wider beam."""
        return dataclasses.replace(self, vad=True, batch_size=0, beam_size=max(self.beam_size, 5))


def transcribe(model, audio: np.ndarray, opts: TranscribeOptions, *, batched_pipeline=None,
               model_name: str = "", on_progress: Callable[[float], None] | None = None,
               should_stop: Callable[[], bool] | None = None, safer: bool = False) -> Transcript:
    """Run Whisper with the hallucination-resistant defaults and collect word timings.

    Long files go through `BatchedInferencePipeline` (faster on the same cores); its segments are
    ~30 s long, which is why cues are built from word timestamps, never from segments.
    """
    duration = len(audio) / SAMPLE_RATE
    kwargs = dict(language=opts.language, beam_size=opts.beam_size, word_timestamps=True,
                  vad_filter=opts.vad, condition_on_previous_text=False)
    if safer:
        # Whisper's own escape hatches against loops and text invented in silences.
        # Not no_repeat_ngram_size: real speech repeats phrases ("what your country can do
        # for you, ask what you can do for your country") and it garbles them.
        kwargs.update(repetition_penalty=1.1, compression_ratio_threshold=2.0,
                      hallucination_silence_threshold=2.0)
    use_batched = (batched_pipeline is not None and opts.batch_size > 0
                   and duration >= opts.batch_min_audio_seconds and not safer)
    try:
        if use_batched:
            segments, info = batched_pipeline.transcribe(audio, batch_size=opts.batch_size, **kwargs)
        else:
            segments, info = model.transcribe(audio, **kwargs)
        out: list[Segment] = []
        for seg in segments:   # a generator: the work happens while we iterate
            if should_stop is not None and should_stop():
                raise Cancelled()
            # Plain floats: numpy scalars leak out of faster-whisper and break json.dumps.
            words = tuple(Word(float(w.start), float(w.end), w.word, float(w.probability))
                          for w in (seg.words or ()))
            out.append(Segment(float(seg.start), float(seg.end), seg.text, words,
                               float(seg.avg_logprob), float(seg.no_speech_prob),
                               float(seg.compression_ratio)))
            if on_progress is not None and duration > 0:
                on_progress(min(1.0, seg.end / duration))
    except (Cancelled, StageError):
        raise
    except MemoryError as e:
        raise StageError("transcribe_error", f"out of memory during transcription: {e}") from None
    except RuntimeError as e:   # CTranslate2 reports CUDA OOM and device errors this way
        raise StageError("transcribe_error", f"transcription failed: {e}") from None
    if on_progress is not None:
        on_progress(1.0)
    return Transcript(language=info.language, language_probability=float(info.language_probability),
                      duration=duration, segments=tuple(out), model=model_name)


def require_speech(transcript: Transcript, path: Path) -> None:
    if not any(s.text.strip() for s in transcript.segments):
        raise SkipJob("no_speech", f"{path}: no speech found ({transcript.duration:.1f}s of audio)")


# -- write -------------------------------------------------------------------------------------
# Scripts without spaces carry far more per character: subtitling guides use ~16 per line.
_DENSE_SCRIPTS = {"zh", "ja", "ko", "yue"}


def line_length(language: str) -> int:
    return 16 if language in _DENSE_SCRIPTS else 42


def write(transcript: Transcript, targets: dict[str, Path]) -> list[str]:
    """Render every format and write each atomically. Returns the written paths."""
    from .subtitles import RENDERERS, build_cues

    cues = build_cues(transcript.words, max_line_chars=line_length(transcript.language))
    written = []
    try:
        for fmt, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, RENDERERS[fmt](transcript, cues))
            written.append(str(target))
    except OSError as e:
        reason = write_error_reason(e)
        where = e.filename or (targets and next(iter(targets.values())).parent)
        raise StageError(reason, f"cannot write subtitles to {where}: "
                                 f"{os.strerror(e.errno) if e.errno else e}") from None
    return written
