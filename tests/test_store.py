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
