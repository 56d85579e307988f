"""The key an API answer is kept under (pipeline/api/answer_key.py): the audio's bytes and
everything that changes the answer, nothing else."""

from __future__ import annotations

import dataclasses
import hashlib

from scribewatch.pipeline.api.answer_key import answer_key, audio_digest, detection_key
from scribewatch.pipeline.contract import ApiRequest
from scribewatch.pipeline.stages import TranscribeOptions

OPTIONS = TranscribeOptions()


def key(request: ApiRequest, model: str = "tiny.en", options=OPTIONS) -> str:
    return answer_key("a" * 64, request, model=model, options=options)


def test_the_audio_digest_is_the_parts_bytes_alone(tmp_path):
    form = tmp_path / "form"
    form.write_bytes(b"--boundary-1\r\n" + b"PCM" * 1000 + b"\r\n--boundary-1--")
    other = tmp_path / "other"
    other.write_bytes(b"--another-boundary\r\n" + b"PCM" * 1000 + b"\r\n--x--")
    digest = audio_digest(str(form), 14, 3000)
    assert digest == audio_digest(str(other), 20, 3000) == hashlib.sha256(b"PCM" * 1000).hexdigest()


def test_everything_that_changes_the_answer_changes_the_key():
    base = ApiRequest("/spool/1", 0, 10, raw_pcm=True, output="srt", language="en")
    changes = [dict(task="translate"), dict(language="de"), dict(language=None),
               dict(output="vtt"), dict(word_timestamps=True), dict(vad_filter=False),
               dict(prompt="Names: Kennedy"), dict(temperature=0.2), dict(raw_pcm=False)]
    keys = {key(base)} | {key(dataclasses.replace(base, **c)) for c in changes}
    keys |= {key(base, model="base"), key(base, options=dataclasses.replace(OPTIONS,
                                                                             beam_size=1))}
    assert len(keys) == len(changes) + 3


def test_what_does_not_change_the_answer_leaves_the_key():
    base = ApiRequest("/spool/1", 0, 10, raw_pcm=True, output="srt", language="en")
    # Another spool file, offset, endpoint label; VAD asked as the daemon's default.
    same = dataclasses.replace(base, path="/spool/2", offset=99, endpoint="asr",
                               vad_filter=OPTIONS.vad)
    assert key(same) == key(base)


def test_detect_language_depends_on_the_audio_and_the_model_only():
    detect = ApiRequest("/spool/1", 0, 10, raw_pcm=True, task="detect_language",
                        output="json")
    assert key(detect) == key(dataclasses.replace(detect, prompt="x", vad_filter=False))
    assert key(detect) == detection_key("a" * 64, True, model="tiny.en", options=OPTIONS)
    assert key(detect) != key(detect, model="base")
