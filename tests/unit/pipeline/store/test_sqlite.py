"""The job store as a queue: atomic claims, attempts, crash recovery, backoff, stats."""

import sqlite3
import threading
import time

from scribewatch.pipeline.store.sqlite import SCHEMA_VERSION, SqliteStore


def test_claim_is_fifo_and_counts_attempts(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    a = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    b = store.enqueue("/w/b.mp3", "/w", 1, 1, "fb")
    job = store.claim_next("0")
    assert job.id == a and job.status == "running" and job.attempts == 1
    assert store.claim_next("1").id == b
    assert store.claim_next("0") is None


def test_crash_recovery_requeues_then_gives_up(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    jid = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    store.claim_next("0")
    store.set_stage(jid, "transcribe")
    requeued, failed = store.recover_after_crash(max_attempts=2)
    assert [j.id for j in requeued] == [jid] and not failed
    assert requeued[0].strikes == 1 and requeued[0].crash_point == "transcribe"
    # A death is not a transient-failure attempt: the claim after it is attempt 1 again.
    assert store.claim_next("0").attempts == 1
    store.set_stage(jid, "transcribe")
    requeued, failed = store.recover_after_crash(max_attempts=2)   # same point, no progress
    assert not requeued and [j.id for j in failed] == [jid]
    job = store.get(jid)
    assert job.status == "failed" and job.reason == "crashed_repeatedly"
    assert (job.error_stage, job.crashes, job.strikes, job.attempts) == \
        ("transcribe", 2, 2, 0)
    assert "2 times in a row" in job.error_message and "transcribe" in job.error_message


def _die(store: SqliteStore, job_id: int, stage: str | None, checkpoint: float = 0.0,
         max_attempts: int = 3) -> str:
    """The daemon claims the job, gets to `stage` (and `checkpoint`), and is killed there;
    the next start recovers. Returns what became of the job."""
    assert store.claim_next("0").id == job_id
    if stage is not None:
        store.set_stage(job_id, stage)
    if checkpoint:
        store.set_checkpoint(job_id, checkpoint)
    requeued, failed = store.recover_after_crash(max_attempts)
    return "failed" if failed else "queued"


def test_deaths_at_a_new_point_are_progress_and_are_never_branded(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    jid = store.enqueue("/w/film.mkv", "/w", 1, 1, "ff")
    # A two-hour film killed from outside again and again, but always further on.
    for stage, checkpoint in (("probe", 0), ("decode", 0), ("transcribe", 0),
                              ("transcribe", 30), ("transcribe", 1230), ("transcribe", 4800),
                              ("write", 0)):
        assert _die(store, jid, stage, checkpoint) == "queued"
    job = store.get(jid)
    assert (job.crashes, job.strikes, job.attempts) == (7, 1, 0)
    assert job.crash_point == "write"
    # …and then it finishes: one attempt, seven deaths on record.
    assert store.claim_next("0").attempts == 1
    store.finish(jid, "succeeded")
    assert store.get(jid).crashes == 7


def test_a_poison_file_is_branded_after_max_attempts_deaths_at_one_point_in_any_stage(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    for stage, checkpoint in ((None, 0), ("probe", 0), ("decode", 0), ("transcribe", 0),
                              ("transcribe", 90), ("write", 0)):
        jid = store.enqueue(f"/w/{stage}{checkpoint}.mp3", "/w", 1, 1, f"f{stage}{checkpoint}")
        assert [_die(store, jid, stage, checkpoint) for _ in range(3)] == \
            ["queued", "queued", "failed"]
        job = store.get(jid)
        assert (job.status, job.reason) == ("failed", "crashed_repeatedly")
        assert job.error_stage == (stage or "transcribe")   # no stage yet: the default one
        assert (job.crashes, job.strikes, job.attempts) == (3, 3, 0)


def test_a_death_elsewhere_breaks_the_run_of_strikes(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    a = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    b = store.enqueue("/w/b.mp3", "/w", 1, 1, "fb")
    assert _die(store, a, "transcribe") == "queued"
    assert _die(store, a, "transcribe") == "queued"            # strike 2: a suspect now
    assert store.get(a).strikes == 2
    assert _die(store, b, "decode") == "queued"                # suspects go last: b runs first
    store.finish(store.claim_next("0").id, "succeeded")    # b again, and done
    # The daemon died while `a` was not even running, so something else kills it: the third
    # death of `a` at its point is not a third strike.
    assert _die(store, a, "transcribe") == "queued"
    assert store.get(a).strikes == 1 and store.get(a).status == "queued"


def test_suspects_are_claimed_after_the_other_jobs(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    a = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    b = store.enqueue("/w/b.mp3", "/w", 1, 1, "fb")
    assert _die(store, a, "decode") == "queued"
    assert store.claim_next("0", now=time.time() + 1).id == a   # one death: still first
    store.set_stage(a, "decode")
    store.recover_after_crash(3)
    assert store.claim_next("0").id == b
    assert store.claim_next("0").id == a


def test_retry_gives_a_branded_job_a_clean_slate(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    jid = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    while _die(store, jid, "decode", max_attempts=2) != "failed":
        pass
    assert store.retry_failed(reason="crashed_repeatedly") == [jid]
    job = store.get(jid)
    assert (job.status, job.strikes, job.crash_point, job.crashes) == \
        ("queued", 0, None, 2)
    assert _die(store, jid, "decode", max_attempts=2) == "queued"   # counted from 1 again


# The jobs table as schema version 1 created it (before crash accounting), frozen here.
_SCHEMA_V1 = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, root TEXT NOT NULL, size INTEGER,
    mtime_ns INTEGER, fingerprint TEXT, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0, worker TEXT,
    detected_at REAL NOT NULL, started_at REAL, finished_at REAL, current_stage TEXT,
    stage_seconds TEXT NOT NULL DEFAULT '{}', audio_seconds REAL, language TEXT,
    language_probability REAL, model TEXT, device TEXT, compute_type TEXT,
    outputs TEXT NOT NULL DEFAULT '[]', error_stage TEXT, reason TEXT, error_message TEXT,
    suspect TEXT, cpu_avg_ratio REAL, cpu_max_ratio REAL, rss_max_bytes INTEGER,
    gpu_util_max_ratio REAL, gpu_memory_max_bytes INTEGER
);
CREATE INDEX jobs_queue ON jobs(status, not_before, id);
CREATE INDEX jobs_path ON jobs(path, id);
CREATE INDEX jobs_finished ON jobs(status, finished_at);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO jobs (path, root, status, attempts, detected_at, finished_at, outputs)
    VALUES ('/w/done.mp3', '/w', 'succeeded', 1, 1.0, 2.0, '["/w/done.en.srt"]');
INSERT INTO jobs (path, root, status, attempts, detected_at, started_at, current_stage)
    VALUES ('/w/killed.mp3', '/w', 'running', 3, 1.0, 2.0, 'transcribe');
INSERT INTO jobs (path, root, status, detected_at) VALUES ('/w/next.mp3', '/w', 'queued', 1.0);
"""


def test_a_store_made_by_schema_version_1_is_migrated_when_opened(tmp_path):
    import sqlite3

    con = sqlite3.connect(tmp_path / "j.db")
    con.executescript(_SCHEMA_V1)
    con.close()
    store = SqliteStore(tmp_path / "j.db")
    assert store.schema_version() == SCHEMA_VERSION == 8
    assert {j.source for j in store.history()} == {"folder"}   # version 6: source
    columns = {r[1] for r in store._exec("PRAGMA table_info(jobs)")}
    assert {"checkpoint", "crashes", "strikes", "crash_point", "crash_seq",
            "language_source", "stage_spans"} <= columns
    assert {"library", "rel_path", "node", "lease_token", "lease_expires_at"} <= columns
    assert store.get(1).outputs == ["/w/done.en.srt"] and store.get(1).crashes == 0
    assert store.get(1).language_source is None      # decided before there was a chain
    # Version 5 keys the old rows by their watch root and the path below it.
    assert (store.get(1).library, store.get(1).rel_path) == ("/w", "done.mp3")
    # The job the old version was running when it died: requeued, not branded, even though
    # the old version had counted 3 attempts for it.
    requeued, failed = store.recover_after_crash(max_attempts=3)
    assert [j.path for j in requeued] == ["/w/killed.mp3"] and not failed
    assert store.counts()["queued"] == 2 and store.counts()["succeeded"] == 1
    assert store.claim_next("0").path == "/w/killed.mp3"
    store.close()
    SqliteStore(tmp_path / "j.db").close()        # opening again migrates nothing twice
    assert SqliteStore(tmp_path / "j.db").schema_version() == 8
    assert SqliteStore(tmp_path / "j.db").notifications() == []   # the outbox (version 8)


def test_a_version_2_store_gains_the_language_source(tmp_path):
    import sqlite3

    from scribewatch.pipeline.store.sqlite_schema import MIGRATIONS

    con = sqlite3.connect(tmp_path / "j.db")
    con.executescript(_SCHEMA_V1)
    for statement in MIGRATIONS[2]:
        con.execute(statement)
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    store = SqliteStore(tmp_path / "j.db")
    assert store.schema_version() == SCHEMA_VERSION
    store.update(1, language="de", language_source="tag", language_probability=1.0)
    job = store.get(1)
    assert (job.language, job.language_source, job.language_probability) == ("de", "tag", 1.0)
    assert job.as_dict()["language_source"] == "tag"


def test_backoff_and_paused_roots(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    jid = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    store.claim_next("0")
    store.requeue(jid, not_before=time.time() + 60, reason="disk_full")
    assert store.claim_next("0") is None                        # backing off
    assert store.claim_next("0", now=time.time() + 61).id == jid
    store.requeue(jid, refund_attempt=True)
    assert store.claim_next("0", available_libraries=["/other"]) is None   # its mount is gone
    assert store.claim_next("0", available_libraries=["/w"]).attempts == 2


def test_survives_reopen_and_reports_stats(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    jid = store.enqueue("/w/a.mp3", "/w", 10, 5, "fa", detected_at=time.time() - 10)
    store.claim_next("0")
    store.finish(jid, "succeeded", audio_seconds=100.0, outputs=["/w/a.en.srt"])
    store.record_skipped("/w/b.mp3", "/w", 1, 1, "fb", "subtitle_exists", "b.en.srt exists")
    store.close()
    store = SqliteStore(tmp_path / "j.db")
    assert store.get(jid).outputs == ["/w/a.en.srt"]
    stats = store.stats()
    assert stats["counts"]["succeeded"] == 1 and stats["counts"]["skipped"] == 1
    assert stats["skip_reasons"] == {"subtitle_exists": 1}
    assert abs(stats["audio_hours"] - 100 / 3600) < 1e-9
    assert stats["processing_seconds"]["count"] == 1
    mode = store._exec("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def _counted(store: SqliteStore) -> dict:
    """Jobs per status, counted the slow way."""
    out = {s: 0 for s in ("queued", "running", "succeeded", "failed", "skipped")}
    for row in store._exec("SELECT status, COUNT(*) FROM jobs GROUP BY status"):
        out[row[0]] = row[1]
    return out


def _kept(store: SqliteStore) -> dict:
    """Jobs per status as the triggers keep them."""
    return {**dict.fromkeys(_counted(store), 0),
            **{r[0]: r[1] for r in store._exec("SELECT status, n FROM job_counts")}}


def test_counts_follow_every_transition_including_other_processes(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
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
    other = SqliteStore(tmp_path / "j.db")
    assert other.retry_failed() == [ids[1]]
    other.close()
    assert store.counts() == _counted(store) and store.counts()["failed"] == 0
    store.recover_after_crash(max_attempts=1)               # the running one fails
    assert store.counts() == _counted(store) and store.counts()["failed"] == 1
    assert _kept(store) == _counted(store)


def test_a_store_from_before_the_counts_is_counted_once_when_opened(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    for i in range(5):
        store.enqueue(f"/w/{i}.mp3", "/w", 1, 1, f"f{i}")
    store.finish(store.claim_next("0").id, "succeeded")
    for statement in ("DROP TRIGGER job_counts_insert", "DROP TRIGGER job_counts_update",
                      "DROP TRIGGER job_counts_delete", "DROP TABLE job_counts"):
        store._exec(statement)                               # what an older version left
    store.enqueue("/w/late.mp3", "/w", 1, 1, "fl")
    store.close()
    reopened = SqliteStore(tmp_path / "j.db")
    assert reopened.counts()["queued"] == 5 and reopened.counts()["succeeded"] == 1
    SqliteStore(tmp_path / "j.db").close()                      # opening again counts nothing twice
    assert reopened.counts() == _counted(reopened) == _kept(reopened)


def test_batch_is_one_transaction(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    other = SqliteStore(tmp_path / "j.db")        # another connection sees only commits
    with store.batch():
        store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
        with store.batch():                     # nested: part of the outer one
            store.record_skipped("/w/b.mp3", "/w", 1, 1, "fb", "subtitle_exists", "b.en.srt")
        assert other.counts()["queued"] == 0
    assert other.counts()["queued"] == 1 and other.counts()["skipped"] == 1


def test_failed_batch_leaves_nothing(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    try:
        with store.batch():
            store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert store.counts()["queued"] == 0
    store.enqueue("/w/b.mp3", "/w", 1, 1, "fb")  # and the store is usable afterwards
    assert store.counts()["queued"] == 1


def test_job_has_a_typed_field_for_every_column_in_table_order(tmp_path):
    """`history --json` prints `Job.as_dict()`: the same keys, in the same order, as the table."""
    store = SqliteStore(tmp_path / "jobs.db")
    store.enqueue("/w/a.mp3", "/w", 1, 1, "x")
    job = store.claim_next("0")
    columns = [r[1] for r in
               sqlite3.connect(tmp_path / "jobs.db").execute("PRAGMA table_info(jobs)")]
    assert list(job.as_dict()) == columns
    assert (job.stage_seconds, job.outputs, job.suspect, job.checkpoint, job.crash_point) == \
        ({}, [], None, 0, None)


def test_status_reads_do_not_wait_for_a_writer(tmp_path):
    # A scrape reads counts and the last success while a worker holds the store in a write
    # transaction (or a commit runs a WAL checkpoint): it must answer from committed data at
    # once, not queue behind the writer.
    s = SqliteStore(tmp_path / "j.db")
    done = s.enqueue("/m/a.wav", "/m", 1, 1, "fa")
    s.finish(done, "succeeded")
    inside, release = threading.Event(), threading.Event()

    def writer():
        with s.batch():
            s.enqueue("/m/b.wav", "/m", 1, 1, "fb")
            inside.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert inside.wait(5)
        t0 = time.monotonic()
        counts, last = s.counts(), s.last_success_at()
        waited = time.monotonic() - t0
    finally:
        release.set()
        t.join()
    assert waited < 1.0, f"status read waited {waited:.2f} s for the writer"
    assert counts["succeeded"] == 1 and counts["queued"] == 0   # the open batch is not visible
    assert last is not None
    assert s.counts()["queued"] == 1                           # and is, once committed


def test_a_result_read_after_the_call_never_holds_up_a_commit(tmp_path):
    """An INSERT … RETURNING's row read after the store call returned (outside its lock: how
    an intake thread recorded a skipped file) left the statement in progress on the shared
    connection; a worker's claim at that moment failed at COMMIT with "SQL statements in
    progress", and its thread died."""
    store = SqliteStore(tmp_path / "j.db")
    store.enqueue("/w/a.mp3", "/w", 1, 1, "a")
    pending = store._exec("INSERT INTO meta VALUES ('k1', '1'), ('k2', '2') RETURNING key")
    assert pending.fetchone()[0] == "k1"          # one row of two read, the other later
    job = store.claim_next("0")
    assert job is not None and store.get(job.id).status == "running"
    assert [r[0] for r in pending.fetchall()] == ["k1", "k2"]


def test_status_reads_beside_claims_in_other_threads(tmp_path):
    store = SqliteStore(tmp_path / "j.db")
    errors, done = [], threading.Event()

    def read_stats():
        while not done.is_set():
            try:
                store.stats()
            except Exception as e:          # any error fails the test
                errors.append(e)
                return

    reader = threading.Thread(target=read_stats)
    reader.start()
    try:
        for i in range(200):
            jid = store.enqueue(f"/w/{i}.mp3", "/w", 1, 1, str(i))
            job = store.claim_next("0")
            assert job.id == jid
            assert store.finish(jid, "failed", reason="not_media", stage="probe",
                                message="not media", token=job.lease_token)
    finally:
        done.set()
        reader.join()
    assert not errors
    assert store.counts()["failed"] == 200
