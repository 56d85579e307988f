"""A real daemon transcribes real speech and then tells stand-ins for Jellyfin, Plex and a
webhook receiver (tests/harness/http_recorder.py: they cannot run here) exactly what their APIs
document (the pages are quoted in tests/unit/pipeline/notify/test_targets.py); and a media
server that is down costs transcription nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import REPO, free_port, wait_for
from tests.harness.http_recorder import HttpRecorder
from tests.system.test_metrics import Scrape

pytestmark = pytest.mark.slow

SECRET = "webhook-key"


def drop(src: Path, dest: Path) -> Path:
    """Copy beside, then rename into the watched folder: the file appears complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.part"
    shutil.copy(src, tmp)
    os.rename(tmp, dest)
    return dest


def test_refreshes_and_webhooks_after_real_transcriptions(daemon_factory, media, tmp_path):
    with HttpRecorder() as jellyfin, HttpRecorder() as plex, HttpRecorder() as hook:
        jellyfin.answer("POST", "/Library/Media/Updated", 204)
        plex.answer("GET", "/library/sections", 200, body={"MediaContainer": {"Directory": [
            {"key": "2", "type": "show", "title": "TV",
             "Location": [{"id": 1, "path": "/srv/media/tv"}]}]}})
        plex.answer("GET", "/library/sections/2/refresh", 200)
        hook.answer("POST", "/done", 500, 200)          # the first delivery is retried
        token_file = tmp_path / "plex-token"
        token_file.write_text("plex-t0ken\n")
        inbox = tmp_path / "d" / "inbox"     # the daemon's watch folder (daemon_factory)
        d = daemon_factory({
            # the daemon's inbox is the media server's /srv/media/tv
            "path_map": {str(inbox): "/srv/media/tv"},
            "jellyfin_url": jellyfin.url, "plex_url": plex.url,
            "on_finished": [hook.url + "/done"], "notify_batch_seconds": 2,
            "notify_retry_backoff_seconds": 0.2,
        }, env={"SCRIBEWATCH_JELLYFIN_TOKEN": "jf-key",
                "SCRIBEWATCH_PLEX_TOKEN_FILE": str(token_file),
                "SCRIBEWATCH_WEBHOOK_SECRET": SECRET})
        assert d.watch == inbox
        d.start()
        season = d.watch / "Show" / "Season 1"
        drop(media / "jfk.flac", season / "e01.flac")
        drop(media / "jfk.flac", season / "e02.flac")
        drop(media / "jfk.flac", d.watch / "Other" / "film.flac")
        (d.watch / "Other" / "notes.mp4").write_text("not media at all")
        jobs = d.wait_jobs(4)
        assert sorted(j["status"] for j in jobs) == ["failed", "succeeded", "succeeded",
                                                     "succeeded"], jobs

        # Jellyfin: each file that got a subtitle, as Jellyfin sees it, once; the failed one not
        files = {"/srv/media/tv/Show/Season 1/e01.flac", "/srv/media/tv/Show/Season 1/e02.flac",
                 "/srv/media/tv/Other/film.flac"}
        wait_for(lambda: {u["Path"] for r in jellyfin.requests for u in r.json()["Updates"]}
                 >= files, 60, what="jellyfin refreshes")
        time.sleep(3)      # one more batch window: nothing else comes
        posts = jellyfin.requests
        # jobs finish one after another, so on a loaded machine each may fall in a window of
        # its own (the batching itself: notify/test_sender.py)
        paths = [u["Path"] for r in posts for u in r.json()["Updates"]]
        assert sorted(paths) == sorted(files), paths
        for r in posts:
            assert (r.method, r.path, r.raw_query) == ("POST", "/Library/Media/Updated", "")
            assert r.headers["authorization"] == 'MediaBrowser Token="jf-key"'
            assert r.status == 204

        # Plex: the section found from its listing, then a scan of each folder
        want = {"/srv/media/tv/Show/Season 1", "/srv/media/tv/Other"}
        wait_for(lambda: {r.query["path"][0] for r in plex.requests if r.path.endswith("/refresh")}
                 >= want, 60, what="plex scans")
        assert plex.requests[0].path == "/library/sections"
        for r in plex.requests:
            assert r.method == "GET" and r.headers["x-plex-token"] == "plex-t0ken"

        # Webhook: one per finished job (4), signed; the first one retried after its 500
        hooks = hook.wait_for(5, timeout=60)
        delivered = [r for r in hook.requests if r.status == 200]
        assert len(delivered) == 4
        bodies = {}
        for r in delivered:
            expected = "sha256=" + hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(r.headers["x-scribewatch-signature"], expected)
            bodies[r.json()["path"]] = r.json()
        assert hooks[0].headers["x-scribewatch-delivery"] == hooks[1].headers[
            "x-scribewatch-delivery"]
        good = bodies["/srv/media/tv/Show/Season 1/e01.flac"]
        assert good["status"] == "succeeded" and good["language"] == "en"
        assert good["outputs"] == ["/srv/media/tv/Show/Season 1/e01.en.srt"]
        assert good["durations"]["transcribe"] > 0 and good["durations"]["total"] > 0
        assert Path(good["daemon_path"]) == season / "e01.flac"
        bad = bodies["/srv/media/tv/Other/notes.mp4"]
        assert (bad["status"], bad["reason"], bad["stage"], bad["outputs"]) == \
            ("failed", "not_media", "probe", [])

        # the metrics: every request counted by target and result
        def counted():
            s = Scrape(d.metrics())
            return s if s.value("scribewatch_notifications_total", target="webhook",
                                result="sent") == 4 else None
        scrape = wait_for(counted, 30, what="notification metrics")
        # one per outbox row: a video refreshed (however many requests carried them)
        assert scrape.value("scribewatch_notifications_total", target="jellyfin",
                            result="sent") == len(files)
        assert scrape.value("scribewatch_notifications_total", target="jellyfin",
                            result="failed") == 0
        assert scrape.value("scribewatch_notification_request_duration_seconds_count",
                            target="webhook") == 5
        assert scrape.value("scribewatch_notification_queue_items") == 0
        assert "jf-key" not in d.log() and "plex-t0ken" not in d.log()
        assert d.stop() == 0


def test_check_says_which_server_takes_its_token_and_sees_the_folders(tmp_path, model_dir):
    (tmp_path / "inbox").mkdir()
    with HttpRecorder() as server:
        server.answer("GET", "/System/Info", 401)
        server.answer("GET", "/library/sections", 200, body={"MediaContainer": {"Directory": [
            {"key": "1", "type": "movie", "Location": [{"id": 1, "path": "/srv/inbox"}]}]}})
        env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
               "SCRIBEWATCH_JELLYFIN_URL": server.url, "SCRIBEWATCH_JELLYFIN_TOKEN": "wrong",
               "SCRIBEWATCH_PLEX_URL": server.url, "SCRIBEWATCH_PLEX_TOKEN": "t",
               "SCRIBEWATCH_PATH_MAP": f'{{"{tmp_path / "inbox"}": "/srv/inbox"}}',
               # a Discord-style webhook: its path is the credential
               "SCRIBEWATCH_ON_FINISHED": "https://discord.example/api/webhooks/42/t0ken-SECRET"}
        result = subprocess.run(
            [sys.executable, "-m", "scribewatch", "check", "--model", model_dir,
             "--watch", str(tmp_path / "inbox")],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAIL jellyfin: GET {server.url}/System/Info: HTTP 401" in result.stdout
    assert "ok   plex answers with 1 library folder(s)" in result.stdout
    assert "jellyfin_token: <set>" in result.stdout and "wrong" not in result.stdout
    assert "ok   webhook https://discord.example/…: not called" in result.stdout
    assert "t0ken-SECRET" not in result.stdout and "/42/" not in result.stdout
    assert not [r for r in server.requests if r.path.endswith("/refresh")]


def test_a_media_server_that_is_down_costs_transcription_nothing(daemon_factory, media):
    # Nothing listens there: every refresh fails, is retried, and is given up, counted.
    d = daemon_factory({"jellyfin_url": f"http://127.0.0.1:{free_port()}",
                        "notify_batch_seconds": 0, "notify_max_attempts": 2,
                        "notify_retry_backoff_seconds": 0.2},
                       env={"SCRIBEWATCH_JELLYFIN_TOKEN": "k"}).start()
    started = time.monotonic()
    for i in range(3):
        drop(media / "jfk.flac", d.watch / f"m{i}" / "a.flac")
    jobs = d.wait_jobs(3)
    assert [j["status"] for j in jobs] == ["succeeded"] * 3
    took = time.monotonic() - started

    def failed():
        s = Scrape(d.metrics())
        return s if s.value("scribewatch_notifications_total", target="jellyfin",
                            result="failed") >= 1 else None
    scrape = wait_for(failed, 30, what="the failures counted")
    assert scrape.value("scribewatch_notifications_total", target="jellyfin", result="sent") == 0
    assert "given up after 2 attempt(s)" in d.log()
    # the failure is recorded in the store too, with its error
    wait_for(lambda: len(d.query("SELECT 1 FROM notifications WHERE status = 'failed'")) == 3,
             30, what="3 failed rows")
    (row, *_) = d.query("SELECT * FROM notifications")
    assert row["attempts"] == 2 and "Connection refused" in row["last_error"], row
    assert d.alive()
    # 3 jobs of 11 s speech each, one after another; the refreshes' retries are not in the way
    assert took < 120, took
    assert d.stop() == 0


JELLYFIN = "/Library/Media/Updated"


@pytest.mark.parametrize("server", ["hangs", "refuses"])
def test_a_kill_after_the_subtitle_and_before_the_refresh_loses_no_refresh(
        daemon_factory, media, server):
    """kill -9 while the refresh waits: the subtitle is written and the job finished, and
    Jellyfin has not taken the refresh — its request hangs (the daemon dies in the middle of
    it), or it was refused (503) and waits for its retry. The recorded request is the moment
    to kill: no sleep to race. After the restart the refresh arrives, once more, and the job
    is not transcribed again."""
    with HttpRecorder() as jellyfin:
        if server == "hangs":
            jellyfin.answer("POST", JELLYFIN, 204)
            jellyfin.hold("POST", JELLYFIN)
        else:
            jellyfin.answer("POST", JELLYFIN, 503)
        d = daemon_factory({"jellyfin_url": jellyfin.url, "notify_batch_seconds": 0,
                            "notify_max_attempts": 5,
                            "notify_retry_backoff_seconds": 3},
                           env={"SCRIBEWATCH_JELLYFIN_TOKEN": "k"}).start()
        drop(media / "jfk.flac", d.watch / "Film" / "film.flac")
        (first,) = jellyfin.wait_for(1, timeout=120)
        if server == "refuses":      # settled: back in the outbox, due after its backoff
            wait_for(lambda: d.query("SELECT last_error FROM notifications")[0]["last_error"],
                     10, 0.02, what="the 503 recorded")
        (job,) = d.jobs()
        assert job["status"] == "succeeded" and (d.watch / "Film" / "film.en.srt").exists()
        (row,) = d.query("SELECT * FROM notifications")
        assert (row["status"], row["attempts"]) == ("pending", 1), row
        assert (row["claim_node"] is not None) == (server == "hangs"), row
        d.kill()
        jellyfin.answer("POST", JELLYFIN, 204)
        jellyfin.release()

        d.start(wait_ready=False)
        restarted = time.monotonic()
        second = jellyfin.wait_for(2, timeout=60)[1]
        delivered = second.at - restarted
        assert second.status == 204 and second.json() == first.json() == {
            "Updates": [{"Path": str(d.watch / "Film" / "film.flac"), "UpdateType": "Modified"}]}
        wait_for(lambda: d.query("SELECT status FROM notifications")[0]["status"] == "sent",
                 10, what="the row settled")
        (row,) = d.query("SELECT * FROM notifications")
        (job,) = d.jobs()
        print(f"\n{server}: the refresh arrived {delivered:.2f}s after the restart "
              f"(attempt {row['attempts']}); the job ran {job['attempts']} time(s)")
        assert row["attempts"] == 2 and job["attempts"] == 1 and job["crashes"] == 0
        # A dead node's claim is freed at its start, not after the claim's 60 s lease (the
        # refused one waits out the rest of its 3 s backoff: a restart keeps `due_at`).
        if server == "hangs":
            assert delivered < 15, "released at the start, not after the claim's 60 s lease"
        time.sleep(1.5)
        assert len(jellyfin.requests) == 2, "sent once more, not again and again"
        assert d.stop() == 0
