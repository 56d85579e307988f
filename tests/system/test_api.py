"""The transcription API against a real daemon and the real model, called the way its real
clients call it: Bazarr's `whisperai` provider (python-requests, raw PCM, its parameters) and
the `openai` Python SDK. Errors must never look like a subtitle: Bazarr stores any body."""

from __future__ import annotations

import json
import re

import pytest

from tests.harness import JFK_TEXT
from tests.harness.api import (
    bazarr_asr,
    bazarr_detect,
    bazarr_session,
    speech_pcm,
    token_hash,
)
from tests.harness.quality import check_readability, parse_srt, word_error_rate

pytestmark = pytest.mark.slow

TOKEN = "sk-scribewatch-test-0123456789abcdef"
# basic auth: user `bazarr`, password `secret` (sha256 form, no bcrypt cost in tests)
USERS = {"bazarr": "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def assert_not_subtitle(body: str) -> None:
    """What Bazarr would store: no SRT cue in it, short, and named."""
    assert "-->" not in body and len(body) < 600, body
    assert re.search(r"\[[a-z_]+\]", body), f"no reason code in {body!r}"
    with pytest.raises(ValueError):
        cues = parse_srt(body)
        assert not cues


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory({"api_max_upload_bytes": 3_000_000}).start()


def test_bazarr_provider_requests_get_a_correct_srt_and_language(daemon, media):
    pcm = speech_pcm(media / "jfk.flac")
    session = bazarr_session()
    # The "Test Connection" button: GET /status, JSON with a version.
    status = session.get(f"{daemon.url}/status", timeout=5)
    assert status.status_code == 200 and status.json()["version"]

    answer = bazarr_asr(daemon.url, pcm, video_file="/movies/Some Film (2020)/film.mkv",
                        session=session)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    cues = parse_srt(answer.content.decode("utf-8"))
    text = " ".join(c.text for c in cues)
    assert word_error_rate(JFK_TEXT, text) < 0.15, text
    assert cues[0].start < 1.0 and 9.0 < cues[-1].end < 11.5
    # The folder path's cue builder: readable, not Whisper's 30-s segments.
    assert check_readability(cues) == [], answer.text

    detected = bazarr_detect(daemon.url, pcm, session=session)
    assert detected.status_code == 200
    assert detected.json()["language_code"] == "en"
    assert detected.json()["detected_language"] == "english"

    metrics = daemon.metrics()
    assert 'scribewatch_api_requests_total{code="200",endpoint="asr"} 1.0' in metrics
    assert 'scribewatch_jobs_total{outcome="succeeded",source="api"} 2.0' in metrics
    assert 'scribewatch_jobs_total{outcome="succeeded",source="folder"} 0.0' in metrics
    assert 'scribewatch_api_request_duration_seconds_count{endpoint="detect_language"} 1.0' \
        in metrics


def test_whisper_asr_outputs_encode_true_and_word_timestamps(daemon, media):
    flac = (media / "jfk.flac").read_bytes()
    session = bazarr_session()

    def asr(output: str, **params):
        r = session.post(f"{daemon.url}/asr", params={"output": output, **params},
                         files={"audio_file": ("jfk.flac", flac)}, timeout=120)
        assert r.status_code == 200, r.text
        return r.text

    vtt = asr("vtt", encode="true", language="en")
    assert vtt.startswith("WEBVTT\n") and "fellow Americans" in vtt
    txt = asr("txt")                                   # whisper-asr's defaults: encode=true
    assert word_error_rate(JFK_TEXT, txt) < 0.15 and "-->" not in txt
    tsv = asr("tsv").splitlines()
    assert tsv[0] == "start\tend\ttext" and all(re.match(r"\d+\t\d+\t", r) for r in tsv[1:])
    doc = json.loads(asr("json", word_timestamps="true", vad_filter="false"))
    assert doc["language"] == "en" and "fellow Americans" in doc["text"]
    words = [w for s in doc["segments"] for w in s["words"]]
    assert any(w["word"].strip().startswith("Americans") for w in words)
    assert all(0 <= w["start"] <= w["end"] <= 11.5 for w in words)
    assert json.loads(asr("json"))["segments"][0]["words"] is None


def test_errors_are_named_and_never_shaped_like_a_subtitle(daemon, media):
    session = bazarr_session()
    url = daemon.url
    cases = [
        # not media at all (encode=true), then raw PCM with half a sample
        (session.post(f"{url}/asr", params={"output": "srt"},
                      files={"audio_file": b"this is a text file, not a film"}), 400,
         "not_media"),
        (bazarr_asr(url, b"\x01\x02\x03"), 400, "decode_error"),
        (bazarr_asr(url, b""), 400, "empty_file"),
        (session.post(f"{url}/asr", params={"output": "docx", "encode": "false"},
                      files={"audio_file": b"\0\0"}), 400, "bad_request"),
        (bazarr_asr(url, speech_pcm(media / "jfk.flac"), language="xx"), 400, "bad_request"),
        (session.post(f"{url}/asr", files={"other": b"x"}), 400, "bad_request"),
        # a second of silence: no speech, and an empty body would pass for a subtitle
        (bazarr_asr(url, b"\0\0" * 16000), 422, "no_speech"),
    ]
    for answer, status, reason in cases:
        assert answer.status_code == status, (reason, answer.text)
        assert f"[{reason}]" in answer.text
        assert_not_subtitle(answer.text)
    log = daemon.log()
    for reason in ("not_media", "decode_error", "bad_request", "no_speech"):
        assert f"[{reason}]" in log or f"/{reason}]" in log, reason
    metrics = daemon.metrics()
    assert 'scribewatch_api_requests_total{code="400",endpoint="asr"} 6.0' in metrics
    assert ('scribewatch_job_failures_total{reason="not_media",source="api",stage="probe"} 1.0'
            in metrics)
    assert daemon.alive()


def test_an_upload_over_the_limit_gets_413_before_its_body_is_read(daemon, media):
    too_big = b"\0\0" * 2_000_000          # 4 MB against a 3 MB limit
    answer = bazarr_asr(daemon.url, too_big)
    assert answer.status_code == 413
    assert "[upload_too_large]" in answer.text
    assert_not_subtitle(answer.text)
    # The connection was dropped, not the daemon: the next request is served.
    assert bazarr_asr(daemon.url, speech_pcm(media / "jfk.flac")).status_code == 200
    assert not list(daemon.tmp.glob("**/.scribewatch-upload-*"))
    assert 'code="413",endpoint="asr"} 1.0' in daemon.metrics()


# openai 3.x marks translations.create deprecated; it is still the endpoint clients call.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_openai_sdk_transcribes_with_a_bearer_token(daemon_factory, media):
    openai = pytest.importorskip("openai", reason="pip install openai (the test extra)")
    daemon = daemon_factory({"api_tokens": [token_hash(TOKEN)], "basic_auth_users": USERS,
                             "metrics_auth": False}).start()
    client = openai.OpenAI(base_url=f"{daemon.url}/v1", api_key=TOKEN, max_retries=0)
    with open(media / "jfk.flac", "rb") as f:
        plain = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert word_error_rate(JFK_TEXT, plain.text) < 0.15, plain.text

    def create(fmt: str, **kw):
        with open(media / "jfk.flac", "rb") as f:
            return client.audio.transcriptions.create(model="whisper-1", file=f,
                                                      response_format=fmt, **kw)

    assert word_error_rate(JFK_TEXT, create("text")) < 0.15
    srt = create("srt", language="en", temperature=0.0)
    assert isinstance(srt, str) and check_readability(parse_srt(srt)) == []
    assert create("vtt").startswith("WEBVTT")
    verbose = create("verbose_json", timestamp_granularities=["word", "segment"],
                     prompt="Kennedy inaugural address")
    assert verbose.language == "english" and 10.5 < verbose.duration < 11.5
    assert verbose.segments and verbose.words
    assert any(w.word.startswith("Americans") for w in verbose.words)
    with open(media / "jfk.flac", "rb") as f:
        translated = client.audio.translations.create(model="whisper-1", file=f)
    assert "fellow Americans" in translated.text

    # Wrong token: the SDK's own exception; a bad upload: its 400 with our reason code.
    bad = openai.OpenAI(base_url=f"{daemon.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError), open(media / "jfk.flac", "rb") as f:
        bad.audio.transcriptions.create(model="whisper-1", file=f)
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model="whisper-1",
                                           file=("notes.mp3", b"not audio", "audio/mpeg"))
    assert e.value.code == "not_media"

    # metrics_auth: false leaves /metrics open; the API and /api/status stay protected.
    assert daemon.get("/metrics")[0] == 200
    assert daemon.get("/api/status")[0] == 401
    session = bazarr_session()
    pcm = speech_pcm(media / "jfk.flac")
    refused = bazarr_asr(daemon.url, pcm, session=session)
    assert refused.status_code == 401
    assert_not_subtitle(refused.text)
    # Bazarr's endpoint URL may carry the user (http://user:password@host:port).
    authed = daemon.url.replace("http://", "http://bazarr:secret@")
    assert bazarr_asr(authed, pcm, session=session).status_code == 200
    assert session.get(f"{daemon.url}/status", timeout=5).status_code == 200   # Test button


def test_detect_language_on_german_speech_with_the_multilingual_model(daemon_factory, media,
                                                                      tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    daemon = daemon_factory({"model": "base", "models_dir": str(models)}).start(timeout=180)
    german = speech_pcm(media / "multilingual.mp3", 31.0, 59.5)
    detected = bazarr_detect(daemon.url, german)
    assert detected.status_code == 200, detected.text
    assert detected.json()["language_code"] == "de"
    assert detected.json()["detected_language"] == "german"
    english = bazarr_detect(daemon.url, speech_pcm(media / "multilingual.mp3", 0.0, 30.0))
    assert english.json()["language_code"] == "en"
    srt = bazarr_asr(daemon.url, german, language="de")
    assert srt.status_code == 200
    assert parse_srt(srt.text) and "-->" in srt.text
    assert {"die", "der", "und"} & set(_words(srt.text)), srt.text
