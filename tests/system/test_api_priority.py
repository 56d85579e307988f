"""API requests go ahead of the folder backlog, wait at most `api_max_wait_seconds` when every
worker is in the middle of a file, and are dropped when their client hangs up. Real daemon, real
model, real speech; long files are JFK's speech repeated with pauses (tens of minutes)."""

from __future__ import annotations

import concurrent.futures
import os
import time

import numpy as np
import pytest

from tests.harness import JFK_TEXT, wait_for
from tests.harness.api import (
    bazarr_asr,
    long_speech,
    multipart_body,
    pcm_s16le,
    post_then_hang_up,
    speech_pcm,
)
from tests.harness.media import load_speech, write_wav
from tests.harness.quality import parse_srt, word_error_rate

pytestmark = pytest.mark.slow


def drop(daemon, name: str, audio: np.ndarray) -> None:
    """A finished file appears in the inbox (written beside it, renamed in)."""
    staged = write_wav(daemon.tmp / f"staging-{name}", audio)
    os.replace(staged, daemon.watch / name)


def running_name(daemon) -> str | None:
    running = daemon.status()["running"]
    return os.path.basename(running[0]["path"]) if running else None


def timed_asr(daemon, pcm: bytes):
    started = time.monotonic()
    answer = bazarr_asr(daemon.url, pcm)
    return answer, time.monotonic() - started


def jfk_ok(answer) -> None:
    assert answer.status_code == 200, answer.text
    text = " ".join(c.text for c in parse_srt(answer.text))
    assert word_error_rate(JFK_TEXT, text) < 0.15, text


def test_a_queued_long_file_never_goes_before_an_api_request(daemon_factory, media):
    """One worker, a short file running and two 30-minute files queued behind it: the request
    is answered when the short file ends, before either long file starts."""
    daemon = daemon_factory({"workers": 1, "api_max_wait_seconds": 120}).start()
    drop(daemon, "a_short.wav", long_speech(media, 1.5))
    wait_for(lambda: running_name(daemon) == "a_short.wav", 60, what="the short file running")
    drop(daemon, "b_long.wav", long_speech(media, 30))
    drop(daemon, "c_long.wav", long_speech(media, 30))
    wait_for(lambda: daemon.status()["queue_jobs"] == 2, 30, what="two long files queued")
    assert running_name(daemon) == "a_short.wav", "send the request while the short file runs"
    answer, latency = timed_asr(daemon, speech_pcm(media / "jfk.flac"))
    answered = time.time()
    jfk_ok(answer)
    assert latency < 120
    log = daemon.log()
    # b_long may not have started yet when the answer is in: then it did not go first either
    long_started = log.find(f"started {daemon.watch}/b_long.wav")
    assert long_started == -1 or log.index("API transcribe started") < long_started
    jobs = {os.path.basename(j["path"]): j for j in daemon.jobs()}
    assert jobs["a_short.wav"]["finished_at"] < answered
    assert jobs["b_long.wav"]["started_at"] is None or jobs["b_long.wav"]["started_at"] > \
        answered - latency, "the long file started while the request waited"
    print(f"\n/asr latency behind the end of a running short file: {latency:.2f}s")


@pytest.mark.parametrize("api_workers", [1, 0])
def test_a_running_long_file_delays_a_request_at_most_the_configured_wait(
        daemon_factory, media, api_workers):
    """THE measurement: with a 30-minute file being transcribed and another queued, /asr is
    answered within the configured wait: by the API's own worker (`api_workers: 1`), or,
    with every worker in the middle of a file, refused as busy once the wait is over."""
    wait = 10
    daemon = daemon_factory({"workers": 1, "api_workers": api_workers,
                             "api_max_wait_seconds": wait}, sub=f"w{api_workers}").start()
    drop(daemon, "movie1.wav", long_speech(media, 30))
    wait_for(lambda: running_name(daemon) == "movie1.wav", 60, what="the long file running")
    drop(daemon, "movie2.wav", long_speech(media, 30))
    wait_for(lambda: (daemon.status()["running"] or [{}])[0].get("progress", 0) > 0, 60,
             what="the long file transcribing")
    pcm = speech_pcm(media / "jfk.flac")
    if not api_workers:     # /api/status shows the request waiting meanwhile
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(timed_asr, daemon, pcm)
            wait_for(lambda: daemon.status()["api"] == {"waiting": 1, "running": 0}, wait,
                     what="the request waiting in /api/status")
            answer, latency = pending.result()
    else:
        answer, latency = timed_asr(daemon, pcm)
    print(f"\n/asr latency with a 30-min file transcribing, api_workers={api_workers}: "
          f"{latency:.2f}s (status {answer.status_code})")
    if api_workers:
        jfk_ok(answer)
        assert latency < wait + 20, latency
    else:
        assert answer.status_code == 503, answer.text
        assert "[busy]" in answer.text and "-->" not in answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        assert wait - 0.5 < latency < wait + 10, latency
        assert 'code="503",endpoint="asr"} 1.0' in daemon.metrics()
    assert running_name(daemon) == "movie1.wav", "the folder job goes on"


def test_a_client_that_hangs_up_is_dropped_before_and_during_its_transcription(
        daemon_factory, media):
    daemon = daemon_factory({"workers": 1, "api_max_wait_seconds": 300}).start()
    jfk = multipart_body("audio_file", speech_pcm(media / "jfk.flac"))
    query = "/asr?task=transcribe&language=en&output=srt&encode=false"

    # Waiting for a worker (one busy with a long file): withdrawn, never run.
    drop(daemon, "movie.wav", long_speech(media, 10))
    wait_for(lambda: running_name(daemon) == "movie.wav", 60, what="the long file running")
    waited = time.monotonic() + 2
    post_then_hang_up(daemon.url, query, jfk, until=lambda: time.monotonic() > waited)
    wait_for(lambda: "client hung up; request withdrawn" in daemon.log(), 10,
             what="the withdrawal logged")
    assert "API transcribe started" not in daemon.log()
    daemon.stop()

    # Running: four minutes of speech, stopped at the next segment after the hang-up. Different
    # speech in each 30-s window (JFK over and over sends Whisper through its slow temperature
    # fallbacks, and the next segment is then long in coming).
    daemon = daemon_factory({"workers": 1}, sub="running").start()
    speech = [load_speech(media / name) for name in ("multilingual.mp3", "jfk.flac")]
    minutes = multipart_body("audio_file", pcm_s16le(np.concatenate(speech * 3)))
    hung_up = post_then_hang_up(daemon.url, query, minutes,
                                until=lambda: "API transcribe started" in daemon.log())
    wait_for(lambda: "cancelled: the client hung up" in daemon.log(), 30,
             what="the transcription stopped")
    stopped_after = time.monotonic() - hung_up
    print(f"\ntranscription stopped {stopped_after:.2f}s after the client hung up")
    assert "API transcribe done" not in daemon.log()
    assert 'code="499",endpoint="asr"} 1.0' in daemon.metrics()
    # The worker is free again at once.
    answer, latency = timed_asr(daemon, speech_pcm(media / "jfk.flac"))
    jfk_ok(answer)
