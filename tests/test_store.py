"""The job store as a queue: atomic claims, attempts, crash recovery, backoff, stats."""

import time

from pipeline.store import JobStore


def test_claim_is_fifo_and_counts_attempts(tmp_path):
    store = JobStore(tmp_path / "j.db")
    a = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    b = store.enqueue("/w/b.mp3", "/w", 1, 1, "fb")
    job = store.claim_next("0")
    assert job["id"] == a and job["status"] == "running" and job["attempts"] == 1
    assert store.claim_next("1")["id"] == b
    assert store.claim_next("0") is None


def test_crash_recovery_requeues_then_gives_up(tmp_path):
    store = JobStore(tmp_path / "j.db")
    jid = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    store.claim_next("0")
    store.set_stage(jid, "transcribe")
    requeued, failed = store.recover_after_crash(max_attempts=2)
    assert [j["id"] for j in requeued] == [jid] and not failed
    assert store.claim_next("0")["attempts"] == 2
    requeued, failed = store.recover_after_crash(max_attempts=2)   # crashed again
    assert not requeued and [j["id"] for j in failed] == [jid]
    job = store.get(jid)
    assert job["status"] == "failed" and job["reason"] == "crashed_repeatedly"


def test_backoff_and_paused_roots(tmp_path):
    store = JobStore(tmp_path / "j.db")
    jid = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    store.claim_next("0")
    store.requeue(jid, not_before=time.time() + 60, reason="disk_full")
    assert store.claim_next("0") is None                        # backing off
    assert store.claim_next("0", now=time.time() + 61)["id"] == jid
    store.requeue(jid, refund_attempt=True)
    assert store.claim_next("0", available_roots=["/other"]) is None   # its mount is gone
    assert store.claim_next("0", available_roots=["/w"])["attempts"] == 2


def test_survives_reopen_and_reports_stats(tmp_path):
    store = JobStore(tmp_path / "j.db")
    jid = store.enqueue("/w/a.mp3", "/w", 10, 5, "fa", detected_at=time.time() - 10)
    store.claim_next("0")
    store.finish(jid, "succeeded", audio_seconds=100.0, outputs=["/w/a.en.srt"])
    store.record_skipped("/w/b.mp3", "/w", 1, 1, "fb", "subtitle_exists", "b.en.srt exists")
    store.close()
    store = JobStore(tmp_path / "j.db")
    assert store.get(jid)["outputs"] == ["/w/a.en.srt"]
    stats = store.stats()
    assert stats["counts"]["succeeded"] == 1 and stats["counts"]["skipped"] == 1
    assert stats["skip_reasons"] == {"subtitle_exists": 1}
    assert abs(stats["audio_hours"] - 100 / 3600) < 1e-9
    assert stats["processing_seconds"]["count"] == 1
    mode = store._exec("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def _counted(store: JobStore) -> dict:
    """Jobs per status, counted the slow way."""
    out = {s: 0 for s in ("queued", "running", "succeeded", "failed", "skipped")}
    for row in store._exec("SELECT status, COUNT(*) FROM jobs GROUP BY status"):
        out[row[0]] = row[1]
    return out


def _kept(store: JobStore) -> dict:
    """Jobs per status as the triggers keep them."""
    return {**dict.fromkeys(_counted(store), 0),
            **{r[0]: r[1] for r in store._exec("SELECT status, n FROM job_counts")}}


def test_counts_follow_every_transition_including_other_processes(tmp_path):
    store = JobStore(tmp_path / "j.db")
    ids = [store.enqueue(f"/w/{i}.mp3", "/w", 1, 1, f"f{i}") for i in range(6)]
    store.record_skipped("/w/s.mp3", "/w", 1, 1, "fs", "subtitle_exists", "s.srt exists")
    assert store.counts() == _counted(store) and store.counts()["queued"] == 6
    for worker in "0123":
        store.claim_next(worker)
    store.finish(ids[0], "succeeded")
    store.finish(ids[1], "failed", reason="not_media", stage="probe", message="x")
    store.requeue(ids[2], refund_attempt=True)
    store.update(ids[3], current_stage="transcribe")      # not a status change
    assert store.counts() == _counted(store)
    assert store.counts() == {"queued": 3, "running": 1, "succeeded": 1, "failed": 1,
                              "skipped": 1}
    # `scribewatch retry` runs in another process, on its own connection.
    other = JobStore(tmp_path / "j.db")
    assert other.retry_failed() == [ids[1]]
    other.close()
    assert store.counts() == _counted(store) and store.counts()["failed"] == 0
    store.recover_after_crash(max_attempts=1)               # the running one fails
    assert store.counts() == _counted(store) and store.counts()["failed"] == 1
    assert _kept(store) == _counted(store)


def test_a_store_from_before_the_counts_is_counted_once_when_opened(tmp_path):
    store = JobStore(tmp_path / "j.db")
    for i in range(5):
        store.enqueue(f"/w/{i}.mp3", "/w", 1, 1, f"f{i}")
    store.finish(store.claim_next("0")["id"], "succeeded")
    for statement in ("DROP TRIGGER job_counts_insert", "DROP TRIGGER job_counts_update",
                      "DROP TRIGGER job_counts_delete", "DROP TABLE job_counts"):
        store._exec(statement)                               # what an older version left
    store.enqueue("/w/late.mp3", "/w", 1, 1, "fl")
    store.close()
    reopened = JobStore(tmp_path / "j.db")
    assert reopened.counts()["queued"] == 5 and reopened.counts()["succeeded"] == 1
    JobStore(tmp_path / "j.db").close()                      # opening again counts nothing twice
    assert reopened.counts() == _counted(reopened) == _kept(reopened)


def test_batch_is_one_transaction(tmp_path):
    store = JobStore(tmp_path / "j.db")
    other = JobStore(tmp_path / "j.db")        # another connection sees only commits
    with store.batch():
        store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
        with store.batch():                     # nested: part of the outer one
            store.record_skipped("/w/b.mp3", "/w", 1, 1, "fb", "subtitle_exists", "b.en.srt")
        assert other.counts()["queued"] == 0
    assert other.counts()["queued"] == 1 and other.counts()["skipped"] == 1


def test_failed_batch_leaves_nothing(tmp_path):
    store = JobStore(tmp_path / "j.db")
    try:
        with store.batch():
            store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert store.counts()["queued"] == 0
    store.enqueue("/w/b.mp3", "/w", 1, 1, "fb")  # and the store is usable afterwards
    assert store.counts()["queued"] == 1
