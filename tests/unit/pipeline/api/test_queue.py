"""The API queue (pipeline/api/queue.py) with the real tiny.en model on real speech: requests
are run in order by `run_next`, expire as `busy` after the wait, are dropped when withdrawn,
refused at shutdown; uploads are read as raw PCM or decoded media; answers are rendered."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from scribewatch.pipeline.api.queue import ApiJobs, load_audio
from scribewatch.pipeline.api.render import render
from scribewatch.pipeline.contract import ApiFailed, ApiRequest
from scribewatch.pipeline.errors import StageError
from scribewatch.pipeline.model import ModelManager
from scribewatch.pipeline.stages import TranscribeOptions
from tests.harness import JFK_TEXT
from tests.harness.api import pcm_s16le
from tests.harness.media import load_speech
from tests.harness.quality import check_readability, parse_srt, word_error_rate


class Recorder:
    """A Reporter that keeps what it was told (the real one is the exporter's)."""

    def __init__(self):
        self.finished: list[tuple] = []

    def job_finished(self, outcome, **kw):
        self.finished.append((outcome, kw.get("reason"), kw.get("source")))

    def stage_observed(self, stage, seconds): ...
    def suspect_transcript(self): ...


@pytest.fixture(scope="module")
def model(model_dir):
    return ModelManager(model_dir, device="cpu", compute_type="int8", cpu_threads=2)


@pytest.fixture
def jfk_pcm(tmp_path, media):
    path = tmp_path / "upload"
    path.write_bytes(b"HEAD" + pcm_s16le(load_speech(media / "jfk.flac")) + b"TAIL")
    return path


def jobs(model, wait=5.0) -> tuple[ApiJobs, Recorder, list]:
    notified: list[float] = []
    reporter = Recorder()
    api = ApiJobs(model, TranscribeOptions(batch_size=0, temperature=0.0), max_wait_seconds=wait,
                  notify=lambda: notified.append(time.monotonic()), reporter=reporter)
    return api, reporter, notified


def request(path, **kw) -> ApiRequest:
    size = path.stat().st_size
    return ApiRequest(str(path), 4, size - 8, raw_pcm=True, **kw)


def test_a_request_is_run_by_the_next_worker_and_rendered(model, jfk_pcm):
    api, reporter, notified = jobs(model)
    ticket = api.submit(request(jfk_pcm, language="en", output="srt"))
    assert notified and api.waiting == 1       # the workers are woken for it
    assert api.run_next() is True and api.run_next() is False
    result = ticket.future.result(0)
    cues = parse_srt(result.body.decode())
    assert word_error_rate(JFK_TEXT, " ".join(c.text for c in cues)) < 0.15
    assert check_readability(cues) == []
    assert result.language == "en" and 10.9 < result.audio_seconds < 11.1
    assert reporter.finished == [("succeeded", None, "api")]


def test_a_request_no_worker_takes_expires_as_busy(model, jfk_pcm):
    api, _, _ = jobs(model, wait=0.3)
    ticket = api.submit(request(jfk_pcm))
    with pytest.raises(ApiFailed) as e:
        ticket.future.result(5)
    assert (e.value.status, e.value.reason, e.value.retry_after) == (503, "busy", 1)
    assert api.waiting == 0 and api.run_next() is False


def test_a_withdrawn_request_is_never_run(model, jfk_pcm):
    api, reporter, _ = jobs(model)
    first, second = api.submit(request(jfk_pcm)), api.submit(request(jfk_pcm, output="txt"))
    first.cancel()
    assert api.run_next() is True              # the second one; the first is dropped
    assert first.future.cancelled() and second.future.result(0).body.strip()
    assert len(reporter.finished) == 1


def test_a_running_request_stops_when_withdrawn(model, tmp_path, media):
    long = tmp_path / "long"
    # Different speech in each 30-s window: a window repeating itself sends Whisper through
    # its temperature fallbacks (slow), which is not what this is about.
    speech = [load_speech(media / name) for name in ("multilingual.mp3", "jfk.flac")]
    long.write_bytes(pcm_s16le(np.concatenate(speech * 2)))                       # 2 min
    api, reporter, _ = jobs(model)
    ticket = api.submit(ApiRequest(str(long), 0, long.stat().st_size, raw_pcm=True))
    runner = threading.Thread(target=api.run_next)
    runner.start()
    time.sleep(1.0)
    ticket.cancel()
    cancelled = time.monotonic()
    runner.join(60)
    stopped = time.monotonic() - cancelled
    with pytest.raises(ApiFailed) as e:
        ticket.future.result(0)
    assert e.value.status == 499 and reporter.finished == []
    assert stopped < 15, f"{stopped:.1f}s: it should stop at the next segment"


def test_shutdown_refuses_what_waits_and_what_comes(model, jfk_pcm):
    api, _, _ = jobs(model)
    waiting = api.submit(request(jfk_pcm))
    api.close()
    late = api.submit(request(jfk_pcm))
    for ticket in (waiting, late):
        with pytest.raises(ApiFailed) as e:
            ticket.future.result(0)
        assert e.value.status == 503


def test_unknown_languages_are_refused_at_once(model, jfk_pcm):
    api, _, _ = jobs(model)
    with pytest.raises(ApiFailed) as e:
        api.submit(request(jfk_pcm, language="klingon"))
    assert (e.value.status, e.value.reason) == (400, "bad_request") and api.waiting == 0


def test_bad_uploads_get_the_folder_paths_reason_codes(model, tmp_path):
    api, reporter, _ = jobs(model)
    odd, text = tmp_path / "odd", tmp_path / "text"
    odd.write_bytes(b"\x00\x01\x02")
    text.write_bytes(b"plain words, not media")
    cases = [(ApiRequest(str(odd), 0, 3, raw_pcm=True), 400, "decode_error"),
             (ApiRequest(str(text), 0, 22, raw_pcm=False), 400, "not_media"),
             (ApiRequest(str(odd), 0, 0, raw_pcm=True), 400, "empty_file"),
             (ApiRequest(str(odd), 0, 2, raw_pcm=True), 422, "no_speech")]
    for req, status, reason in cases:
        ticket = api.submit(req)
        api.run_next()
        with pytest.raises(ApiFailed) as e:
            ticket.future.result(0)
        assert (e.value.status, e.value.reason) == (status, reason)
        assert str(tmp_path) not in e.value.message       # the spool path is nobody's business
    assert [f[1] for f in reporter.finished] == ["decode_error", "not_media", "empty_file",
                                                 "no_speech"]


def test_media_inside_a_form_is_decoded_from_its_part(tmp_path, media):
    flac = (media / "jfk.flac").read_bytes()
    path = tmp_path / "form"
    path.write_bytes(b"--b\r\n\r\n" + flac + b"\r\n--b--\r\n")
    audio = load_audio(ApiRequest(str(path), 7, len(flac), raw_pcm=False))
    assert abs(len(audio) / 16000 - 11.0) < 0.05
    assert list(tmp_path.iterdir()) == [path]            # the part's own file is gone
    with pytest.raises(StageError):
        load_audio(ApiRequest(str(path), 0, 7, raw_pcm=False))


def test_uploads_are_on_the_players_clock(tmp_path):
    """An uploaded file goes through the same decode as a watched one: an MKV whose audio
    starts 3.5 s after its picture is heard from 3.5 s (tests/unit/pipeline/test_timeline.py has
    the rules). Raw PCM has no timestamps: its first sample is at 0 s."""
    from tests.harness import containers

    times = [0.5, 1.5]
    signal = containers.bursts(times, 2.0)
    clock = containers.mkv_late(signal, tmp_path / "late.mkv", 3.5)
    size = clock.path.stat().st_size
    audio = load_audio(ApiRequest(str(clock.path), 0, size, raw_pcm=False))
    assert [round(t, 3) for t in containers.onsets(audio)] == [4.0, 5.0]
    raw = tmp_path / "raw"
    raw.write_bytes(pcm_s16le(signal))
    audio = load_audio(ApiRequest(str(raw), 0, raw.stat().st_size, raw_pcm=True))
    assert len(audio) == len(signal)
    assert [round(t, 3) for t in containers.onsets(audio)] == times


def test_every_output_format_renders(real_speech):
    transcript = real_speech["jfk.flac"]
    bodies = {fmt: render(transcript, fmt, words=True)
              for fmt in ("srt", "vtt", "txt", "tsv", "json", "text", "verbose_json")}
    assert bodies["srt"][1].startswith("text/plain") and parse_srt(bodies["srt"][0].decode())
    assert bodies["vtt"][0].startswith(b"WEBVTT\n")
    assert bodies["tsv"][0].splitlines()[0] == b"start\tend\ttext"
    assert bodies["json"][1] == "application/json"
    doc = json.loads(bodies["json"][0])
    assert doc["text"] and doc["segments"][0]["words"][0]["word"]
    verbose = json.loads(bodies["verbose_json"][0])
    assert verbose["language"] == "english" and verbose["task"] == "transcribe"
    assert verbose["words"][0] == {"word": "And", "start": verbose["words"][0]["start"],
                                   "end": verbose["words"][0]["end"]}
    assert json.loads(render(transcript, "verbose_json", task="translate")[0])["language"] \
        == "english"
    assert "words" not in json.loads(render(transcript, "verbose_json")[0])
    with pytest.raises(ValueError):
        render(transcript, "docx")
