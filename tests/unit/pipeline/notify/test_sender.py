"""The sender: batching per folder, retries with backoff, a bounded queue, and never blocking
the workers that hand it finished jobs; against real HTTP (tests/harness/http_recorder.py).
The request shapes themselves: notify/test_targets.py."""

from __future__ import annotations

import socket
import time

import pytest

from scribewatch.pipeline.notify import PathMap, Sender
from scribewatch.pipeline.notify.jellyfin import JellyfinTarget
from scribewatch.pipeline.notify.plex import PlexTarget
from scribewatch.pipeline.notify.webhook import WebhookTarget
from tests.harness import free_port, wait_for
from tests.harness.http_recorder import HttpRecorder
from tests.harness.notify import NotifyEvents, finished_job

JELLYFIN = "/Library/Media/Updated"
MAP = PathMap({"/data": "/mnt"})


@pytest.fixture
def server():
    with HttpRecorder() as s:
        yield s


@pytest.fixture
def senders():
    made: list[Sender] = []

    def make(targets, **kw) -> Sender:
        kw.setdefault("reporter", NotifyEvents())
        sender = Sender(targets, **kw)
        sender.start()
        made.append(sender)
        return sender

    yield make
    for s in made:
        s.stop(grace=1)


def test_many_files_finishing_together_make_one_request_per_window(server, senders):
    """Plex: one scan per folder; Jellyfin: one request naming each file once (its body is a
    list; it refreshes items, not folders: notify/test_targets.py)."""
    server.answer("POST", JELLYFIN, 204)
    server.answer("GET", "/library/sections/1/refresh", 200)
    events = NotifyEvents()
    sender = senders([JellyfinTarget(server.url, "k", MAP),
                      PlexTarget(server.url, "t", MAP, section="1")],
                     reporter=events, batch_seconds=1.0)
    # a season: 6 episodes in 2 folders finish within the window (srt and vtt each)
    for i in range(6):
        folder = f"/data/tv/Show/Season {1 + i % 2}"
        sender.submit(finished_job(f"{folder}/e{i}.mkv", id=i, outputs=[
            f"{folder}/e{i}.en.srt", f"{folder}/e{i}.en.vtt"]))
    sender.submit(finished_job("/data/tv/Show/Season 1/e0.mkv", id=9))   # the same file again

    (post,) = server.wait_for(1, timeout=20, method="POST")
    scans = server.wait_for(2, timeout=20, method="GET")
    time.sleep(1.5)     # a second window: nothing more comes
    assert len(server.requests) == 3, [(r.method, r.raw_query) for r in server.requests]
    assert sorted(u["Path"] for u in post.json()["Updates"]) == \
        [f"/mnt/tv/Show/Season {1 + i % 2}/e{i}.mkv" for i in (0, 2, 4, 1, 3, 5)]
    assert sorted(r.query["path"][0] for r in scans) == \
        ["/mnt/tv/Show/Season 1", "/mnt/tv/Show/Season 2"]
    assert events.count("jellyfin", "sent") == 1 and events.count("plex", "sent") == 2
    assert sender.pending == 0 and events.queue[-1] == 0


def test_a_500_is_retried_with_backoff_then_succeeds(server, senders):
    server.answer("POST", JELLYFIN, 500, 503, 204)
    events = NotifyEvents()
    sender = senders([JellyfinTarget(server.url, "k", MAP)], reporter=events,
                     batch_seconds=0, backoff_seconds=0.4, max_attempts=5)
    sender.submit(finished_job("/data/movies/A/a.mkv"))

    first, second, third = server.wait_for(3, timeout=20)
    assert [r.status for r in (first, second, third)] == [500, 503, 204]
    assert first.body == second.body == third.body
    # backoff 0.4 s, then doubled (0.8 s): generous margins on a loaded machine, lower bounds only
    assert second.at - first.at >= 0.35
    assert third.at - second.at >= 0.75
    wait_for(lambda: events.count("jellyfin", "sent") == 1, timeout=10, what="sent counted")
    assert events.count("jellyfin", "failed") == 0 and len(events.requests) == 3


def test_given_up_after_max_attempts_is_a_failure(server, senders):
    server.answer("POST", "/hook", 502)
    events = NotifyEvents()
    sender = senders([WebhookTarget(server.url + "/hook", MAP)], reporter=events,
                     backoff_seconds=0.1, max_attempts=3)
    sender.submit(finished_job("/data/a.mkv"))
    wait_for(lambda: events.count("webhook", "failed") == 1, timeout=20, what="given up")
    hooks = server.requests
    assert len(hooks) == 3
    # a retried delivery is the same delivery: same id, same body (the receiver can dedupe)
    assert len({r.headers["x-scribewatch-delivery"] for r in hooks}) == 1
    assert len({r.body for r in hooks}) == 1
    assert sender.pending == 0


def test_a_webhook_per_job_not_coalesced(server, senders):
    server.answer("POST", "/hook", 200)
    sender = senders([WebhookTarget(server.url + "/hook", MAP)], batch_seconds=5)
    for i in range(3):
        sender.submit(finished_job("/data/movies/A/a.mkv", id=i))
    hooks = server.wait_for(3, timeout=10)
    assert sorted(r.json()["id"] for r in hooks) == [0, 1, 2]
    assert len({r.headers["x-scribewatch-delivery"] for r in hooks}) == 3


def test_a_server_that_never_answers_never_blocks_the_workers(senders, caplog):
    # A listening socket nobody accepts from: connect succeeds, the answer never comes, so
    # the sender's thread sits in its read timeout while the workers go on submitting.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    try:
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        events = NotifyEvents()
        sender = senders([JellyfinTarget(url, "k", MAP), WebhookTarget(url + "/h", MAP)],
                         reporter=events, batch_seconds=0, max_pending=50)
        sender.submit(finished_job("/data/first/a.mkv"))
        time.sleep(0.5)       # the sender's thread is in its first request by now
        assert events.requests == [], "that request cannot have ended: nobody answers"
        started = time.perf_counter()
        for i in range(500):   # distinct folders: nothing coalesces
            sender.submit(finished_job(f"/data/m{i}/a.mkv", id=i))
        took = time.perf_counter() - started
        # 500 jobs x 2 targets, with the sender's thread stuck: microseconds each, bounded
        assert took < 2.0, f"submit blocked: {took:.2f}s for 500 jobs"
        assert sender.pending <= 50
        dropped = events.count("jellyfin", "dropped") + events.count("webhook", "dropped")
        assert dropped >= 2 * 500 - 50
        # said in the log once (a line per minute at most), not once per job
        drops = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert len(drops) == 1, [r.getMessage() for r in drops]
    finally:
        hung.close()


def test_a_server_that_is_down_is_counted_and_the_queue_drains(senders):
    events = NotifyEvents()
    sender = senders([PlexTarget(f"http://127.0.0.1:{free_port()}", "t", MAP, section="1")],
                     reporter=events, batch_seconds=0, backoff_seconds=0.05, max_attempts=2)
    for i in range(5):
        sender.submit(finished_job(f"/data/m{i}/a.mkv", id=i))
    wait_for(lambda: events.count("plex", "failed") == 5, timeout=20, what="5 failures")
    assert len(events.requests) == 10 and sender.pending == 0


def test_stop_sends_what_waits_in_a_batch_window(server):
    server.answer("POST", JELLYFIN, 204)
    events = NotifyEvents()
    sender = Sender([JellyfinTarget(server.url, "k", MAP)], reporter=events, batch_seconds=600)
    sender.start()
    sender.submit(finished_job("/data/movies/A/a.mkv"))
    time.sleep(0.2)
    assert server.requests == []          # still in its window
    sender.stop(grace=10)
    assert len(server.requests) == 1 and events.count("jellyfin", "sent") == 1


def test_a_bug_in_a_target_does_not_reach_the_worker(senders):
    class Broken:
        name, batch = "webhook", False

        def items(self, job):
            raise RuntimeError("bug")

    events = NotifyEvents()
    sender = senders([Broken()], reporter=events)
    sender.submit(finished_job("/data/a.mkv"))      # no exception
    assert sender.pending == 0
