"""The prefetch: the next queued file probed, decoded and VAD-ed ahead, in memory only, handed
to its job only when unchanged; and VAD done ahead giving the very transcript faster-whisper
gives with its own VAD (real tiny.en, real speech)."""

from __future__ import annotations

import os
import time

import numpy as np

from scribewatch.pipeline import stages
from scribewatch.pipeline.daemon.prefetch import Prefetcher
from scribewatch.pipeline.daemon.runner import JobHooks
from scribewatch.pipeline.speech import detect
from scribewatch.pipeline.store.sqlite import SqliteStore
from tests.harness import JFK_TEXT, wait_for
from tests.harness import media as gen
from tests.harness.quality import word_error_rate


def test_vad_done_ahead_gives_the_same_transcript(runner, media):
    # Silence around and between two speeches: the VAD cuts and the timestamps are mapped back.
    jfk = gen.load_speech(media / "jfk.flac")
    quiet = np.zeros(4 * stages.SAMPLE_RATE, np.float32)
    audio = np.concatenate([quiet, jfk, quiet, quiet, jfk])
    speech = detect(audio)
    chunks = speech.whisper_chunks()
    assert len(chunks) >= 2 and chunks[0]["start"] >= 3 * stages.SAMPLE_RATE
    # Temperature 0 only: faster-whisper's fallback temperatures sample at random, so two runs
    # of the very same call may differ; without them the comparison is exact.
    kwargs = dict(language="en", beam_size=5, word_timestamps=True, vad_filter=True,
                  condition_on_previous_text=False, temperature=0.0)
    with runner.model.use() as model:
        segments, _ = model.transcribe(audio, **kwargs)
        plain = [(s.start, s.end, s.text, [(w.start, w.end, w.word) for w in s.words])
                 for s in segments]
        segments, _ = stages._on_speech(model, audio, chunks, kwargs)
        ahead = [(s.start, s.end, s.text, [(w.start, w.end, w.word) for w in s.words])
                 for s in segments]
        # And through the stage, as the daemon calls it.
        transcript = stages.transcribe(model, audio, runner.options, speech=speech)
    assert ahead == plain
    assert plain[0][0] > 3.5                  # in the file's time, not the cut audio's
    assert transcript.words[0].start > 3.5 and "country" in transcript.text
    assert transcript.speech is speech               # carried on to time the cues


def _job(store: SqliteStore, path):
    st = os.stat(path)
    return store.get(store.enqueue(str(path), str(path.parent), st.st_size, st.st_mtime_ns, "f"))


def test_the_next_file_is_prepared_ahead_and_the_job_stays_queued(tmp_path, media):
    store = SqliteStore(tmp_path / "jobs.db")
    path = gen.speech_wav(tmp_path / "w" / "a.wav", [media / "jfk.flac"])
    job = _job(store, path)
    prefetcher = Prefetcher(store.peek_next, max_audio_seconds=60, vad_wanted=lambda s: True)
    prefetcher.start()
    try:
        prefetcher.poke()
        wait_for(lambda: prefetcher.prefetched == 1, 30, what="the prefetch")
        assert store.get(job.id).status == "queued"        # nothing written: crash-safe
        claimed = store.claim_next("0")
        got = prefetcher.take(claimed)
        assert got is not None and got.job_id == job.id
        assert abs(len(got.audio) / stages.SAMPLE_RATE - got.probe.duration) < 0.1
        assert got.speech and got.speech.regions and got.spans["probe"][0] <= got.spans["decode"][1]
        assert prefetcher.take(claimed) is None              # handed out once, memory freed
    finally:
        prefetcher.stop()
        store.close()


def test_a_changed_file_another_job_or_a_long_file_gets_no_prefetch(tmp_path, media):
    store = SqliteStore(tmp_path / "jobs.db")
    path = gen.speech_wav(tmp_path / "w" / "a.wav", [media / "jfk.flac"])
    other = gen.speech_wav(tmp_path / "w" / "b.wav", [media / "jfk.flac"])
    job, job_b = _job(store, path), _job(store, other)
    prefetcher = Prefetcher(store.peek_next, max_audio_seconds=60, vad_wanted=lambda s: False)
    prefetcher.start()
    try:
        prefetcher.poke()
        wait_for(lambda: prefetcher.prefetched == 1, 30, what="the prefetch")
        assert prefetcher.take(job_b) is None                # for another job: dropped
        prefetcher.poke()
        wait_for(lambda: prefetcher.prefetched == 2, 30, what="the prefetch again")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))   # rewritten since
        assert prefetcher.take(job) is None
    finally:
        prefetcher.stop()
    short = Prefetcher(store.peek_next, max_audio_seconds=5, vad_wanted=lambda s: True)
    assert short._prepare(job) is None                       # 11 s of audio > 5 s cap
    assert Prefetcher(store.peek_next, max_audio_seconds=0, vad_wanted=bool).enabled is False
    store.close()


class Recording(JobHooks):
    def __init__(self):
        self.ahead, self.timed_stages = [], []

    def timed(self, stage, fn, *args):
        self.timed_stages.append(stage)
        return super().timed(stage, fn, *args)

    def done_before(self, stage, result, start, end):
        self.ahead.append(stage)
        return super().done_before(stage, result, start, end)


def test_the_runner_uses_a_prefetched_file(runner, tmp_path, media):
    store = SqliteStore(tmp_path / "jobs.db")
    path = gen.speech_wav(tmp_path / "w" / "a.wav", [media / "jfk.flac"])
    job = _job(store, path)
    prefetcher = Prefetcher(store.peek_next, max_audio_seconds=60, vad_wanted=lambda s: True)
    prepared = prefetcher._prepare(job)
    hooks = Recording()
    result = runner.run(path, path.parent, hooks, prefetched=prepared)
    assert hooks.ahead == ["probe", "decode"] and hooks.timed_stages == ["transcribe", "write"]
    assert word_error_rate(JFK_TEXT, result.transcript.text) < 0.1
    store.close()
