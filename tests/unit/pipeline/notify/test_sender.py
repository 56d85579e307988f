"""The sender and the outbox: a finished job's notifications are rows in a real job store
(SQLite here; both engines: tests/unit/pipeline/store/test_interface.py), delivered to real HTTP
(tests/harness/http_recorder.py) with batching per folder, retries with backoff, failures kept,
and claims a dead sender left sent again. The request shapes themselves: test_targets.py."""

from __future__ import annotations

import dataclasses
import socket
import time

import pytest

from scribewatch.pipeline.notify import PathMap, Sender
from scribewatch.pipeline.notify.jellyfin import JellyfinTarget
from scribewatch.pipeline.notify.plex import PlexTarget
from scribewatch.pipeline.notify.webhook import WebhookTarget
from scribewatch.pipeline.store import LeaseSettings, SqliteStore
from tests.harness import free_port, wait_for
from tests.harness.http_recorder import HttpRecorder
from tests.harness.notify import NotifyEvents

JELLYFIN = "/Library/Media/Updated"
MAP = PathMap({"/data": "/mnt"})


@pytest.fixture
def server():
    with HttpRecorder() as s:
        yield s


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "jobs.db", LeaseSettings("n1"))
    yield s
    s.close()


@pytest.fixture
def senders(store):
    made: list[Sender] = []

    def make(targets, *, start: bool = True, **kw) -> Sender:
        kw.setdefault("reporter", NotifyEvents())
        sender = Sender(targets, **kw)
        sender.attach(store, "n1")
        if start:
            sender.start()
        made.append(sender)
        return sender

    yield make
    for s in made:
        s.stop(grace=1)


def finish(store, path: str, outputs: list[str] | None = None, status: str = "succeeded") -> int:
    """A job through the store as a worker takes it: queued, claimed, finished (which writes
    its notifications, through the attached sender's announce)."""
    job_id = store.enqueue(path, "/data", 1, 1, f"fp-{path}-{time.monotonic_ns()}")
    job = store.claim_next("0")
    if outputs is None and status == "succeeded":
        outputs = [path.rsplit(".", 1)[0] + ".en.srt"]
    assert store.finish(job_id, status, token=job.lease_token, outputs=outputs or [],
                        audio_seconds=11.0)
    return job_id


def test_many_files_finishing_together_make_one_request_per_window(server, senders, store):
    """Plex: one scan per folder; Jellyfin: one request naming each file once (its body is a
    list; it refreshes items, not folders: test_targets.py)."""
    server.answer("POST", JELLYFIN, 204)
    server.answer("GET", "/library/sections/1/refresh", 200)
    events = NotifyEvents()
    senders([JellyfinTarget(server.url, "k", MAP), PlexTarget(server.url, "t", MAP, section="1")],
            reporter=events, batch_seconds=1.0)
    # a season: 6 episodes in 2 folders finish within the window (srt and vtt each)
    for i in range(6):
        folder = f"/data/tv/Show/Season {1 + i % 2}"
        finish(store, f"{folder}/e{i}.mkv", [f"{folder}/e{i}.en.srt", f"{folder}/e{i}.en.vtt"])
    finish(store, "/data/tv/Show/Season 1/e0.mkv")                   # the same file again

    (post,) = server.wait_for(1, timeout=20, method="POST")
    scans = server.wait_for(2, timeout=20, method="GET")
    time.sleep(1.5)     # a second window: nothing more comes
    assert len(server.requests) == 3, [(r.method, r.raw_query) for r in server.requests]
    assert sorted(u["Path"] for u in post.json()["Updates"]) == \
        [f"/mnt/tv/Show/Season {1 + i % 2}/e{i}.mkv" for i in (0, 2, 4, 1, 3, 5)]
    assert sorted(r.query["path"][0] for r in scans) == \
        ["/mnt/tv/Show/Season 1", "/mnt/tv/Show/Season 2"]
    # one per row: 7 finished jobs, each one Jellyfin row and one Plex row
    wait_for(lambda: events.count("plex", "sent") == 7, timeout=10, what="plex rows sent")
    assert events.count("jellyfin", "sent") == 7
    assert store.outbox_pending() == 0 and len(store.notifications(status="sent")) == 14
    wait_for(lambda: events.queue and events.queue[-1] == 0, timeout=5, what="the gauge at 0")


def test_a_500_is_retried_with_backoff_then_succeeds(server, senders, store):
    server.answer("POST", JELLYFIN, 500, 503, 204)
    events = NotifyEvents()
    senders([JellyfinTarget(server.url, "k", MAP)], reporter=events,
            batch_seconds=0, backoff_seconds=0.4, max_attempts=5)
    finish(store, "/data/movies/A/a.mkv")

    first, second, third = server.wait_for(3, timeout=20)
    assert [r.status for r in (first, second, third)] == [500, 503, 204]
    assert first.body == second.body == third.body
    # backoff 0.4 s, then doubled (0.8 s): generous margins on a loaded machine, lower bounds only
    assert second.at - first.at >= 0.35
    assert third.at - second.at >= 0.75
    wait_for(lambda: events.count("jellyfin", "sent") == 1, timeout=10, what="sent counted")
    assert events.count("jellyfin", "failed") == 0 and len(events.requests) == 3
    (row,) = store.notifications()
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)


def test_given_up_after_max_attempts_is_a_failure_kept_in_the_store(server, senders, store,
                                                                     caplog):
    server.answer("POST", "/hook", 502)
    events = NotifyEvents()
    senders([WebhookTarget(server.url + "/hook", MAP)], reporter=events,
            backoff_seconds=0.1, max_attempts=3)
    finish(store, "/data/a.mkv")
    wait_for(lambda: events.count("webhook", "failed") == 1, timeout=20, what="given up")
    hooks = server.requests
    assert len(hooks) == 3
    # a retried delivery is the same delivery: same id, same body (the receiver can dedupe)
    assert len({r.headers["x-scribewatch-delivery"] for r in hooks}) == 1
    assert len({r.body for r in hooks}) == 1
    (row,) = store.notifications()
    assert (row.status, row.attempts) == ("failed", 3) and "HTTP 502" in row.last_error
    assert store.outbox_pending() == 0
    assert any("given up after 3 attempt(s)" in r.getMessage() for r in caplog.records)


def test_a_refusal_that_will_not_change_is_given_up_at_once(server, senders, store):
    server.answer("POST", JELLYFIN, 401)
    events = NotifyEvents()
    senders([JellyfinTarget(server.url, "bad", MAP)], reporter=events, batch_seconds=0,
            max_attempts=5)
    finish(store, "/data/a.mkv")
    wait_for(lambda: events.count("jellyfin", "failed") == 1, timeout=20, what="given up")
    assert len(server.requests) == 1
    (row,) = store.notifications()
    assert (row.status, row.attempts) == ("failed", 1) and "HTTP 401" in row.last_error


def test_a_webhook_per_job_not_coalesced(server, senders, store):
    server.answer("POST", "/hook", 200)
    senders([WebhookTarget(server.url + "/hook", MAP)], batch_seconds=5)
    ids = [finish(store, "/data/movies/A/a.mkv") for _ in range(3)]
    hooks = server.wait_for(3, timeout=10)
    assert sorted(r.json()["id"] for r in hooks) == ids
    assert len({r.headers["x-scribewatch-delivery"] for r in hooks}) == 3


def test_an_api_requests_job_notifies_nothing(server, senders, store):
    # Its answer went to its client; no library has a new file (pipeline/api/queue.py).
    sender = senders([WebhookTarget(server.url + "/hook", MAP),
                      JellyfinTarget(server.url, "key", MAP)], start=False)
    folder_job = store.get(finish(store, "/data/movies/A/a.mkv"))
    assert len(sender.announce(folder_job)) == 2
    assert sender.announce(dataclasses.replace(folder_job, source="api")) == []


def test_a_server_that_never_answers_never_blocks_the_workers(senders, store):
    # A listening socket nobody accepts from: connect succeeds, the answer never comes, so
    # the sender's thread sits in its read timeout while the workers go on finishing jobs.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    try:
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        events = NotifyEvents()
        senders([JellyfinTarget(url, "k", MAP), WebhookTarget(url + "/h", MAP)],
                reporter=events, batch_seconds=0)
        finish(store, "/data/first/a.mkv")
        wait_for(lambda: store.notifications()[-1].attempts == 1, timeout=10,
                 what="the first request under way")
        started = time.perf_counter()
        for i in range(200):
            finish(store, f"/data/m{i}/a.mkv")
        took = time.perf_counter() - started
        # a finish is a store transaction with its rows: no wait on the sender's thread
        assert took < 10.0, f"finishing blocked: {took:.2f}s for 200 jobs"
        assert events.requests == [], "that request cannot have ended: nobody answers"
        assert store.outbox_pending() == 2 * 201, "every notification waits in the store"
    finally:
        hung.close()


def test_a_server_that_is_down_is_counted_and_the_outbox_drains(senders, store):
    events = NotifyEvents()
    senders([PlexTarget(f"http://127.0.0.1:{free_port()}", "t", MAP, section="1")],
            reporter=events, batch_seconds=0, backoff_seconds=0.05, max_attempts=2)
    for i in range(5):
        finish(store, f"/data/m{i}/a.mkv")
    wait_for(lambda: events.count("plex", "failed") == 5, timeout=20, what="5 failures")
    assert len(events.requests) == 10 and store.outbox_pending() == 0
    assert {r.status for r in store.notifications()} == {"failed"}


def test_what_waits_at_a_stop_is_sent_by_the_next_start(server, senders, store):
    server.answer("POST", JELLYFIN, 204)
    first = senders([JellyfinTarget(server.url, "k", MAP)], batch_seconds=1.0)
    finish(store, "/data/movies/A/a.mkv")
    first.stop(grace=5)
    assert server.requests == [] and store.outbox_pending() == 1   # still in its window
    events = NotifyEvents()
    senders([JellyfinTarget(server.url, "k", MAP)], reporter=events, batch_seconds=1.0)
    (post,) = server.wait_for(1, timeout=10)
    assert post.json()["Updates"][0]["Path"] == "/mnt/movies/A/a.mkv"
    wait_for(lambda: events.count("jellyfin", "sent") == 1, timeout=5, what="sent")


def test_a_claim_left_by_a_dead_sender_is_sent_again_at_the_restart(server, senders, store):
    """The daemon died during the request: its claim is this node's, so the next start frees it
    at once (not after the claim's lease) and the refresh goes out; the attempt that died
    counts (at least once, at most `max_attempts` times)."""
    server.answer("POST", JELLYFIN, 204)
    target = JellyfinTarget(server.url, "k", MAP)
    dead = senders([target], start=False, batch_seconds=0)
    finish(store, "/data/movies/A/a.mkv")
    claim = store.outbox_claim([target.key], "n1", lease_seconds=3600)   # then kill -9
    assert claim is not None and dead is not None
    events = NotifyEvents()
    senders([target], reporter=events, batch_seconds=0)
    (post,) = server.wait_for(1, timeout=10)
    assert post.json()["Updates"][0]["Path"] == "/mnt/movies/A/a.mkv"
    wait_for(lambda: store.notifications()[0].status == "sent", timeout=5, what="settled")
    assert store.notifications()[0].attempts == 2


def test_a_bug_in_a_target_does_not_undo_the_job(senders, store):
    class Broken:
        name, key, batch = "webhook", "webhook:broken", False

        def items(self, job):
            raise RuntimeError("bug")

    senders([Broken()])
    job_id = finish(store, "/data/a.mkv")          # no exception
    assert store.get(job_id).status == "succeeded" and store.notifications() == []


def test_two_nodes_on_one_postgresql_store_send_each_row_once(server, postgres_url):
    """Several daemons share a PostgreSQL store, each with its sender: each finished job's
    webhook goes out once, by whichever node claimed it (never both at the same time)."""
    from scribewatch.pipeline.store import open_store

    server.answer("POST", "/hook", 200)
    stores = [open_store(postgres_url, LeaseSettings(f"n{i}")) for i in range(3)]
    senders, events = [], []
    try:
        for i, store in enumerate(stores):
            events.append(NotifyEvents())
            sender = Sender([WebhookTarget(server.url + "/hook", MAP)], reporter=events[-1],
                            batch_seconds=0)
            sender.attach(store, f"n{i}")
            sender.start()
            senders.append(sender)
        ids = [finish(stores[i % 3], f"/data/m{i}/a.mkv") for i in range(30)]
        hooks = server.wait_for(30, timeout=30)
        time.sleep(1.5)       # a few more polls of every node: nothing is sent again
        assert len(server.requests) == 30
        assert sorted(r.json()["id"] for r in hooks) == ids
        wait_for(lambda: sum(e.count("webhook", "sent") for e in events) == 30, timeout=10,
                 what="30 counted")
        print(f"\nrows sent per node: {[e.count('webhook', 'sent') for e in events]}")
        assert stores[0].outbox_pending() == 0
    finally:
        for sender in senders:
            sender.stop(grace=1)
        for store in stores:
            store.close()
