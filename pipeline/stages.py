"""The four stages: probe → decode → transcribe → write. One job each, no metrics, no HTTP.

`probe` and `decode` live in `media/reader.py` (PyAV); `transcribe` and `write` here. Each raises
`StageError(reason, message)` with a stable reason code for anything wrong with the input or the
output. `daemon/runner.py` runs them in order and times each by its name in `STAGES`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import GpuOutOfMemory, StageError, is_cuda_out_of_memory

# Re-exported: the stage table is read as stages.probe … stages.write.
from .media.reader import (  # noqa: F401
    MAX_AUDIO_SECONDS,
    SAMPLE_RATE,
    ProbeResult,
    _audio_stream,
    _from_library,
    decode,
    open_container,
    probe,
)
from .speech import Speech, detect
from .subtitles.cues import build_cues
from .subtitles.formats import FORMATS
from .subtitles.output import write_atomic, write_error_reason
from .transcript import Segment, Transcript, Word


class Cancelled(Exception):
    """Shutdown asked the running transcription to stop; the job goes back to the queue."""


# -- transcribe --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None         # None: detect
    beam_size: int = 5
    vad: bool = True
    batch_size: int = 8                 # 0: never batch
    batch_min_audio_seconds: float = 120.0
    # What an API request may set (None: Whisper's own default).
    task: str = "transcribe"            # translate: into English
    initial_prompt: str | None = None
    # None: Whisper's fallback list (0.0, 0.2 … 1.0; above 0 it samples at random). A number:
    # that temperature only (faster-whisper takes a float as a one-element list): no fallback.
    temperature: float | None = None

    def safer(self) -> "TranscribeOptions":
        """For a re-run of a suspect result: sequential decoding, VAD on, a wider beam."""
        return dataclasses.replace(self, vad=True, batch_size=0, beam_size=max(self.beam_size, 5))


def _on_speech(model, audio: np.ndarray, chunks: list[dict], kwargs: dict):
    """model.transcribe on the speech chunks found beforehand (`speech.detect`), timestamps
    mapped back to the file: what faster-whisper does inside `transcribe(vad_filter=True)`,
    without running the VAD a second time."""
    from faster_whisper.transcribe import restore_speech_timestamps
    from faster_whisper.vad import collect_chunks

    pieces, _ = collect_chunks(audio, chunks)
    segments, info = model.transcribe(np.concatenate(pieces), **{**kwargs, "vad_filter": False})
    return restore_speech_timestamps(segments, chunks, SAMPLE_RATE), info


def transcribe(model, audio: np.ndarray, opts: TranscribeOptions, *, batched_pipeline=None,
               model_name: str = "", on_progress: Callable[[float], None] | None = None,
               should_stop: Callable[[], bool] | None = None, safer: bool = False,
               speech: Speech | None = None) -> Transcript:
    """Run Whisper with the hallucination-resistant defaults and collect word timings.

    Long files go through `BatchedInferencePipeline` (faster on the same cores); its segments are
    ~30 s long, which is why cues are built from word timestamps, never from segments.
    With the VAD on, Silero runs once (`speech.detect`, or `speech` when computed beforehand
    by the prefetch or an earlier run on the same audio): its chunks are what Whisper hears on
    the sequential path, its regions go with the transcript to time the cues. The batched
    pipeline still VADs with settings of its own (30-s chunks, 160-ms pauses) that cannot be
    handed to it without changing how it batches.
    """
    duration = len(audio) / SAMPLE_RATE
    kwargs = dict(language=opts.language, beam_size=opts.beam_size, word_timestamps=True,
                  vad_filter=opts.vad, condition_on_previous_text=False, task=opts.task)
    if opts.initial_prompt:
        kwargs["initial_prompt"] = opts.initial_prompt
    if opts.temperature is not None:
        # Kept in the re-run: a pinned decode stays reproducible (the re-run's repetition
        # penalty and silence threshold still apply; only its fallback is given up).
        kwargs["temperature"] = opts.temperature
    if safer:
        # Whisper's own escape hatches against loops and text invented in silences.
        # Not no_repeat_ngram_size: real speech repeats phrases ("what your country can do
        # for you, ask what you can do for your country") and it garbles them.
        kwargs.update(repetition_penalty=1.1, compression_ratio_threshold=2.0,
                      hallucination_silence_threshold=2.0)
    use_batched = (batched_pipeline is not None and opts.batch_size > 0
                   and duration >= opts.batch_min_audio_seconds and not safer)
    if kwargs["vad_filter"] and speech is None:
        speech = detect(audio)
    try:
        if use_batched:
            segments, info = batched_pipeline.transcribe(audio, batch_size=opts.batch_size,
                                                         **kwargs)
        elif speech is not None and speech.chunks and kwargs["vad_filter"]:
            segments, info = _on_speech(model, audio, speech.whisper_chunks(), kwargs)
        else:   # VAD off, or no speech at all (faster-whisper then says so itself)
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
    except (Cancelled, StageError, GpuOutOfMemory):
        raise
    except MemoryError as e:
        raise StageError("transcribe_error", f"out of memory during transcription: {e}") from None
    except RuntimeError as e:   # CTranslate2 reports CUDA OOM and device errors this way
        if is_cuda_out_of_memory(e):
            raise GpuOutOfMemory(str(e)) from None
        raise StageError("transcribe_error", f"transcription failed: {e}") from None
    if on_progress is not None:
        on_progress(1.0)
    return Transcript(language=info.language, language_probability=float(info.language_probability),
                      duration=duration, segments=tuple(out), model=model_name,
                      speech=speech if kwargs["vad_filter"] else None)


# -- write -------------------------------------------------------------------------------------
# Scripts without spaces carry far more per character: subtitling guides use ~16 per line.
_DENSE_SCRIPTS = {"zh", "ja", "ko", "yue"}


def line_length(language: str) -> int:
    return 16 if language in _DENSE_SCRIPTS else 42


def cues(transcript: Transcript, max_cps: float = 20.0) -> list:
    """The transcript's subtitle cues, timed on its speech regions when the VAD found them."""
    return build_cues(transcript.words, max_line_chars=line_length(transcript.language),
                      language=transcript.language,   # its line-break rules (English default)
                      max_cps=max_cps,
                      speech=transcript.speech.regions if transcript.speech else None)


def write(transcript: Transcript, targets: dict[str, Path], max_cps: float = 20.0,
          before_commit=None) -> list[str]:
    """Render every format and write each atomically, cues at most `max_cps` characters per
    second. Returns the written paths. `before_commit()`, asked before each rename, may raise
    to write nothing more."""
    timed = cues(transcript, max_cps)
    written = []
    try:
        for fmt, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, FORMATS[fmt].render(transcript, timed), before_commit)
            written.append(str(target))
    except OSError as e:
        reason = write_error_reason(e)
        where = e.filename or (targets and next(iter(targets.values())).parent)
        raise StageError(reason, f"cannot write subtitles to {where}: "
                                 f"{os.strerror(e.errno) if e.errno else e}") from None
    return written
