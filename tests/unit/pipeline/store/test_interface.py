"""The store contract, run on both engines: SQLite (one machine) and a real PostgreSQL 15
server (several machines). What the daemon relies on must hold on either."""

from __future__ import annotations

import threading
import time

import pytest

from scribewatch.pipeline.store import LeaseSettings, open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request, tmp_path):
    """make_store(node=..., lease_seconds=...) -> a store; every one made shares one database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/jobs.db"
    else:
        url = request.getfixturevalue("postgres_url")
    made = []

    def make(node: str = "n1", lease_seconds: float = 30.0, takeover_delay: float = 0.0):
        store = open_store(url, LeaseSettings(node, lease_seconds, takeover_delay))
        made.append(store)
        return store

    make.engine = request.param
    yield make
    for store in made:
        store.close()


def test_claims_are_fifo_with_a_lease_and_count_attempts(make_store):
    store = make_store()
    a = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    b = store.enqueue("/w/b.mp3", "/w", 1, 1, "fb")
    job = store.claim_next("0")
    assert (job.id, job.status, job.attempts, job.node) == (a, "running", 1, "n1")
    assert job.lease_token and job.lease_expires_at > time.time() + 20
    assert (job.library, job.rel_path) == ("/w", "a.mp3")
    other = store.claim_next("1")
    assert other.id == b and other.lease_token != job.lease_token
    assert store.claim_next("0") is None
    assert store.counts()["running"] == 2 and store.schema_version() >= 1


def test_intake_is_idempotent_on_library_and_relative_path(make_store):
    # Node A mounts the NAS at /mnt/nas/movies, node B at /data/movies: one job.
    a, b = make_store("a"), make_store("b")
    first = a.enqueue("/mnt/nas/movies/x.mkv", "/mnt/nas/movies", 5, 1, "fp",
                      library="movies", rel_path="x.mkv")
    again = b.enqueue("/data/movies/x.mkv", "/data/movies", 5, 1, "fp",
                      library="movies", rel_path="x.mkv")
    assert again == first and a.counts()["queued"] == 1
    assert b.latest_for_key("movies", "x.mkv").id == first
    assert tuple(b.latest_stat_for_key("movies", "x.mkv"))[:3] == (5, 1, "queued")
    job = b.claim_next("0", available_libraries=["movies"])
    # Once it is running a new sighting still makes no second job.
    assert a.enqueue("/mnt/nas/movies/x.mkv", "/mnt/nas/movies", 5, 1, "fp",
                     library="movies", rel_path="x.mkv") == job.id
    assert a.claim_next("0") is None
    # Finished, it may be queued again (a replaced file): a new job.
    assert b.finish(job.id, "succeeded", token=job.lease_token)
    assert a.enqueue("/mnt/nas/movies/x.mkv", "/mnt/nas/movies", 6, 2, "fp2",
                     library="movies", rel_path="x.mkv") != job.id


def test_a_claim_waits_for_its_library(make_store):
    store = make_store()
    jid = store.enqueue("/m/x.mkv", "/m", 1, 1, "f", library="movies", rel_path="x.mkv")
    assert store.claim_next("0", available_libraries=["shows"]) is None
    assert store.claim_next("0", available_libraries=[]) is None
    assert store.claim_next("0", available_libraries=["movies", "shows"]).id == jid


def test_fencing_a_write_without_the_current_token_changes_nothing(make_store):
    store = make_store()
    jid = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    job = store.claim_next("0")
    assert store.set_stage(jid, "decode", token=job.lease_token)
    assert not store.set_stage(jid, "write", token="stale")
    assert not store.update(jid, token="stale", language="xx")
    assert not store.finish(jid, "succeeded", token="stale", outputs=["/w/a.xx.srt"])
    assert not store.requeue(jid, token="stale")
    got = store.get(jid)
    assert (got.status, got.current_stage, got.language, got.outputs) == \
        ("running", "decode", None, [])
    assert store.finish(jid, "succeeded", token=job.lease_token, outputs=["/w/a.en.srt"])
    assert store.get(jid).outputs == ["/w/a.en.srt"]


def test_a_heartbeat_renews_the_lease_and_a_lost_one_is_known(make_store):
    store = make_store(lease_seconds=1.0)
    store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    job = store.claim_next("0")
    assert store.holds(job.id, job.lease_token)
    for _ in range(3):              # 1.5 s of renewals: longer than one lease
        time.sleep(0.5)
        assert store.renew(job.id, job.lease_token)
    assert store.holds(job.id, job.lease_token)
    assert store.take_over_expired(3) == ([], [])
    assert not store.renew(job.id, "someone else")
    time.sleep(1.3)                 # no renewal: the lease runs out
    assert not store.holds(job.id, job.lease_token)


def test_an_expired_lease_is_taken_over_by_another_node_and_the_old_one_is_fenced(make_store):
    a, b = make_store("a", lease_seconds=0.5), make_store("b", lease_seconds=30)
    jid = a.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    lost = a.claim_next("0")
    a.set_stage(jid, "transcribe", token=lost.lease_token)
    assert b.take_over_expired(3) == ([], [])           # not yet expired
    time.sleep(0.8)
    requeued, failed = b.take_over_expired(3)
    assert [j.id for j in requeued] == [jid] and not failed
    assert (requeued[0].takeovers, requeued[0].crashes, requeued[0].crash_point) == \
        (1, 1, "transcribe")
    job = b.claim_next("0")
    assert (job.id, job.node, job.attempts, job.takeovers) == (jid, "b", 1, 1)
    # Node a comes back: it can neither renew, nor hold, nor record a result.
    assert not a.renew(jid, lost.lease_token) and not a.holds(jid, lost.lease_token)
    assert not a.finish(jid, "succeeded", token=lost.lease_token, outputs=["stale"])
    assert b.finish(jid, "succeeded", token=job.lease_token, outputs=["/w/a.en.srt"])
    done = a.get(jid)
    assert (done.status, done.node, done.outputs) == ("succeeded", "b", ["/w/a.en.srt"])


def test_takeover_delay_holds_an_expired_lease_a_little_longer(make_store):
    a = make_store("a", lease_seconds=0.3, takeover_delay=1.0)
    a.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    a.claim_next("0")
    time.sleep(0.6)
    assert a.take_over_expired(3) == ([], [])
    time.sleep(1.0)
    assert len(a.take_over_expired(3)[0]) == 1


def test_a_job_that_kills_every_node_at_one_point_is_branded(make_store):
    store = make_store(lease_seconds=0.2)
    jid = store.enqueue("/w/poison.mp3", "/w", 1, 1, "fp")
    for attempt in range(1, 4):
        job = store.claim_next("0")
        store.set_stage(jid, "decode", token=job.lease_token)
        time.sleep(0.35)
        requeued, failed = store.take_over_expired(max_attempts=3)
        if attempt < 3:
            assert requeued and requeued[0].strikes == attempt
    assert [j.id for j in failed] == [jid]
    job = store.get(jid)
    assert (job.status, job.reason, job.error_stage, job.takeovers) == \
        ("failed", "crashed_repeatedly", "decode", 3)


def test_a_restarted_node_recovers_its_own_running_jobs(make_store):
    a, b = make_store("a"), make_store("b")
    ja = a.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    jb = a.enqueue("/w/b.mp3", "/w", 1, 1, "fb")
    assert a.claim_next("0").id == ja and b.claim_next("0").id == jb
    requeued, failed = a.recover_after_crash(max_attempts=3)
    ids = {j.id for j in requeued}
    if make_store.engine == "sqlite":
        assert ids == {ja, jb}   # one machine: every running job was this daemon's
    else:
        assert ids == {ja}       # b is alive; its lease speaks for it
        assert a.get(jb).status == "running"


def test_concurrent_claims_never_take_one_job_twice(make_store):
    first = make_store("a")
    for i in range(60):
        first.enqueue(f"/w/{i}.mp3", "/w", 1, 1, f"f{i}")
    stores = [first] + [make_store(f"n{i}") for i in range(3)]
    claimed: list[int] = []
    lock = threading.Lock()

    def drain(store, worker):
        while (job := store.claim_next(worker)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=drain, args=(s, str(i))) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 60


def test_history_stats_retry_and_redo(make_store):
    store = make_store()
    ok = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa", detected_at=time.time() - 5)
    bad = store.enqueue("/w/sub/b.mp3", "/w", 1, 1, "fb")
    store.record_skipped("/w/c.mp3", "/w", 1, 1, "fc", "subtitle_exists", "c.en.srt exists")
    j = store.claim_next("0")
    store.finish(ok, "succeeded", token=j.lease_token, audio_seconds=10.0, outputs=["/w/a.srt"])
    j = store.claim_next("0")
    store.finish(bad, "failed", token=j.lease_token, reason="not_media", stage="probe",
                 message="x")
    stats = store.stats()
    assert stats["counts"]["succeeded"] == stats["counts"]["failed"] == 1
    assert stats["skip_reasons"] == {"subtitle_exists": 1}
    assert stats["failure_reasons"] == {"not_media": 1} and stats["total_jobs"] == 3
    assert [h.id for h in store.history(status="failed")] == [bad]
    assert store.last_success_at() is not None and store.get(ok).node == "n1"
    assert store.retry_failed(reason="not_media") == [bad]
    assert store.get(bad).status == "queued" and store.get(bad).attempts == 0
    queued, active = store.redo(under="/w")
    assert {j.id for j in queued} == {ok, store.latest_for_path("/w/c.mp3").id}
    assert [j.id for j in active] == [bad]
    assert [j.id for j in store.all_jobs(after_id=0, limit=2)] == [ok, bad]


def test_postgres_away_is_store_unavailable_and_the_store_reconnects_when_back():
    from scribewatch.pipeline.store import StoreUnavailable
    from tests.harness.postgres import PostgresServer, require_postgres

    require_postgres()
    with PostgresServer.start_new() as server:   # its own server: this test stops it
        store = open_store(server.create_database("away"), LeaseSettings("n1", 30, 0))
        jid = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
        job = store.claim_next("0")
        server.stop()
        with pytest.raises(StoreUnavailable):
            store.renew(jid, job.lease_token)
        with pytest.raises(StoreUnavailable):
            store.claim_next("0")
        assert not store.check_writable()
        server.start()
        assert store.renew(jid, job.lease_token)          # the lease survived the outage
        assert store.finish(jid, "succeeded", token=job.lease_token)
        assert store.counts()["succeeded"] == 1
        store.close()


def test_counts_follow_every_transition_from_every_node(make_store):
    a, b = make_store("a"), make_store("b")
    ids = [a.enqueue(f"/w/{i}.mp3", "/w", 1, 1, f"f{i}") for i in range(6)]
    b.record_skipped("/w/s.mp3", "/w", 1, 1, "fs", "subtitle_exists", "s.srt exists")
    jobs = [a.claim_next("0"), b.claim_next("0"), b.claim_next("1")]
    a.finish(ids[0], "succeeded", token=jobs[0].lease_token)
    b.finish(ids[1], "failed", token=jobs[1].lease_token, reason="not_media", stage="probe")
    b.requeue(ids[2], token=jobs[2].lease_token)
    expected = {"queued": 4, "running": 0, "succeeded": 1, "failed": 1, "skipped": 1}
    for _ in range(70):   # past the PostgreSQL store's folding of its count rows, twice
        assert a.counts() == expected and b.counts() == expected
    assert a.retry_failed() == [ids[1]]
    assert b.counts()["queued"] == 5 and a.counts()["failed"] == 0


def test_a_postgres_store_of_schema_version_1_is_migrated_with_its_counts(postgres_url):
    import psycopg

    from scribewatch.pipeline.store.postgres import PG_MIGRATIONS, PG_SCHEMA_VERSION

    with psycopg.connect(postgres_url, autocommit=True) as con:   # as the first release left it
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        for statement in PG_MIGRATIONS[1]:
            con.execute(statement)
        con.execute("INSERT INTO jobs (path, root, library, rel_path, status, detected_at) "
                    "VALUES ('/w/a', '/w', '/w', 'a', 'queued', 1), "
                    "('/w/b', '/w', '/w', 'b', 'succeeded', 1)")
    store = open_store(postgres_url, LeaseSettings("n1", 30, 0))
    assert store.schema_version() == PG_SCHEMA_VERSION == 5
    # Version 3: the jobs before it are folder jobs, and API jobs and answers have tables.
    assert {j.source for j in store.history()} == {"folder"}
    assert store.api_answers_size() == (0, 0)
    assert store.notifications() == [] and store.outbox_pending() == 0   # version 5
    assert store.counts() == {"queued": 1, "running": 0, "succeeded": 1, "failed": 0,
                              "skipped": 0}
    store.close()
    again = open_store(postgres_url, LeaseSettings("n1", 30, 0))   # nothing applied twice
    assert again.counts()["queued"] == 1
    again.close()


def test_the_node_name_is_taken_again_when_its_session_ends(postgres_url):
    """A PostgreSQL restart ends every session, and with it the lock on a node's name: the
    daemon takes it again at its next housekeeping, unless another daemon took it first."""
    import psycopg

    def end_name_sessions():   # what a restart does to them
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'scribewatch@n1 (name)'").fetchall()
        assert ended == [(True,)]

    a = open_store(postgres_url, LeaseSettings("n1", 30, 0))
    b = open_store(postgres_url, LeaseSettings("n1", 30, 0))
    try:
        assert a.hold_node_name() and a.keep_node_name()
        assert not b.hold_node_name()
        end_name_sessions()
        assert a.keep_node_name()                     # taken again
        assert not b.hold_node_name()
        end_name_sessions()
        assert b.hold_node_name()                     # the other daemon was first this time
        assert not a.keep_node_name() and not a.keep_node_name()
    finally:
        a.close()
        b.close()


# -- the notification outbox (store/outbox.py) ---------------------------------------------------
def announcing(store, *targets: str, delay: float = 0.0):
    """The store writes one row per target for each succeeded job, as the sender's announce."""
    store.announce = lambda job: [(t, job.path, delay) for t in targets] \
        if job.status == "succeeded" else []
    return store


def finished(store, path: str, status: str = "succeeded") -> int:
    job_id = store.enqueue(path, "/w", 1, 1, path)
    job = store.claim_next("0")
    assert job.id == job_id
    assert store.finish(job_id, status, token=job.lease_token)
    return job_id


def test_a_finished_job_and_its_notifications_are_one_transaction(make_store):
    store = announcing(make_store(), "jellyfin", "webhook:1")
    a = finished(store, "/w/a.mkv")
    finished(store, "/w/b.mkv", "skipped")          # nothing to tell for this one
    rows = sorted(store.notifications(), key=lambda r: r.target)
    assert [(r.job_id, r.target, r.item, r.status, r.attempts) for r in rows] == [
        (a, "jellyfin", "/w/a.mkv", "pending", 0), (a, "webhook:1", "/w/a.mkv", "pending", 0)]
    assert store.outbox_pending() == 2

    # A finish that the lease no longer allows writes no notification either.
    c = store.enqueue("/w/c.mkv", "/w", 1, 1, "c")
    store.claim_next("0")
    assert not store.finish(c, "succeeded", token="not-the-lease")
    # A notification that cannot be written undoes the job's end with it.
    store.announce = lambda job: [("jellyfin", None, 0.0)]      # NOT NULL violated
    with pytest.raises(Exception):
        store.finish(c, "succeeded", token=store.get(c).lease_token)
    assert store.get(c).status == "running" and store.outbox_pending() == 2


def test_claims_take_one_targets_due_rows_and_count_attempts(make_store):
    store = announcing(make_store(), "plex")
    for name in ("a", "b", "c"):
        finished(store, f"/w/{name}.mkv")
    announcing(store, "jellyfin", delay=30.0)            # in its batch window
    finished(store, "/w/d.mkv")
    assert store.outbox_wait(["jellyfin"]) > 25 and store.outbox_wait(["plex"]) == 0
    assert store.outbox_claim(["jellyfin"], "n1") is None            # not due yet
    claim = store.outbox_claim(["plex", "jellyfin"], "n1", limit=2)
    assert claim.target == "plex" and [r.item for r in claim.rows] == ["/w/a.mkv", "/w/b.mkv"]
    assert all(r.attempts == 1 for r in claim.rows)
    rest = store.outbox_claim(["plex", "jellyfin"], "n1")          # the claimed ones are held
    assert [r.item for r in rest.rows] == ["/w/c.mkv"]
    assert store.outbox_claim(["plex"], "n1") is None
    # the batch window: once one row is due, rows due within `ahead` come with it
    announcing(store, "jellyfin")
    finished(store, "/w/e.mkv")
    assert [r.item for r in store.outbox_claim(["jellyfin"], "n1", ahead=60).rows] == \
        ["/w/d.mkv", "/w/e.mkv"]


def test_settling_is_fenced_by_the_claim_and_failures_stay_visible(make_store):
    store = announcing(make_store(), "webhook:1")
    for name in ("a", "b", "c"):
        finished(store, f"/w/{name}.mkv")
    claim = store.outbox_claim(["webhook:1"], "n1")
    a, b, c = (r.id for r in claim.rows)
    assert store.outbox_sent(claim.token, [a]) == 1
    assert store.outbox_sent("another-token", [b]) == 0          # not this claim's
    assert store.outbox_retry(claim.token, [b], 0.0, "HTTP 503") == 1
    assert store.outbox_failed(claim.token, [c], "HTTP 401: bad token") == 1
    assert store.outbox_failed(claim.token, [a], "late") == 0     # sent stays sent
    by_id = {r.id: r for r in store.notifications()}
    assert (by_id[a].status, by_id[a].last_error) == ("sent", None)
    assert (by_id[b].status, by_id[b].last_error) == ("pending", "HTTP 503")
    assert (by_id[c].status, by_id[c].last_error) == ("failed", "HTTP 401: bad token")
    assert by_id[a].finished_at and by_id[c].finished_at and store.outbox_pending() == 1
    again = store.outbox_claim(["webhook:1"], "n1")
    assert [(r.id, r.attempts) for r in again.rows] == [(b, 2)]
    assert store.outbox_extend(again.token, 60) == 1
    # Retention: rows finished longer ago than the limits go; what waits never does.
    assert store.outbox_purge(3600, 3600) == 0
    assert store.outbox_purge(0, 3600) == 1 and {r.id for r in store.notifications()} == {b, c}
    assert store.outbox_purge(0, 0) == 1 and [r.id for r in store.notifications()] == [b]


def test_a_dead_senders_claim_is_released_at_its_restart_or_when_it_runs_out(make_store):
    a, b = make_store("a"), make_store("b")
    announcing(a, "jellyfin")
    finished(a, "/w/x.mkv")
    claim = a.outbox_claim(["jellyfin"], "a", lease_seconds=1.0)
    assert b.outbox_claim(["jellyfin"], "b") is None          # held by node a
    assert b.outbox_release("b") == 0 and a.outbox_release("a") == 1   # a restarts
    again = b.outbox_claim(["jellyfin"], "b", lease_seconds=1.0)
    assert [r.attempts for r in again.rows] == [2], "the crashed attempt counts"
    assert a.outbox_sent(claim.token, [claim.rows[0].id]) == 0, "a's old claim changes nothing"
    time.sleep(1.1)                                           # b dies: its claim runs out
    assert b.outbox_wait(["jellyfin"]) == 0
    third = a.outbox_claim(["jellyfin"], "a")
    assert [r.attempts for r in third.rows] == [3]
    assert a.outbox_sent(third.token, [third.rows[0].id]) == 1 and a.outbox_pending() == 0


def test_two_nodes_claiming_at_once_never_take_one_row_twice(make_store):
    nodes = [make_store(f"n{i}") for i in range(4)]
    announcing(nodes[0], "webhook:1")
    for i in range(40):
        finished(nodes[0], f"/w/{i}.mkv")
    taken: list[int] = []
    lock = threading.Lock()

    def sender(store, name):
        while (claim := store.outbox_claim(["webhook:1"], name, limit=3)) is not None:
            with lock:
                taken.extend(r.id for r in claim.rows)
            store.outbox_sent(claim.token, [r.id for r in claim.rows])

    threads = [threading.Thread(target=sender, args=(s, f"n{i}")) for i, s in enumerate(nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == sorted(r.id for r in nodes[0].notifications(limit=100))
    assert len(taken) == len(set(taken)) == 40


def test_imports_are_claimed_before_the_folder_backlog_and_promoted_not_duplicated(make_store):
    """Schema 7 (PostgreSQL 4): a Sonarr/Radarr import (IMPORT_PRIORITY) runs before every
    folder job, the oldest job first among them; the folder backlog keeps its order; a file
    already queued is promoted (one job), and a later sighting by the watcher lowers nothing."""
    from scribewatch.pipeline.store.sqlite_schema import IMPORT_PRIORITY

    store = make_store()
    backlog = [store.enqueue(f"/w/{n}.mkv", "/w", 1, 1, f"f{n}") for n in range(3)]
    hint = {"language": "ja", "note": "Sonarr: series.originalLanguage ja"}
    imported = store.enqueue("/w/new.mkv", "/w", 1, 1, "fn", priority=IMPORT_PRIORITY,
                             language_hint=hint, outputs=["/w/new.en.srt"])
    promoted = store.enqueue("/w/2.mkv", "/w", 1, 1, "f2", priority=IMPORT_PRIORITY)
    assert promoted == backlog[2] and store.counts()["queued"] == 4
    # The watcher sees the files later: no second job, no lower priority.
    assert store.enqueue("/w/new.mkv", "/w", 1, 1, "fn") == imported
    assert store.enqueue("/w/2.mkv", "/w", 1, 1, "f2") == promoted
    assert [q.job_id for q in store.next_queued()] == [promoted, imported, *backlog[:2]]
    assert store.peek_next().id == promoted
    assert store.claim_next("0").id == promoted
    second = store.claim_next("0")
    assert (second.id, second.priority, second.language_hint, second.outputs) == (
        imported, IMPORT_PRIORITY, hint, ["/w/new.en.srt"])
    assert [store.claim_next("0").id for _ in range(2)] == backlog[:2]
    assert store.get(backlog[0]).priority == 0 and store.get(backlog[0]).language_hint is None


def test_a_renamed_file_takes_its_job_with_it(make_store):
    store = make_store()
    old = store.enqueue("/w/a.mkv", "/w", 1, 1, "fa")
    job = store.claim_next("0")
    store.finish(job.id, "succeeded", token=job.lease_token, outputs=["/w/a.en.srt"])
    # The watcher saw the renamed file before the webhook came: that job was never needed.
    early = store.enqueue("/w/b.mkv", "/w", 1, 1, "fa")
    moved = store.move_key("/w", "a.mkv", "/w/b.mkv", "/w", "/w", "b.mkv", ["/w/b.en.srt"])
    assert moved.id == old and (moved.path, moved.rel_path, moved.outputs) == (
        "/w/b.mkv", "b.mkv", ["/w/b.en.srt"])
    assert store.get(early) is None and store.counts()["queued"] == 0
    assert store.latest_for_key("/w", "b.mkv").id == old
    assert store.latest_for_key("/w", "a.mkv") is None
    assert store.move_key("/w", "gone.mkv", "/w/c.mkv", "/w", "/w", "c.mkv", []) is None


# -- the HTTP API's jobs and kept answers (store/api_jobs.py) ----------------------------------
def _answer(key: str, body: bytes = b"1\n00:00:00,000 --> 00:00:01,000\nhi\n"):
    from scribewatch.pipeline.store.api_jobs import StoredAnswer
    return StoredAnswer(key, body, "text/plain", "en", 11.0, None)


def test_api_jobs_one_active_job_per_answer_key_on_any_node(make_store):
    a, b = make_store("a"), make_store("b")
    made = a.submit_api_job("k" * 64, "asr", {"spool": "/s/1"}, size=10)
    joined = b.submit_api_job("k" * 64, "asr", {"spool": "/s/2"}, size=10)
    assert made.created and not joined.created and joined.job.id == made.job.id
    assert (made.job.source, made.job.endpoint, made.job.node) == ("api", "asr", "a")
    assert made.job.api_request == {"spool": "/s/1"}
    # Folder claims pass over it; only the node holding its upload claims it.
    assert a.claim_next("0") is None and b.claim_next_api("0") is None
    job = a.claim_next_api("0")
    assert (job.id, job.status, job.attempts) == (made.job.id, "running", 1) and job.lease_token
    assert a.active_api_spools() == {"/s/1"} and b.active_api_spools() == set()
    a.finish_api_job(job, _answer("k" * 64), max_bytes=10**6, max_age_seconds=3600,
                     token=job.lease_token)
    # Now the answer is there for every node, and a new request gets it, not a job.
    found = b.submit_api_job("k" * 64, "asr", {"spool": "/s/3"}, size=10)
    assert found.answer.body.endswith(b"hi\n") and found.answer.job_id == job.id
    row = b.get(b.record_api_answered("k" * 64, "asr", found.answer, 10))
    assert (row.status, row.answered_by, row.language) == ("succeeded", job.id, "en")
    assert a.get(job.id).status == "succeeded" and a.active_api_spools() == set()


def test_api_jobs_submitted_at_once_on_two_nodes_make_one_job(make_store):
    stores = [make_store(f"n{i}") for i in range(4)]
    results, barrier = [], threading.Barrier(len(stores))

    def submit(store):
        barrier.wait()
        results.append(store.submit_api_job("race", "asr", {"spool": store.lease.node},
                                            size=1))
    threads = [threading.Thread(target=submit, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.created for r in results) == 1 and len({r.job.id for r in results}) == 1


def test_api_jobs_withdrawn_only_while_queued_and_recovered_after_a_death(make_store):
    store = make_store()
    first = store.submit_api_job("w1", "asr", {}, size=1).job
    assert store.withdraw_api_job(first.id, "busy", "no worker") is True
    assert (store.get(first.id).status, store.get(first.id).reason) == ("failed", "busy")
    second = store.submit_api_job("w1", "asr", {}, size=1)   # the key is free again
    assert second.created and second.job.id != first.id
    claimed = store.claim_next_api("0")
    assert store.withdraw_api_job(claimed.id, "cancelled", "hung up") is False
    requeued, _ = store.recover_after_crash(3)            # killed while running: queued again
    assert [j.id for j in requeued] == [claimed.id] and store.claim_next_api("0").id == claimed.id
    assert store.retry_failed() == []                     # an API job's upload is gone


def test_api_answers_are_evicted_by_age_then_least_recently_used_bytes(make_store):
    store = make_store()
    for i, key in enumerate(("old", "a", "b", "c")):
        job = store.submit_api_job(key, "asr", {}, size=1).job
        job = store.claim_next_api("0")
        store.finish_api_job(job, _answer(key, b"x" * 100), max_bytes=10**6,
                             max_age_seconds=3600, token=job.lease_token)
    store._exec("UPDATE api_answers SET created_at = created_at - 7200 WHERE answer_key = 'old'")
    store._exec("UPDATE api_answers SET used_at = used_at - 60 WHERE answer_key = 'a'")
    assert store.api_answer("b") is not None               # used now: `a` is the least recent
    evicted = store.evict_api_answers(max_bytes=250, max_age_seconds=3600)
    assert (evicted.age, evicted.bytes) == (1, 1) and store.api_answers_size() == (2, 200)
    assert store.api_answer("a") is None and store.api_answer("old") is None
    assert store.api_answer("b") and store.api_answer("c")
    # An answer over the whole bound is not kept at all; the job still succeeds.
    store.submit_api_job("big", "asr", {}, size=1)
    job = store.claim_next_api("0")
    store.finish_api_job(job, _answer("big", b"y" * 300), max_bytes=250,
                         max_age_seconds=3600, token=job.lease_token)
    assert store.api_answer("big") is None and store.get(job.id).status == "succeeded"
