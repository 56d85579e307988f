"""The key an API answer is kept under: a hash of the uploaded audio and of everything that
changes the answer.

The audio is hashed as uploaded, not as decoded PCM. Bazarr decodes the file to 16 kHz PCM
itself, the same way each time, and sends those bytes: for raw PCM (`encode=false`) the upload
*is* the decoded audio, so nothing is lost; a file uploaded again (an OpenAI client's retry)
has the same bytes too. Hashing decoded PCM would also match one recording in two containers,
a case no client makes, at the price of a full decode before the store can even be asked,
which is what a repeated request must not pay (seconds for a film, against a hash at ~1 GB/s).

What changes the answer: the task, the language asked for, the output format, the options the
request sets (word timestamps, VAD, initial prompt, temperature), the model, the daemon's own
decoding settings (beam size, VAD default, …) and the release (its renderers and guard).
`detect_language` depends on the audio and the model only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from ... import __version__
from ..stages import TranscribeOptions
from .contract import ApiRequest

_CHUNK = 1 << 20
# What a request sets itself: the rest of TranscribeOptions is the daemon's settings.
_PER_REQUEST = ("language", "task", "vad", "batch_size", "initial_prompt", "temperature")


def audio_digest(path: str, offset: int, length: int) -> str:
    """sha256 of the `length` bytes at `offset` of the spooled upload (the audio part)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left > 0:
            chunk = f.read(min(left, _CHUNK))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def answer_key(audio_sha256: str, request: ApiRequest, *, model: str,
               options: TranscribeOptions) -> str:
    """The key of `request`'s answer (hex sha256)."""
    parts: dict = {"audio": audio_sha256, "raw_pcm": request.raw_pcm, "task": request.task,
                   "model": model, "release": __version__}
    if request.task != "detect_language":
        settings = {k: v for k, v in dataclasses.asdict(options).items()
                    if k not in _PER_REQUEST}
        parts.update(
            output=request.output, language=request.language,
            word_timestamps=request.word_timestamps,
            vad=options.vad if request.vad_filter is None else request.vad_filter,
            prompt=request.prompt, temperature=request.temperature, settings=settings)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def detection_key(audio_sha256: str, raw_pcm: bool, *, model: str,
                  options: TranscribeOptions) -> str:
    """The key of `/detect-language`'s answer for this audio: an `/asr` without a language
    reuses that decision."""
    probe = ApiRequest(path="", offset=0, length=0, raw_pcm=raw_pcm, task="detect_language",
                       output="json")
    return answer_key(audio_sha256, probe, model=model, options=options)
