"""The prefetch in a real daemon (CPU, tiny.en, one worker): the next file's probe and decode
happen while the current file is transcribed, before its job is claimed, and the stage
timestamps the store records show it."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.harness import media as gen
from tests.harness import wait_for

# Real daemons with the real model: the whole suites run them (3.11 and 3.13), the smoke run
# on the Pythons between does not.
pytestmark = pytest.mark.slow


def test_the_next_file_is_decoded_while_the_current_one_is_transcribed(daemon_factory, media,
                                                                       tmp_path):
    long = gen.speech_wav(tmp_path / "src" / "long.wav", [media / "jfk.flac"] * 5)   # ~57 s
    short = gen.speech_wav(tmp_path / "src" / "short.wav", [media / "jfk.flac"])
    d = daemon_factory({"log_level": "debug"}).start()
    shutil.copy(long, d.watch / "a.wav")
    wait_for(lambda: len(d.jobs()) == 1, 30, what="the first job queued")
    # While the first is still queued or running, the second arrives.
    seen_queued_while_prefetched = []
    shutil.copy(short, d.watch / "b.wav")
    wait_for(lambda: len(d.jobs()) == 2, 30, 0.1, "the second job queued")

    def poll():
        jobs = d.jobs()
        if jobs[1]["status"] == "queued" and jobs[0]["status"] == "running":
            seen_queued_while_prefetched.append(jobs[1]["id"])
        return d.finished_count() == 2
    wait_for(poll, 180, 0.2, "both jobs")
    first, second = d.jobs()
    assert first["status"] == second["status"] == "succeeded"
    transcribe, ahead = json.loads(first["stage_spans"]), json.loads(second["stage_spans"])
    t_start, t_end = transcribe["transcribe"]
    probe_start, _ = ahead["probe"]
    _, decode_end = ahead["decode"]
    # The second file was probed and decoded during the first one's transcription ...
    assert t_start < probe_start and decode_end < t_end, (transcribe, ahead)
    # ... before its job was claimed (it stayed queued in the store meanwhile) ...
    assert second["started_at"] > decode_end
    assert seen_queued_while_prefetched
    # ... and both stages are in its row and the metrics as usual.
    assert {"probe", "decode", "transcribe", "write"} <= set(ahead)
    assert "prefetched " in d.log()
    assert d.stop() == 0


def test_a_kill_during_a_prefetch_loses_and_duplicates_nothing(daemon_factory, media, tmp_path):
    long = gen.speech_wav(tmp_path / "src" / "long.wav", [media / "jfk.flac"] * 8)   # ~90 s
    short = gen.speech_wav(tmp_path / "src" / "short.wav", [media / "jfk.flac"])
    d = daemon_factory({"log_level": "debug"}).start()
    shutil.copy(long, d.watch / "a.wav")
    wait_for(lambda: len(d.jobs()) == 1, 30, what="the first job queued")
    shutil.copy(short, d.watch / "b.wav")
    # The second file prepared ahead while the first is transcribed: then kill -9.
    wait_for(lambda: "prefetched " in d.log() and "b.wav" in d.log().split("prefetched ")[-1],
             60, 0.1, "the second file prefetched")
    first, second = d.jobs()
    assert (first["status"], second["status"]) == ("running", "queued")
    d.kill()
    assert [j["status"] for j in d.jobs()] == ["running", "queued"]   # as the kill left them
    d.start()
    d.wait_jobs(2, 180)
    first, second = d.jobs()
    assert first["status"] == second["status"] == "succeeded"
    assert second["attempts"] == 1 and second["crashes"] == 0       # never claimed before
    assert first["crashes"] == 1                                     # interrupted, run again
    srts = sorted(p.name for p in d.watch.iterdir() if p.suffix == ".srt")
    assert srts == ["a.en.srt", "b.en.srt"]
    assert d.stop() == 0
