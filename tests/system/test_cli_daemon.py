"""What a new user meets around a running daemon: Ctrl-C twice, a second daemon on the same
store, redoing a finished file, and `status` naming the file being transcribed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.harness import SHARED_MEDIA, wait_for
from tests.harness import media as gen

pytestmark = pytest.mark.slow


def long_speech(tmp: Path, target: Path, repeats: int = 8) -> Path:
    """~90 s of real speech (jfk.flac repeated), as tests/system/test_daemon.py makes it."""
    gen.speech_wav(tmp / "staging.wav", [SHARED_MEDIA / "jfk.flac"] * repeats)
    os.rename(tmp / "staging.wav", target)
    return target


def test_second_ctrl_c_stops_at_once_and_the_job_is_queued_again(daemon_factory):
    d = daemon_factory({"shutdown_grace_seconds": 120})
    d.start()
    sub = d.watch / "Season 1"
    sub.mkdir()
    long_speech(d.tmp, sub / "long.wav")
    wait_for(lambda: any(j["current_stage"] == "transcribe" for j in d.jobs()), 60, 0.05,
             "transcription under way")

    # While it runs, `status` and /api/status name the file (not a metric label).
    status = json.loads(d.cli("status", "--url", d.url, "--json").stdout)
    (running,) = status["running"]
    assert running["path"] == str(sub / "long.wav") and running["watch_dir"] == str(d.watch)
    text = d.cli("status", "--url", d.url).stdout
    assert f"Season 1/long.wav  (in {d.watch})" in text, text
    assert "long.wav" not in d.metrics()

    d.proc.send_signal(signal.SIGINT)
    hint = "press Ctrl-C again to stop now; the running job is queued again"
    wait_for(lambda: hint in d.log(), 10, 0.05, "the hint after the first Ctrl-C")
    assert d.proc.poll() is None        # still inside its 120 s grace period
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGINT)
    code = d.proc.wait(30)
    exit_seconds = time.monotonic() - t0
    d._log.close()
    print(f"second Ctrl-C -> exit in {exit_seconds:.2f}s")
    assert code == 0, d.log()
    assert exit_seconds < 5, exit_seconds
    (job,) = d.jobs()
    assert (job["status"], job["attempts"]) == ("queued", 0), job
    assert not (sub / "long.en.srt").exists()
    assert f"job {job['id']} stopped at once: queued again" in d.log()

    d.start()
    (job,) = d.wait_jobs(1, timeout=300)
    assert (job["status"], job["attempts"]) == ("succeeded", 1)
    assert (sub / "long.en.srt").exists()


def test_a_second_daemon_on_the_same_store_is_refused(daemon_factory, media):
    first = daemon_factory(sub="first").start()
    second = daemon_factory({"db": str(first.db)}, sub="second")
    second.start(wait_ready=False)
    assert second.proc.wait(30) == 1
    second._log.close()
    refusal = second.log()
    assert f"pid {first.proc.pid} on host {socket.gethostname()}" in refusal, refusal
    assert str(first.db) in refusal

    # The read commands do not need the lock: they work while the daemon runs.
    shutil.copy(media / "jfk.flac", first.watch / "jfk.flac")
    (job,) = first.wait_jobs(1)
    assert job["status"] == "succeeded"
    history = json.loads(first.cli("history", "--json").stdout)   # store from scribewatch.yaml
    assert [j["id"] for j in history] == [job["id"]]
    assert "0 failed job(s) queued again" in first.cli("retry", "--all-failed").stdout
    assert "ready" in first.cli("status").stdout

    # kill -9 leaves the lock file behind, but the kernel dropped the lock with the process.
    first.kill()
    assert Path(str(first.db) + ".lock").exists()
    second.start()
    assert second.get("/readyz")[0] == 200


def test_retry_path_redoes_a_succeeded_file_in_a_running_daemon(daemon_factory, media,
                                                                model_dir, tmp_path):
    # The model under a name without ".en": the language is known only after transcription,
    # so the daemon looks for an existing subtitle then, and finds the one it wrote itself.
    renamed = tmp_path / "whisper-tiny"
    renamed.mkdir()
    for f in Path(model_dir).iterdir():
        (renamed / f.name).symlink_to(f)
    d = daemon_factory({"model": str(renamed)}).start()
    shutil.copy(media / "jfk.flac", d.watch / "jfk.flac")
    (job,) = d.wait_jobs(1)
    srt = d.watch / "jfk.en.srt"
    assert job["status"] == "succeeded" and srt.exists()
    before = srt.stat().st_mtime_ns

    out = d.cli("retry", "--path", str(d.watch / "jfk.flac")).stdout
    assert f"queued again: job {job['id']} (succeeded before)" in out
    wait_for(lambda: srt.stat().st_mtime_ns != before, 120, 0.2, "the subtitle written again")
    (again,) = d.wait_jobs(1)
    assert (again["id"], again["status"], again["attempts"]) == (job["id"], "succeeded", 1)
    assert again["finished_at"] > job["finished_at"]
    assert len(d.jobs()) == 1   # the same row went back: never two active jobs for one file
    assert [h["status"] for h in d.history()] == ["succeeded"]

    # A whole folder: what succeeded under it is done again.
    before = srt.stat().st_mtime_ns
    assert "1 job(s) queued again" in d.cli("retry", "--under", str(d.watch)).stdout
    wait_for(lambda: srt.stat().st_mtime_ns != before, 120, 0.2, "the folder redone")
