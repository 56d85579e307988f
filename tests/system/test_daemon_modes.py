"""Daemon modes beyond the defaults: polling, an output folder, idle unload, a broken model."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import REPO, wait_for

pytestmark = pytest.mark.slow


def gauge(daemon, name: str) -> float:
    for line in daemon.metrics().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed")


def test_polling_and_output_dir_mirror_the_tree(daemon_factory, media, tmp_path):
    out = tmp_path / "subs"
    out.mkdir()
    d = daemon_factory({"polling": True, "poll_interval_seconds": 0.5,
                        "output_mode": "output_dir", "output_dir": str(out)}).start()
    (d.watch / "Show" / "S01").mkdir(parents=True)
    shutil.copy(media / "jfk.flac", d.watch / "Show" / "S01" / "E01.flac")
    (job,) = d.wait_jobs(1)
    assert job["status"] == "succeeded"
    assert (out / "Show" / "S01" / "E01.en.srt").exists()
    assert not (d.watch / "Show" / "S01" / "E01.en.srt").exists()


def test_idle_model_is_unloaded_and_reloaded_on_demand(daemon_factory, media):
    d = daemon_factory({"model_idle_unload_minutes": 0.02}).start()   # 1.2 s
    wait_for(lambda: gauge(d, "scribewatch_model_loaded") == 0, 20, 0.2, "idle unload")
    assert d.get("/readyz")[0] == 200          # unloaded for idleness is still ready
    shutil.copy(media / "jfk.flac", d.watch / "a.flac")
    (job,) = d.wait_jobs(1)
    assert job["status"] == "succeeded"
    assert "unloaded after" in d.log() and d.log().count("loaded on cpu/int8") >= 2


def test_a_model_that_cannot_load_keeps_jobs_queued_and_says_why(daemon_factory, media, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a model")
    d = daemon_factory({"model": str(broken)}).start(wait_ready=False)
    def alive():
        try:
            return d.get("/healthz")[0] == 200
        except OSError:
            return False
    wait_for(alive, 30, 0.2, "healthz")
    wait_for(lambda: gauge(d, "scribewatch_model_load_failures_total") >= 1, 30, 0.2,
             "load failure")
    status, body = d.get("/readyz")
    assert status == 503 and "model" in json.loads(body)["reasons"][0]
    shutil.copy(media / "jfk.flac", d.watch / "a.flac")
    wait_for(lambda: [j for j in d.jobs() if j["status"] == "queued"], 20, 0.2, "queued job")
    time.sleep(2)
    assert [j["status"] for j in d.jobs()] == ["queued"]   # not failed: it is not the file's fault
    assert gauge(d, "scribewatch_ready") == 0 and gauge(d, "scribewatch_queue_jobs") == 1


def test_two_workers_share_the_model(daemon_factory, media):
    d = daemon_factory({"workers": 2, "cpu_threads": 1}).start()
    assert 'scribewatch_job_progress_ratio{worker="1"}' in d.metrics()
    shutil.copy(media / "multilingual.mp3", d.watch / "a.mp3")
    shutil.copy(media / "multilingual.mp3", d.watch / "b.mp3")
    wait_for(lambda: len([j for j in d.jobs() if j["status"] == "running"]) == 2, 60, 0.1,
             "both workers busy at once")
    jobs = d.wait_jobs(2, timeout=240)
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    assert {j["worker"] for j in jobs} == {"0", "1"}


def thread_nice_values(pid: int) -> dict[int, int]:
    """Thread id -> nice value, for every thread of the process (Linux /proc)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue                                    # the thread ended meanwhile
        out[int(task.name)] = int(stat[stat.rindex(")") + 2:].split()[16])
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux-only")
def test_inference_threads_run_below_the_daemons_own_priority(daemon_factory, media):
    d = daemon_factory({"transcribe_nice": 7, "transcribe_idle_class": False,
                        "cpu_threads": 2}).start()
    shutil.copy(media / "jfk.flac", d.watch / "a.flac")
    assert d.wait_jobs(1, timeout=120)[0]["status"] == "succeeded"
    nice = thread_nice_values(d.proc.pid)
    values = list(nice.values())
    assert nice[d.proc.pid] == 0, "the main thread keeps the daemon's priority"
    assert values.count(7) >= 1, f"no inference thread at nice 7: {nice}"
    # The HTTP server, watcher, workers, housekeeping: the daemon's own threads stay at 0.
    assert values.count(0) >= 4, nice
    assert set(values) == {0, 7}, nice
    # And the priority does not change what comes out.
    words = " ".join((d.watch / "a.en.srt").read_text().split())
    assert "can do for you ask what you can do for your country." in words


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_transcribe_idle_class_puts_the_inference_threads_in_sched_idle(daemon_factory, media):
    d = daemon_factory({"transcribe_idle_class": True, "cpu_threads": 2}).start()
    shutil.copy(media / "jfk.flac", d.watch / "a.flac")
    assert d.wait_jobs(1, timeout=120)[0]["status"] == "succeeded"
    policies = {}
    for task in Path(f"/proc/{d.proc.pid}/task").iterdir():
        try:
            policies[int(task.name)] = os.sched_getscheduler(int(task.name))
        except OSError:
            continue                                    # the thread ended meanwhile
    values = list(policies.values())
    assert policies[d.proc.pid] == os.SCHED_OTHER, "the main thread keeps the normal class"
    assert values.count(os.SCHED_IDLE) >= 1, f"no inference thread in SCHED_IDLE: {policies}"
    assert values.count(os.SCHED_OTHER) >= 4, policies   # HTTP, watcher, workers, housekeeping
    assert set(values) == {os.SCHED_OTHER, os.SCHED_IDLE}, policies
    words = " ".join((d.watch / "a.en.srt").read_text().split())
    assert "can do for you ask what you can do for your country." in words


@pytest.mark.parametrize("environ, expected",
                         [({}, "1000"), ({"GOMP_SPINCOUNT": "300000"}, "300000")])
def test_libgomp_spins_briefly_unless_the_user_says_otherwise(environ, expected):
    """libgomp reads GOMP_SPINCOUNT when CTranslate2 is first imported: pipeline.model sets it
    before that (docs/performance.md, "Which thread builds the model")."""
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"} | environ
    code = ("import sys, os; import pipeline.model as m; "
            "assert 'ctranslate2' not in sys.modules, 'imported too early'; "
            "m.resolve_device('auto', 'auto'); assert 'ctranslate2' in sys.modules; "
            "print(os.environ['GOMP_SPINCOUNT'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected
