"""The HTTP API's answer bodies, from a transcript: whisper-asr-webservice's `output` formats
(what Bazarr asks for) and OpenAI's `response_format`s.

Subtitles are cut by the same cue builder as the folder path (`stages.cues`: word timestamps,
timed on the VAD's speech regions), so an API subtitle is as readable and as well timed as a
file's, never Whisper's 30-second segments.
"""

from __future__ import annotations

import json

from .. import stages
from ..language.codes import whisper_name
from ..subtitles.cues import Cue
from ..subtitles.formats import API_DOCUMENTS, FORMATS, JSON
from ..transcript import Transcript


def cues_of(transcript: Transcript) -> list[Cue]:
    return stages.cues(transcript)


def _r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def _segments(transcript: Transcript, words: bool) -> list[dict]:
    # The fields whisper-asr-webservice (faster_whisper engine) and OpenAI's verbose_json give;
    # token ids and the seek offset are not kept by the pipeline, so they are empty / 0.
    return [{
        "id": i, "seek": 0, "start": _r(s.start), "end": _r(s.end), "text": s.text,
        "tokens": [], "temperature": 0.0, "avg_logprob": _r(s.avg_logprob, 4),
        "compression_ratio": _r(s.compression_ratio, 4),
        "no_speech_prob": _r(s.no_speech_prob, 4),
        "words": ([{"start": _r(w.start), "end": _r(w.end), "word": w.text,
                    "probability": _r(w.probability, 4)} for w in s.words] if words else None),
    } for i, s in enumerate(transcript.segments)]


def render(transcript: Transcript, output: str, *, task: str = "transcribe",
           words: bool = False) -> tuple[bytes, str]:
    """(body, content type) for `output` (contract.API_OUTPUTS: subtitles/formats.py). `words`:
    word timings in the json answers (whisper-asr's word_timestamps, OpenAI's
    timestamp_granularities[]=word)."""
    if output not in API_DOCUMENTS and output in FORMATS:   # a format of the registry
        fmt = FORMATS[output]
        return fmt.render(transcript, cues_of(transcript)).encode(), fmt.content_type
    if output == "json":     # OpenAI's {"text"} plus whisper-asr-webservice's fields
        doc = {"text": transcript.text, "language": transcript.language,
               "segments": _segments(transcript, words)}
    elif output == "verbose_json":
        doc = {"task": task,
               "language": "english" if task == "translate" else whisper_name(transcript.language),
               "duration": _r(transcript.duration), "text": transcript.text,
               "segments": _segments(transcript, False)}
        if words:
            doc["words"] = [{"word": w.text.strip(), "start": _r(w.start), "end": _r(w.end)}
                            for w in transcript.words]
    else:
        raise ValueError(f"unknown output {output!r}")
    return json.dumps(doc, ensure_ascii=False).encode() + b"\n", JSON


def detection(language: str, probability: float) -> tuple[bytes, str]:
    """/detect-language's answer, as whisper-asr-webservice gives it."""
    doc = {"detected_language": whisper_name(language), "language_code": language,
           "confidence": round(float(probability), 4)}
    return json.dumps(doc).encode() + b"\n", JSON
