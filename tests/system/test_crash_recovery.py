"""The real daemon SIGKILLed from outside: no good file is lost, a poison file is still branded.

A death during a job counts against the file only when the daemon dies again at the same
point of it with no progress in between (pipeline/store/sql.py, recover_after_crash). These tests
kill a real `scribewatch run` process with SIGKILL and restart it, like an OOM kill of a
neighbour, a container restart or a power cut would.
"""

from __future__ import annotations

import collections
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest

from scribewatch.pipeline.subtitles.output import TMP_MARK
from tests.harness import SHARED_MEDIA, wait_for
from tests.harness import media as gen
from tests.harness.http_recorder import HttpRecorder
from tests.harness.quality import parse_srt

pytestmark = pytest.mark.slow

RATE = gen.RATE


def distinct_speech_files(folder: Path, count: int) -> list[Path]:
    """`count` short WAVs of real speech, each with different content (different cuts of
    jfk.flac, some followed by hotwords.mp3), made outside the watch folder."""
    jfk = gen.load_speech(SHARED_MEDIA / "jfk.flac")
    hot = gen.load_speech(SHARED_MEDIA / "hotwords.mp3")
    files = []
    for i in range(count):
        start = int(i * 0.25 * RATE)                    # 0 … 5.75 s into the speech
        clip = jfk[start:start + int(4.5 * RATE)]
        if i % 3 == 0:
            clip = np.concatenate([clip, hot])
        files.append(gen.write_wav(folder / f"talk{i:02d}.wav", clip))
    return files


def died_during(daemon, counted: set | None = None) -> list[str]:
    """Where the jobs running at the moment of death were: what the next start recovers.

    `counted`: the claims (job, lease token) earlier kills landed in. A claim seen again was
    not recovered yet (a daemon killed again before its start-up got that far, as on a loaded
    machine): the same death, which the store counts once."""
    running = [j for j in daemon.jobs() if j["status"] == "running"
               and (counted is None or (j["id"], j["lease_token"]) not in counted)]
    if counted is not None:
        counted.update((j["id"], j["lease_token"]) for j in running)
    return [f"{Path(j['path']).stem}:{j['current_stage'] or 'start'}"
            + (f"@{j['checkpoint']:g}" if j["checkpoint"] else "") for j in running]


def test_random_kills_from_outside_lose_no_good_file(daemon_factory, tmp_path):
    d = daemon_factory().start()
    staging = tmp_path / "staging"
    staging.mkdir()
    files = distinct_speech_files(staging, 24)
    started = time.monotonic()
    for f in files:
        os.rename(f, d.watch / f.name)        # whole files, as a finished download arrives

    rng = random.Random(11)
    landed: list[str] = []
    counted: set = set()
    written_not_recorded = 0
    for _ in range(15):
        time.sleep(rng.uniform(0.5, 4.0))
        d.kill()
        during = died_during(d, counted)
        landed.append(",".join(during) or "no job")
        # A kill after the subtitle was renamed into place but before the store said so.
        written_not_recorded += sum(
            1 for j in d.jobs() if j["status"] == "running" and j["current_stage"] == "write"
            and (d.watch / f"{Path(j['path']).stem}.en.srt").exists())
        d.start(wait_ready=False)             # restarted at once, like systemd/Docker would
    storm = time.monotonic() - started
    jobs = d.wait_jobs(24, timeout=300)
    total = time.monotonic() - started

    stages = collections.Counter(p.split(":")[1].split("@")[0] for p in ",".join(
        x for x in landed if x != "no job").split(",") if p)
    print(f"\n15 kills in {storm:.1f}s, all 24 done after {total:.1f}s; kills landed: "
          f"{dict(stages)} in a job, {landed.count('no job')} with none running; "
          f"{written_not_recorded} after write before success; "
          f"deaths per job: {sorted((j['crashes'] for j in jobs if j['crashes']), reverse=True)}, "
          f"most strikes {max(j['strikes'] for j in jobs)}")
    print("kills:", "; ".join(landed))

    assert len(d.jobs()) == 24, "one job per file"
    assert sorted(Path(j["path"]).name for j in jobs) == sorted(f.name for f in files)
    assert [j for j in jobs if j["status"] != "succeeded"] == [], \
        [(j["path"], j["status"], j["reason"], j["error_message"]) for j in jobs]
    assert all(j["attempts"] == 1 for j in jobs), "a death is not a transient-failure attempt"
    assert sum(j["crashes"] for j in jobs) == sum(1 for x in landed if x != "no job")
    names = sorted(p.name for p in d.watch.iterdir())
    assert names == sorted([f.name for f in files] + [f"{f.stem}.en.srt" for f in files]), \
        "exactly one subtitle per file, nothing else (no duplicate, no temporary file)"
    assert not [p for p in d.tmp.rglob("*") if TMP_MARK in p.name]
    for f in files:
        cues = parse_srt((d.watch / f"{f.stem}.en.srt").read_text())
        assert cues and any("country" in c.text.lower() or "ask" in c.text.lower()
                            for c in cues), f.name
    assert "crashed_repeatedly" not in d.log()
    # The last restart may come after the last job finished: let it get up before the SIGTERM
    # (one before Python has run scribewatch's first lines would still end it by signal).
    d.wait_ready()
    assert d.stop() == 0


def test_a_file_that_kills_the_daemon_at_one_point_fails_as_crashed_repeatedly(
        daemon_factory, tmp_path):
    """A poison file: whenever its transcription starts, the daemon dies (here the test SIGKILLs
    it from outside the moment the store shows that job in `transcribe` with no progress, as an
    OOM in the model's first window would). Good files queued behind it still get done."""
    d = daemon_factory().start()
    staging = tmp_path / "staging"
    staging.mkdir()
    poison, *good = distinct_speech_files(staging, 3)
    os.rename(poison, d.watch / "poison.wav")
    wait_for(lambda: d.jobs(), 20, 0.05, "poison queued")
    for f in good:
        os.rename(f, d.watch / f.name)

    def poison_transcribing():
        return any(j["path"].endswith("poison.wav") and j["status"] == "running"
                   and j["current_stage"] == "transcribe" for j in d.jobs())

    kills = []
    while True:
        wait_for(poison_transcribing, 120, 0.02, "the poison file being transcribed")
        d.kill()
        kills.append(time.time())
        d.start(wait_ready=False)
        poison_job = wait_for(lambda: next((j for j in d.jobs() if j["path"].endswith(
            "poison.wav") and j["status"] != "running"), None), 60, 0.05, "recovery")
        if poison_job["status"] == "failed":
            break
        assert len(kills) < 3, poison_job

    jobs = d.wait_jobs(3, timeout=120)
    got = {Path(j["path"]).name: (j["status"], j["reason"], j["error_stage"], j["crashes"],
                                  j["strikes"]) for j in jobs}
    print(f"\n{len(kills)} deaths; jobs: {got}")
    assert got == {"poison.wav": ("failed", "crashed_repeatedly", "transcribe", 3, 3),
                   good[0].name: ("succeeded", None, None, 0, 0),
                   good[1].name: ("succeeded", None, None, 0, 0)}
    # After its second death at that point it waited behind the good files.
    assert all(j["finished_at"] < kills[2] for j in jobs if j["status"] == "succeeded")
    assert not (d.watch / "poison.en.srt").exists()
    log = d.log()
    assert "poison.wav) was interrupted by a restart in transcribe while progressing" in log
    assert "died again at the same point (transcribe) with no progress since its previous " \
           "death (2 of 3 in a row): queued again, behind the other jobs" in log
    assert "failed " + str(d.watch / "poison.wav") + ": the daemon died at the same point " \
           "(transcribe) 3 times in a row [transcribe/crashed_repeatedly]" in log
    assert d.stop() == 0


def test_a_kill_after_the_subtitle_is_written_but_before_success_is_recorded(
        daemon_factory, tmp_path):
    """The narrowest window: the subtitle is in place, the store still says `write`. The test
    holds the store's write lock from the moment the job enters `write`, so the daemon's
    success record waits while the subtitle is renamed into place; then it SIGKILLs it.
    Jellyfin's refresh is not lost either: it is written with the success, which the re-run
    after the restart records (tests/system/test_notify.py: a kill after it)."""
    with HttpRecorder() as jellyfin:
        jellyfin.answer("POST", "/Library/Media/Updated", 204)
        _kill_between_the_rename_and_the_success(daemon_factory, tmp_path, jellyfin)


def _kill_between_the_rename_and_the_success(daemon_factory, tmp_path, jellyfin):
    import sqlite3

    # Four formats: four fsynced atomic writes make the write stage long enough to be caught
    # by polling on a loaded machine (one format lost the race in 2 of 8 runs there).
    d = daemon_factory({"output_formats": ["srt", "vtt", "txt", "json"],
                        "jellyfin_url": jellyfin.url, "notify_batch_seconds": 0},
                       env={"SCRIBEWATCH_JELLYFIN_TOKEN": "k"}).start()
    staging = tmp_path / "staging"
    staging.mkdir()
    files = distinct_speech_files(staging, 6)
    con = sqlite3.connect(d.db, isolation_level=None, timeout=30)
    caught = None
    try:
        for f in files:   # the race for the lock is won nearly always; a lost one tries the next
            os.rename(f, d.watch / f.name)
            wait_for(lambda: d.jobs() and d.jobs()[-1]["path"].endswith(f.name), 20, 0.05,
                     f"{f.name} queued")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                row = con.execute("SELECT status, current_stage FROM jobs WHERE path = ?",
                                  (str(d.watch / f.name),)).fetchone()
                if row[0] != "running" or row[1] == "write":
                    break
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT status, current_stage FROM jobs WHERE path = ?",
                              (str(d.watch / f.name),)).fetchone()
            if row == ("running", "write"):
                srt = d.watch / f"{f.stem}.en.srt"
                wait_for(srt.exists, 10, 0.001, "the subtitle renamed into place")
                d.kill()
                caught = (f, srt.stat().st_ino, srt.read_text())
                con.execute("ROLLBACK")
                break
            con.execute("ROLLBACK")
    finally:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.close()
    assert caught, "never caught a job between its write and its success record"
    f, inode, text = caught
    (job,) = [j for j in d.jobs() if j["path"].endswith(f.name)]
    assert (job["status"], job["current_stage"]) == ("running", "write")

    d.start()
    jobs = d.wait_jobs(len(d.jobs()), timeout=120)
    (job,) = [j for j in jobs if j["path"].endswith(f.name)]
    srt = d.watch / f"{f.stem}.en.srt"
    print(f"\ncaught {f.name} after its write; after the restart: {job['status']}, "
          f"crashes {job['crashes']} at {job['crash_point']}, subtitle rewritten: "
          f"{srt.stat().st_ino != inode}, same text: {srt.read_text() == text}")
    assert (job["status"], job["attempts"], job["crashes"], job["crash_point"]) == \
        ("succeeded", 1, 1, "write")
    assert srt.stat().st_ino != inode, "done again and renamed over the old one, atomically"
    assert sorted(p.name for p in d.watch.iterdir() if f.stem in p.name) == \
        sorted([f"{f.stem}.en.{ext}" for ext in ("json", "srt", "txt", "vtt")] + [f.name]), \
        "one subtitle per format, no duplicate and no temporary file"
    assert parse_srt(srt.read_text())
    # The refresh of the caught file arrives, after its re-run's success.
    wait_for(lambda: str(d.watch / f.name) in
             [u["Path"] for r in jellyfin.requests for u in r.json()["Updates"]],
             30, what=f"the refresh of {f.name}")
    assert d.stop() == 0
