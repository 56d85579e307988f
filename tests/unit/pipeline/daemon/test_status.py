"""The store's part of the daemon's status: cached for a second, details only when asked, and
"today" from local midnight."""

from __future__ import annotations

import time

from scribewatch.pipeline.daemon.status import StoreStatus, local_midnight
from scribewatch.pipeline.store.sqlite import SqliteStore


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_figures_are_cached_briefly_and_details_only_when_asked(tmp_path):
    store, clock = SqliteStore(tmp_path / "j.db"), Clock()
    status = StoreStatus(store, cache_seconds=1.0, clock=clock)
    first = store.enqueue("/w/a.mp3", "/w", 1, 1, "a")
    plain = status.figures()
    assert plain.queue == 1 and plain.queue_next == () and plain.today is None
    store.enqueue("/w/b.mp3", "/w", 1, 1, "b")
    assert status.figures().queue == 1                    # within the second: the cache
    detailed = status.figures(details=True)               # cached on its own
    assert detailed.queue == 2 and [q.job_id for q in detailed.queue_next] == [first, first + 1]
    assert detailed.today.counts == {"succeeded": 0, "failed": 0, "skipped": 0}
    clock.now += 1.5
    assert status.figures().queue == 2
    assert status.figures(details=True).recent_failures == ()
    store.claim_next("0")
    store.finish(first, "failed", reason="not_media", stage="probe")
    assert status.figures(details=True).recent_failures == ()   # cached still
    status.invalidate()                                   # a retry changed the store
    assert [f.job_id for f in status.figures(details=True).recent_failures] == [first]


def test_local_midnight():
    now = time.time()
    midnight = local_midnight(now)
    assert 0 <= now - midnight < 25 * 3600
    t = time.localtime(midnight)
    assert (t.tm_hour, t.tm_min, t.tm_sec) == (0, 0, 0)
    assert time.localtime(now)[:3] == t[:3]
