"""Sonarr's and Radarr's webhooks on a real daemon, real model (tiny.en), real speech: an
imported file runs before a queued folder backlog, a rename moves the subtitle with no new
transcription, Test is 200 and wrong credentials 401. The bodies are built from Sonarr's own
classes' field names (tests/harness/arr.py cites them); their paths are Sonarr's, read
through `path_map`."""

from __future__ import annotations

import hashlib
import os
import re
import time

import pytest

from tests.harness import wait_for
from tests.harness.api import long_speech
from tests.harness.arr import ENGLISH, post_hook, sonarr_download, sonarr_rename, sonarr_test
from tests.harness.media import write_wav

pytestmark = pytest.mark.slow

USER, PASSWORD = "sonarr", "webhook-password"
USERS = {USER: "sha256:" + hashlib.sha256(PASSWORD.encode()).hexdigest()}
SONARR_TV = "/tv"          # where Sonarr sees the daemon's inbox


def drop(daemon, name: str, audio) -> str:
    """A finished file appears in the inbox (written beside it, renamed in)."""
    staged = write_wav(daemon.tmp / f"staging-{name}", audio)
    os.replace(staged, daemon.watch / name)
    return str(daemon.watch / name)


def job(daemon, name: str) -> dict | None:
    rows = [j for j in daemon.jobs() if os.path.basename(j["path"]) == name]
    assert len(rows) <= 1, f"{name}: {len(rows)} jobs"
    return rows[0] if rows else None


def counter(metrics: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}\{{{re.escape(want)}\}} (\S+)$", metrics, re.M)
    return float(found[1]) if found else 0.0


@pytest.fixture
def daemon(daemon_factory):
    d = daemon_factory({"workers": 1, "basic_auth_users": USERS, "metrics_auth": False,
                        "output_formats": ["srt", "vtt"]})
    d.config["path_map"] = {str(d.watch): SONARR_TV}
    d.config_path.write_text(__import__("yaml").safe_dump(d.config))
    return d.start()


def test_an_import_runs_before_the_backlog_and_a_rename_moves_its_subtitle(daemon, media):
    # The backlog: a file running, two queued behind it (the watcher's).
    drop(daemon, "a_running.wav", long_speech(media, 2))
    wait_for(lambda: (job(daemon, "a_running.wav") or {}).get("status") == "running", 60,
             what="the first file running")
    drop(daemon, "b_backlog.wav", long_speech(media, 0.5))
    drop(daemon, "c_backlog.wav", long_speech(media, 0.5))
    wait_for(lambda: all(job(daemon, n) for n in ("b_backlog.wav", "c_backlog.wav")), 30,
             what="the backlog queued")
    # Sonarr imports another file and says so at once.
    drop(daemon, "show.s01e01.wav", long_speech(media, 0.25))
    status, body = post_hook(daemon.url, "sonarr", sonarr_download(
        f"{SONARR_TV}/show.s01e01.wav", SONARR_TV, original=ENGLISH, audio=()), USER, PASSWORD)
    assert status == 200 and body["files"][0]["result"] in ("queued", "promoted"), body
    assert job(daemon, "a_running.wav")["status"] == "running", "post while the backlog waits"
    daemon.wait_jobs(4, timeout=300)
    jobs = {n: job(daemon, n) for n in ("a_running.wav", "b_backlog.wav", "c_backlog.wav",
                                        "show.s01e01.wav")}
    assert all(j["status"] == "succeeded" for j in jobs.values()), jobs
    imported = jobs["show.s01e01.wav"]
    assert imported["started_at"] < jobs["b_backlog.wav"]["started_at"]
    assert imported["started_at"] < jobs["c_backlog.wav"]["started_at"]
    assert imported["started_at"] - jobs["a_running.wav"]["finished_at"] < 2.0
    assert (imported["language"], imported["language_source"]) == ("en", "hint")
    assert imported["priority"] > jobs["b_backlog.wav"]["priority"] == 0
    print(f"\nimport claimed {imported['started_at'] - jobs['a_running.wav']['finished_at']:.2f}"
          " s after the running file ended, before 2 queued folder files")

    # Sonarr renames it: the subtitles follow, nothing is transcribed again.
    transcribed = counter(daemon.metrics(), "scribewatch_jobs_total", outcome="succeeded",
                          source="folder")
    old, new = daemon.watch / "show.s01e01.wav", daemon.watch / "Show - S01E01 - Pilot.wav"
    os.rename(old, new)
    status, body = post_hook(daemon.url, "sonarr", sonarr_rename(SONARR_TV, [
        (f"{SONARR_TV}/{old.name}", f"{SONARR_TV}/{new.name}")]), USER, PASSWORD)
    assert (status, body["files"][0]["result"], body["files"][0]["subtitles"]) == (
        200, "renamed", 2), body
    names = sorted(p.name for p in daemon.watch.iterdir() if p.name.startswith(("show", "Show")))
    assert names == ["Show - S01E01 - Pilot.en.srt", "Show - S01E01 - Pilot.en.vtt",
                     "Show - S01E01 - Pilot.wav"]
    time.sleep(daemon.config["rescan_interval_seconds"] + 2)   # the watcher has seen it
    assert job(daemon, new.name)["id"] == imported["id"] and len(daemon.jobs()) == 4
    metrics = daemon.metrics()
    assert counter(metrics, "scribewatch_jobs_total", outcome="succeeded",
                   source="folder") == transcribed
    assert counter(metrics, "scribewatch_arr_webhooks_total", app="sonarr", event="rename",
                   result="renamed") == 1
    assert counter(metrics, "scribewatch_language_decisions_total", language="en",
                   source="hint") == 1


def test_test_is_200_and_wrong_credentials_401(daemon):
    assert post_hook(daemon.url, "sonarr", sonarr_test(), USER, PASSWORD)[0] == 200
    assert post_hook(daemon.url, "radarr", sonarr_test(), USER, "wrong")[0] == 401
    assert post_hook(daemon.url, "sonarr", sonarr_test())[0] == 401
    metrics = daemon.metrics()
    assert counter(metrics, "scribewatch_arr_webhooks_total", app="sonarr", event="test",
                   result="ok") == 1
    assert counter(metrics, "scribewatch_arr_webhooks_total", app="radarr", event="unknown",
                   result="unauthorized") == 1


def test_webhook_to_claim_on_an_idle_daemon(daemon, media):
    """The figure: an import is claimed this long after Sonarr's POST (the watcher alone waits
    for the stability window and a scan first)."""
    path = drop(daemon, "idle.wav", long_speech(media, 0.2))
    posted = time.time()
    status, body = post_hook(daemon.url, "sonarr", sonarr_download(
        f"{SONARR_TV}/idle.wav", SONARR_TV), USER, PASSWORD)
    assert status == 200, body
    started = wait_for(lambda: (job(daemon, "idle.wav") or {}).get("started_at"), 30,
                       what="the import claimed")
    print(f"\nwebhook POST -> claim: {started - posted:.3f} s")
    assert started - posted < 1.0
    assert os.path.exists(path)
