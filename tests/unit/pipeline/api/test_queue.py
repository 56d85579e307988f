"""The API queue (pipeline/api/queue.py) with the real tiny.en model on real speech and a real
SQLite store: requests are jobs run in order by `run_next`, expire as `busy` after the wait,
are dropped when withdrawn, refused at shutdown; a repeated request is answered from the store,
one in flight is joined, a job outlives its process; uploads are read as raw PCM or decoded
media; answers are rendered."""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from scribewatch.pipeline.api.queue import AnswerBounds, ApiJobs, load_audio
from scribewatch.pipeline.api.render import render
from scribewatch.pipeline.contract import ApiFailed, ApiRequest
from scribewatch.pipeline.errors import StageError
from scribewatch.pipeline.model import ModelManager
from scribewatch.pipeline.stages import TranscribeOptions
from scribewatch.pipeline.store import SqliteStore
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


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "jobs.db")
    yield store
    store.close()


@pytest.fixture
def jobs(model, store, tmp_path):
    made: list[ApiJobs] = []

    def make(wait=5.0, bounds=AnswerBounds()) -> tuple[ApiJobs, Recorder, list]:
        notified: list[float] = []
        reporter = Recorder()
        api = ApiJobs(model, TranscribeOptions(batch_size=0, temperature=0.0), store=store,
                      spool_dir=str(tmp_path / "spool"), max_wait_seconds=wait,
                      notify=lambda: notified.append(time.monotonic()), reporter=reporter,
                      bounds=bounds)
        made.append(api)
        return api, reporter, notified
    yield make
    for api in made:
        api.close()     # its poller stops before the store closes
    time.sleep(0.3)


def request(path, **kw) -> ApiRequest:
    """A request on its own copy of the upload: each upload is spooled apart, and a new job
    takes its spool file (and deletes it when it ends)."""
    copy = path.parent / f"{path.name}-{next(_copies)}"
    shutil.copyfile(path, copy)
    size = copy.stat().st_size
    return ApiRequest(str(copy), 4, size - 8, raw_pcm=True, **kw)


_copies = itertools.count()


def test_a_request_is_run_by_the_next_worker_and_rendered(jobs, jfk_pcm):
    api, reporter, notified = jobs()
    ticket = api.submit(request(jfk_pcm, language="en", output="srt"))
    assert notified and api.waiting == 1       # the workers are woken for it
    assert api.run_next() is True and api.run_next() is False
    result = ticket.future.result(0)
    cues = parse_srt(result.body.decode())
    assert word_error_rate(JFK_TEXT, " ".join(c.text for c in cues)) < 0.15
    assert check_readability(cues) == []
    assert result.language == "en" and 10.9 < result.audio_seconds < 11.1
    assert reporter.finished == [("succeeded", None, "api")]


def test_a_request_no_worker_takes_expires_as_busy(jobs, jfk_pcm):
    api, _, _ = jobs(wait=0.3)
    ticket = api.submit(request(jfk_pcm))
    with pytest.raises(ApiFailed) as e:
        ticket.future.result(5)
    assert (e.value.status, e.value.reason, e.value.retry_after) == (503, "busy", 1)
    assert api.waiting == 0 and api.run_next() is False


def test_a_withdrawn_request_is_never_run(jobs, jfk_pcm):
    api, reporter, _ = jobs()
    first, second = api.submit(request(jfk_pcm)), api.submit(request(jfk_pcm, output="txt"))
    first.cancel()
    assert api.run_next() is True              # the second one; the first is dropped
    assert first.future.cancelled() and second.future.result(0).body.strip()
    assert len(reporter.finished) == 1


def test_a_running_request_stops_when_withdrawn(jobs, store, tmp_path, media):
    long = tmp_path / "long"
    # Different speech in each 30-s window: a window repeating itself sends Whisper through
    # its temperature fallbacks (slow), which is not what this is about.
    speech = [load_speech(media / name) for name in ("multilingual.mp3", "jfk.flac")]
    long.write_bytes(pcm_s16le(np.concatenate(speech * 2)))                       # 2 min
    api, reporter, _ = jobs()
    ticket = api.submit(ApiRequest(str(long), 0, long.stat().st_size, raw_pcm=True))
    runner = threading.Thread(target=api.run_next)
    runner.start()
    time.sleep(1.0)
    ticket.cancel()
    cancelled = time.monotonic()
    runner.join(60)
    stopped = time.monotonic() - cancelled
    assert ticket.future.cancelled() and reporter.finished == []
    job = store.history(1)[0]                  # the job says so, and its upload is gone
    assert (job.source, job.status, job.reason) == ("api", "failed", "cancelled")
    assert not long.exists()
    assert stopped < 15, f"{stopped:.1f}s: it should stop at the next segment"


def test_shutdown_refuses_what_waits_and_what_comes(jobs, jfk_pcm):
    api, _, _ = jobs()
    waiting = api.submit(request(jfk_pcm))
    api.close()
    late = api.submit(request(jfk_pcm))
    for ticket in (waiting, late):
        with pytest.raises(ApiFailed) as e:
            ticket.future.result(0)
        assert e.value.status == 503


def test_unknown_languages_are_refused_at_once(jobs, jfk_pcm):
    api, _, _ = jobs()
    with pytest.raises(ApiFailed) as e:
        api.submit(request(jfk_pcm, language="klingon"))
    assert (e.value.status, e.value.reason) == (400, "bad_request") and api.waiting == 0


def test_bad_uploads_get_the_folder_paths_reason_codes(jobs, tmp_path):
    api, reporter, _ = jobs()
    odd, text = tmp_path / "odd", tmp_path / "text"
    odd.write_bytes(b"\x00\x01\x02")
    text.write_bytes(b"plain words, not media")
    cases = [((odd, 0, 3, True), 400, "decode_error"),
             ((text, 0, 22, False), 400, "not_media"),
             ((odd, 0, 0, True), 400, "empty_file"),
             ((odd, 0, 2, True), 422, "no_speech")]
    for (path, offset, length, raw), status, reason in cases:
        copy = tmp_path / f"{reason}.upload"
        shutil.copyfile(path, copy)
        ticket = api.submit(ApiRequest(str(copy), offset, length, raw_pcm=raw))
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


# -- jobs in the store: kept answers, one job per answer in flight, a restart ------------------
def test_a_repeated_request_is_answered_from_the_store_without_a_worker(jobs, store, jfk_pcm):
    api, reporter, _ = jobs()
    first = api.submit(request(jfk_pcm, language="en", output="srt"))
    assert first.took_upload and api.run_next() is True
    body = first.future.result(0).body
    assert not Path(first.request.path).exists()          # the upload went with its job
    started = time.perf_counter()
    again = api.submit(request(jfk_pcm, language="en", output="srt"))
    took = time.perf_counter() - started
    assert again.future.result(0).body == body and not again.took_upload
    assert api.run_next() is False                         # no worker was needed
    assert took < 0.5, f"{took:.3f}s for an answer the store had"
    newest, original = store.history(2)
    assert (newest.source, newest.endpoint, newest.status) == ("api", "transcribe", "succeeded")
    assert newest.answered_by == original.id and original.answered_by is None
    assert original.stage_seconds["transcribe"] > 0 and original.model == api.model.name
    assert [f[0] for f in reporter.finished] == ["succeeded", "succeeded"]
    # Anything that changes the answer is another answer: here the output format.
    other = api.submit(request(jfk_pcm, language="en", output="txt"))
    assert not other.future.done() and api.run_next() is True
    assert other.future.result(0).body != body


def test_identical_requests_in_flight_share_one_job(jobs, store, jfk_pcm):
    api, _, _ = jobs()
    tickets = [api.submit(request(jfk_pcm, language="en")) for _ in range(5)]
    assert [t.took_upload for t in tickets] == [True, False, False, False, False]
    assert api.run_next() is True and api.run_next() is False
    assert len({t.future.result(0).body for t in tickets}) == 1
    rows = store.history(10)
    assert len(rows) == 5 and [r.answered_by is None for r in rows].count(True) == 1


def test_a_client_that_hangs_up_leaves_the_job_to_the_others(jobs, store, jfk_pcm):
    api, _, _ = jobs()
    owner = api.submit(request(jfk_pcm, language="en"))
    other = api.submit(request(jfk_pcm, language="en"))
    owner.cancel()
    assert api.run_next() is True
    assert other.future.result(0).language == "en" and owner.future.cancelled()


def test_asr_after_detect_language_reuses_the_decision(jobs, jfk_pcm, caplog):
    api, _, _ = jobs()
    detect = api.submit(request(jfk_pcm, task="detect_language", output="json"))
    api.run_next()
    assert detect.future.result(0).language == "en"
    asr = api.submit(request(jfk_pcm, output="srt"))      # no language: Bazarr's second call
    with caplog.at_level(logging.INFO, logger="scribewatch.pipeline.api.queue"):
        api.run_next()
    assert asr.future.result(0).language == "en"
    assert "language en from the earlier /detect-language" in caplog.text


def test_a_job_outlives_its_process_and_its_answer_waits_for_the_retry(jobs, store, jfk_pcm):
    api, _, _ = jobs(wait=60)
    lost = api.submit(request(jfk_pcm, language="en"))
    job = store.claim_next_api("w0")          # a worker took it, then the daemon was killed
    requeued, failed = store.recover_after_crash(3)   # what the next start does first
    assert [j.id for j in requeued] == [job.id] and failed == []
    after, _, _ = jobs()
    assert after.remove_orphans() == []       # its upload is still needed
    assert after.run_next() is True and not Path(lost.request.path).exists()
    retry = after.submit(request(jfk_pcm, language="en"))
    assert retry.future.result(0).language == "en" and after.run_next() is False
    assert store.history(1)[0].answered_by == job.id


def test_uploads_no_job_needs_are_removed_at_start(jobs, jfk_pcm):
    api, _, _ = jobs(wait=60)
    spool = Path(api.spool_dir)
    orphan, needed = spool / ".scribewatch-upload-orphan", spool / ".scribewatch-upload-job"
    orphan.write_bytes(b"a kill between the spool and the job")
    shutil.copyfile(jfk_pcm, needed)
    api.submit(ApiRequest(str(needed), 4, needed.stat().st_size - 8, raw_pcm=True))
    for path in (orphan, needed):
        os.utime(path, (1, 1))                # from before the next process
    after, _, _ = jobs()
    assert after.remove_orphans() == [str(orphan)] and needed.exists() and not orphan.exists()


def test_answers_kept_nowhere_when_the_bound_is_zero(jobs, store, jfk_pcm):
    api, _, _ = jobs(bounds=AnswerBounds(max_bytes=0))
    first = api.submit(request(jfk_pcm, language="en"))
    api.run_next()
    assert first.future.result(0) and store.api_answers_size() == (0, 0)
    again = api.submit(request(jfk_pcm, language="en"))
    assert not again.future.done() and api.run_next() is True


def test_two_nodes_of_a_postgres_store_share_the_job_in_flight_and_its_answer(
        model, postgres_url, tmp_path, jfk_pcm):
    from scribewatch.pipeline.store import LeaseSettings, open_store

    nodes = []
    for name in ("a", "b"):
        store = open_store(postgres_url, LeaseSettings(name, 30, 0))
        nodes.append((store, ApiJobs(model, TranscribeOptions(batch_size=0), store=store,
                                     spool_dir=str(tmp_path / f"spool-{name}"),
                                     max_wait_seconds=60, notify=lambda: None)))
    (store_a, a), (store_b, b) = nodes
    try:
        on_a = a.submit(request(jfk_pcm, language="en"))
        on_b = b.submit(request(jfk_pcm, language="en"))      # joins a's job: no job of its own
        assert on_a.took_upload and not on_b.took_upload
        assert b.run_next() is False                           # the upload is a's
        assert a.run_next() is True
        # b's request was waiting for another node's job: settled from the store.
        assert on_b.future.result(10).body == on_a.future.result(0).body
        again = b.submit(request(jfk_pcm, language="en"))      # kept for every node
        assert again.future.result(0).body == on_a.future.result(0).body
        rows = store_b.history(10)
        assert [r.node for r in rows if r.answered_by is None] == ["a"]
        assert sorted(r.node for r in rows if r.answered_by) == ["b", "b"]
    finally:
        for store, api in nodes:
            api.close()
        time.sleep(0.3)
        for store, api in nodes:
            store.close()
