"""What people read from the job store: the status page's lists (next queued files in claim
order, recent failures, today's figures)."""

from __future__ import annotations

import time

from scribewatch.pipeline.store.sqlite import SqliteStore


def _store(tmp_path) -> SqliteStore:
    return SqliteStore(tmp_path / "j.db")


def test_next_queued_is_the_order_workers_claim_in(tmp_path):
    store = _store(tmp_path)
    a, b, c, d = (store.enqueue(f"/w/{n}.mp3", "/w", 1, 1, n) for n in "abcd")
    now = time.time()
    store.requeue(a, not_before=now + 60)                       # a retry backing off: last
    store._exec("UPDATE jobs SET strikes = 2 WHERE id = ?", (b,))   # a suspect: behind the rest
    queued = store.next_queued(10, now=now)
    assert [q.job_id for q in queued] == [c, d, b, a]
    assert queued[-1].retry_at == now + 60 and queued[0].retry_at is None
    assert (queued[0].path, queued[0].watch_dir) == ("/w/c.mp3", "/w")
    # The claims agree with the list (a's backoff has not run out).
    assert [store.claim_next("0", now=now).id for _ in range(3)] == [c, d, b]
    assert store.next_queued(10, now=now)[0].job_id == a
    assert len(store.next_queued(1, now=now)) == 1


def test_recent_failures_are_the_failed_jobs_newest_first(tmp_path):
    store = _store(tmp_path)
    ids = [store.enqueue(f"/w/{n}.mp3", "/w", 1, 1, n) for n in "abc"]
    for job_id in ids:
        store.claim_next("0")
        store.finish(job_id, "failed", reason="not_media", stage="probe",
                     message=f"job {job_id}: not a media file")
        time.sleep(0.01)
    assert [f.job_id for f in store.recent_failures(10)] == ids[::-1]
    assert store.recent_failures(2)[0].reason == "not_media"
    assert store.recent_failures(2)[0].message == f"job {ids[2]}: not a media file"
    store.retry_failed([ids[2]])
    assert [f.job_id for f in store.recent_failures(10)] == ids[1::-1]


def test_finished_since_counts_the_day_and_its_real_time_factor(tmp_path):
    store = _store(tmp_path)
    now = time.time()

    def finished(name: str, status: str, started: float, finished: float, audio=None, **kw):
        job_id = store.enqueue(f"/w/{name}", "/w", 1, 1, name)
        store.update(job_id, status=status, started_at=started, finished_at=finished,
                     audio_seconds=audio, **kw)

    finished("yesterday.mp3", "succeeded", now - 90_000, now - 89_000, 3000.0)
    finished("a.mp3", "succeeded", now - 100, now - 90, 100.0)        # 10 s for 100 s
    finished("b.mp3", "succeeded", now - 50, now - 20, 200.0)         # 30 s for 200 s
    finished("c.mp3", "failed", now - 10, now - 9, 50.0, reason="decode_error")
    finished("d.mp3", "skipped", now - 5, now - 5, reason="no_speech")
    store.enqueue("/w/e.mp3", "/w", 1, 1, "e")                        # not finished
    day = store.finished_since(now - 3600)
    assert day.counts == {"succeeded": 2, "failed": 1, "skipped": 1}
    assert day.audio_seconds == 300.0 and abs(day.processing_seconds - 40.0) < 1e-6
    assert abs(day.realtime_factor - 40 / 300) < 1e-9     # audio-weighted, not a mean of ratios
    empty = store.finished_since(now)
    assert empty.counts == {"succeeded": 0, "failed": 0, "skipped": 0}
    assert empty.realtime_factor is None
