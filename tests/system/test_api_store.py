"""API requests are jobs in the store (pipeline/api/queue.py, store/api_jobs.py): a job killed
with the daemon (-9) is finished after the restart and the client's retry gets its answer
without a second transcription; identical requests at once cost one transcription; a repeated
request is answered from the store. Real daemon, real model, real speech, real clients
(python-requests as Bazarr sends, the `openai` SDK). Transcriptions are counted in the
daemon's own store: a job that ran (`answered_by` empty) against the ones answered by it."""

from __future__ import annotations

import concurrent.futures
import threading

import numpy as np
import pytest
import requests

from tests.harness import JFK_TEXT, wait_for
from tests.harness.api import bazarr_asr, bazarr_detect, pcm_s16le, speech_pcm
from tests.harness.media import load_speech
from tests.harness.quality import parse_srt, word_error_rate

pytestmark = pytest.mark.slow


def api_jobs(daemon) -> list[dict]:
    return daemon.query("SELECT * FROM jobs WHERE source = 'api' ORDER BY id")


def transcriptions(daemon) -> list[dict]:
    """The API jobs that ran a model (the rest were answered by one of these)."""
    return [j for j in api_jobs(daemon) if j["answered_by"] is None]


def spool_files(daemon) -> list:
    return [p for p in daemon.tmp.glob("jobs.db.api-spool/*")]


def test_a_retry_after_kill_9_is_answered_without_a_second_transcription(daemon_factory,
                                                                          media):
    # A lease shorter than the transcription: its heartbeat must keep it (no takeover).
    daemon = daemon_factory({"workers": 1, "lease_seconds": 4, "heartbeat_seconds": 1})
    daemon.start()
    # Two minutes of different speech in each window: killed while it is transcribed.
    speech = [load_speech(media / name) for name in ("multilingual.mp3", "jfk.flac")]
    pcm = pcm_s16le(np.concatenate(speech * 2))
    lost: list = []
    first = threading.Thread(target=lambda: lost.append(_try(bazarr_asr, daemon.url, pcm)))
    first.start()
    wait_for(lambda: "API transcribe started" in daemon.log(), 60, what="the transcription")
    daemon.kill()
    first.join(30)
    assert isinstance(lost[0], requests.ConnectionError), lost   # Bazarr saw the drop
    [job] = api_jobs(daemon)
    assert (job["status"], job["endpoint"], job["source"]) == ("running", "asr", "api")
    assert len(spool_files(daemon)) == 1                     # its upload, kept for it

    daemon.start()           # the job is queued again at start, and run: nobody waits for it
    retry = bazarr_asr(daemon.url, pcm)                     # Bazarr asks again
    assert retry.status_code == 200, retry.text
    assert len(parse_srt(retry.text)) > 10
    ran = transcriptions(daemon)
    assert [j["id"] for j in ran] == [job["id"]] and ran[0]["status"] == "succeeded"
    assert ran[0]["crashes"] == 1 and ran[0]["language"] == "en"
    answered = [j for j in api_jobs(daemon) if j["answered_by"] == job["id"]]
    assert len(answered) == 1 and answered[0]["status"] == "succeeded"
    assert daemon.log_since_start().count("API transcribe started") == 1
    assert "taken over" not in daemon.log()
    wait_for(lambda: not spool_files(daemon), 10, what="the upload deleted with its job")
    # In `history`, by source in the metrics.
    assert {j["source"] for j in daemon.history()} == {"api"}
    assert 'scribewatch_jobs_total{outcome="succeeded",source="api"} 2.0' in daemon.metrics()


def _try(fn, *args):
    try:
        return fn(*args)
    except requests.RequestException as e:
        return e


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_identical_requests_cost_one_transcription(daemon_factory, media):
    openai = pytest.importorskip("openai", reason="pip install openai (the test extra)")
    daemon = daemon_factory({"workers": 1}).start()
    pcm = speech_pcm(media / "jfk.flac")

    # Ten Bazarr requests for the same audio at once: one job, nine join it.
    barrier = threading.Barrier(10)

    def ask(_):
        barrier.wait()
        return bazarr_asr(daemon.url, pcm)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(ask, range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    assert len({a.text for a in answers}) == 1
    text = " ".join(c.text for c in parse_srt(answers[0].text))
    assert word_error_rate(JFK_TEXT, text) < 0.15, text
    assert len(api_jobs(daemon)) == 10 and len(transcriptions(daemon)) == 1

    # Bazarr's whisperai: /detect-language, then /asr, again at the next subtitle search:
    # the second round is answered from the store.
    for _ in range(2):
        detected = bazarr_detect(daemon.url, pcm)
        assert detected.status_code == 200 and detected.json()["language_code"] == "en"
        assert bazarr_asr(daemon.url, pcm).text == answers[0].text
    assert len(transcriptions(daemon)) == 2                 # the first detection only

    # The OpenAI SDK uploading the same file again: answered from the store.
    client = openai.OpenAI(base_url=f"{daemon.url}/v1", api_key="unused", max_retries=0)
    texts = []
    for _ in range(2):
        with open(media / "jfk.flac", "rb") as f:
            texts.append(client.audio.transcriptions.create(model="whisper-1", file=f,
                                                            response_format="text"))
    assert texts[0] == texts[1] and word_error_rate(JFK_TEXT, texts[0]) < 0.15
    ran = transcriptions(daemon)
    assert [j["endpoint"] for j in ran] == ["asr", "detect_language", "transcriptions"]
    assert daemon.log().count("API transcribe started") == 2
    assert daemon.log().count("API detect_language started") == 1
    assert not spool_files(daemon)
    assert len(api_jobs(daemon)) == 16
    wait_for(lambda: daemon.status()["counts"]["succeeded"] == 16, 10,
             what="/api/status counting the API jobs")
