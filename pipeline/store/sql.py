"""What both job stores do in the same SQL: intake, claims with leases, fenced writes, crash and
takeover accounting, history. `sqlite.py` (SQLite) and `postgres.py` (PostgreSQL) supply the
connection, transactions, the clock and the few statements that differ.

Statements use `?` placeholders; the PostgreSQL store turns them into psycopg's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from typing import Iterable

from ..contract import FAILURE_REASONS
from ..job import Job
from .api_jobs import ApiJobsSql
from .interface import ACTIVE, FINAL, LeaseSettings
from .outbox import OutboxStore
from .sqlite_schema import CLAIM_ORDER, FOLDER_PRIORITY
from .views import StoreViews

_JSON_COLUMNS = ("stage_seconds", "outputs", "suspect", "stage_spans", "language_hint",
                 "api_request")
_row_to_job = Job.from_row


# A waiting job seen again: its file's stat, a higher priority, a hint and own outputs if given.
_REFRESH = ("size = ?, mtime_ns = ?, fingerprint = ?, priority = MAX(priority, ?), "
            "language_hint = COALESCE(?, language_hint), outputs = COALESCE(?, outputs)")


def job_key(path: str, root: str, library: str | None, rel_path: str | None) -> tuple[str, str]:
    """(library, relative path). Without a named library the watch root is the library: on one
    machine that keys a file by its path, as before there were libraries."""
    if library is None:
        library = root
    if rel_path is None:
        rel_path = os.path.relpath(path, root) if path.startswith(root.rstrip("/") + "/") \
            else path
    return library, rel_path


def crash_point(stage: str | None, checkpoint: float) -> str:
    """Where in a job the daemon died: 'start' (claimed, no stage yet), 'decode',
    'transcribe@120' (120 s of audio transcribed), …"""
    point = stage or "start"
    return f"{point}@{checkpoint:g}" if checkpoint else point


class SqlStore(ApiJobsSql, StoreViews, OutboxStore):
    lease: LeaseSettings
    _NOW = "?"              # the SQL expression of the store's clock (leases)
    _SKIP_LOCKED = ""       # PostgreSQL: rows another node's transaction holds are passed over

    # -- provided by the engine: _exec(sql, params), _transaction(), counts() ----------------
    def _recover_scope(self) -> tuple[str, tuple]:
        """The running jobs a fresh start of this process may call its own dead ones."""
        return "", ()

    def batch(self):
        return self._transaction()

    def _read(self, sql: str, params: Iterable = ()) -> list:
        """A read for status figures (SQLite: its own reader connection)."""
        return self._exec(sql, params).fetchall()

    def _meta_set(self, key: str, value: str) -> None:
        self._exec("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                   "SET value = excluded.value", (key, value))

    def _meta_get(self, key: str) -> str | None:
        row = self._exec("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def schema_version(self) -> int:
        return int(self._meta_get("schema_version"))

    def _fenced(self, where: str, params: list, token: str | None) -> tuple[str, list]:
        if token is None:
            return where, params
        return where + " AND lease_token = ?", params + [token]

    # -- intake ----------------------------------------------------------------------------
    def enqueue(self, path, root, size, mtime_ns, fingerprint, detected_at=None, *,
                library=None, rel_path=None, priority=FOLDER_PRIORITY, language_hint=None,
                outputs=None) -> int:
        """A queued job for the file, or the file's active job when it has one already: two
        nodes that both see a new file make one job (intake is idempotent on the key).

        `priority` (IMPORT_PRIORITY: Sonarr/Radarr) raises a waiting job's, never lowers it;
        `language_hint` ({"language", "note"}) and `outputs` (subtitles the job may replace as
        its own: an upgraded file's) are set on a waiting job when given."""
        library, rel_path = job_key(path, root, library, rel_path)
        hint = json.dumps(language_hint) if language_hint is not None else None
        own = json.dumps(list(outputs)) if outputs is not None else None
        with self._transaction():
            row = self._exec("SELECT id, status FROM jobs WHERE library = ? AND rel_path = ? "
                             "AND status IN ('queued', 'running')", (library, rel_path)).fetchone()
            if row is not None:
                if row[1] == "queued":   # replaced while it waited: it is read when it runs
                    self._exec(f"UPDATE jobs SET {_REFRESH} WHERE id = ?",
                               (size, mtime_ns, fingerprint, priority, hint, own, row[0]))
                return row[0]
            return self._exec(
                "INSERT INTO jobs (path, root, library, rel_path, size, mtime_ns, fingerprint, "
                "status, detected_at, priority, language_hint, outputs) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?) RETURNING id",
                (path, root, library, rel_path, size, mtime_ns, fingerprint,
                 detected_at or time.time(), priority, hint, own or "[]")).fetchall()[0][0]

    def record_skipped(self, path, root, size, mtime_ns, fingerprint, reason, message, *,
                       library=None, rel_path=None) -> int:
        library, rel_path = job_key(path, root, library, rel_path)
        now = time.time()
        return self._exec(
            "INSERT INTO jobs (path, root, library, rel_path, size, mtime_ns, fingerprint, "
            "status, detected_at, finished_at, reason, error_message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'skipped', ?, ?, ?, ?) RETURNING id",
            (path, root, library, rel_path, size, mtime_ns, fingerprint, now, now, reason,
             message)).fetchall()[0][0]

    def update_stat(self, job_id: int, size: int, mtime_ns: int) -> None:
        """Same content, new mtime (a `touch`): remember it so the cheap check matches next time."""
        self._exec("UPDATE jobs SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, job_id))

    def latest_for_key(self, library: str, rel_path: str) -> Job | None:
        row = self._exec("SELECT * FROM jobs WHERE library = ? AND rel_path = ? "
                         "ORDER BY id DESC LIMIT 1", (library, rel_path)).fetchone()
        return _row_to_job(row) if row else None

    def latest_stat_for_key(self, library: str, rel_path: str):
        """(size, mtime_ns, status, reason) of the file's newest job: the cheap rescan check."""
        return self._exec("SELECT size, mtime_ns, status, reason FROM jobs WHERE library = ? "
                          "AND rel_path = ? ORDER BY id DESC LIMIT 1",
                          (library, rel_path)).fetchone()

    def move_key(self, library: str, rel_path: str, path: str, root: str, new_library: str,
                 new_rel_path: str, outputs: list[str]) -> Job | None:
        """A file renamed outside (Sonarr's or Radarr's Rename, pipeline/arr/): its newest job
        follows it to the new key, with its subtitles' new paths, so the watcher finds the
        renamed file done. A job queued under the new key meanwhile (the watcher was first) is
        deleted: it was never needed. None: no job to move (none, running, or the new key's
        job is running)."""
        with self._transaction():
            row = self._exec("SELECT id, status FROM jobs WHERE library = ? AND rel_path = ? "
                             f"ORDER BY id DESC LIMIT 1{self._lock_rows()}",
                             (library, rel_path)).fetchone()
            if row is None or row[1] == "running":
                return None
            there = self._exec("SELECT id, status FROM jobs WHERE library = ? AND rel_path = ? "
                               "AND status IN ('queued', 'running')",
                               (new_library, new_rel_path)).fetchone()
            if there is not None:
                if there[1] == "running":
                    return None
                self._exec("DELETE FROM jobs WHERE id = ?", (there[0],))
            self._exec("UPDATE jobs SET path = ?, root = ?, library = ?, rel_path = ?, "
                       "outputs = ? WHERE id = ?", (path, root, new_library, new_rel_path,
                                                    json.dumps(outputs), row[0]))
            return self.get(row[0])

    # -- claims and leases -----------------------------------------------------------------
    def claim_next(self, worker: str, available_libraries: Iterable[str] | None = None,
                   now: float | None = None, *, suspects: bool = True) -> Job | None:
        """Take the first runnable queued job (CLAIM_ORDER: imports before the folder backlog,
        suspects last, else the oldest): status → running, attempts + 1, and a lease for
        this node (a fresh token, an expiry `lease_seconds` ahead on the store's clock).

        `available_libraries`: only jobs of these libraries (a dropped mount waits).
        `suspects=False` leaves jobs the daemon died during (strikes) in the queue."""
        now = time.time() if now is None else now
        query = self._runnable(available_libraries, now, suspects)
        if query is None:
            return None
        where, params = query
        token = uuid.uuid4().hex
        with self._transaction():
            row = self._exec(
                f"SELECT id FROM jobs WHERE {where} ORDER BY {CLAIM_ORDER} "
                f"LIMIT 1{self._lock_rows()}", params).fetchone()
            if row is None:
                return None
            return _row_to_job(self._exec(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, "
                "worker = ?, node = ?, lease_token = ?, "
                f"lease_expires_at = {self._NOW} + ?, current_stage = NULL, checkpoint = 0, "
                "error_stage = NULL, reason = NULL, error_message = NULL, stage_spans = '{}' "
                "WHERE id = ? RETURNING *",
                (now, worker, self.lease.node, token, *self._now_params(),
                 self.lease.lease_seconds, row[0])).fetchall()[0])

    @staticmethod
    def _runnable(available_libraries, now: float, suspects: bool) -> tuple[str, list] | None:
        """The WHERE of the jobs a worker may take now (None: no library is there)."""
        libraries = list(available_libraries) if available_libraries is not None else None
        # API jobs are claimed apart (claim_next_api): only the node holding the upload can.
        where = "status = 'queued' AND source <> 'api' AND not_before <= ?" + (
            "" if suspects else " AND strikes = 0")
        params: list = [now]
        if libraries is not None:
            if not libraries:
                return None
            where += f" AND library IN ({','.join('?' * len(libraries))})"
            params += libraries
        return where, params

    def peek_next(self, available_libraries: Iterable[str] | None = None, *,
                  suspects: bool = True) -> Job | None:
        """The job claim_next would take now, left queued (the daemon's prefetch reads it)."""
        query = self._runnable(available_libraries, time.time(), suspects)
        if query is None:
            return None
        rows = self._read(f"SELECT * FROM jobs WHERE {query[0]} ORDER BY {CLAIM_ORDER} "
                          "LIMIT 1", query[1])
        return _row_to_job(rows[0]) if rows else None

    def queued_with_reason(self, reason: str) -> int:
        """Queued jobs sent back with this reason (`waiting_for_vram`), not yet taken again."""
        return self._read("SELECT count(*) FROM jobs WHERE status = 'queued' AND reason = ?",
                          (reason,))[0][0]

    def _lock_rows(self) -> str:
        return f" FOR UPDATE{self._SKIP_LOCKED}" if self._SKIP_LOCKED else ""

    def _now_params(self) -> tuple:
        return (time.time(),) if self._NOW == "?" else ()

    def renew(self, job_id: int, token: str) -> bool:
        """Extend the lease (the heartbeat). False: the job is no longer this node's."""
        return self._exec(
            f"UPDATE jobs SET lease_expires_at = {self._NOW} + ? WHERE id = ? "
            "AND lease_token = ? AND status = 'running'",
            (*self._now_params(), self.lease.lease_seconds, job_id, token)).rowcount == 1

    def holds(self, job_id: int, token: str) -> bool:
        """Is the lease still this token's and unexpired? Asked just before outputs are
        renamed into place, so a node that lost the job leaves the other node's subtitle."""
        return self._exec(
            f"SELECT 1 FROM jobs WHERE id = ? AND lease_token = ? AND status = 'running' "
            f"AND lease_expires_at > {self._NOW}",
            (job_id, token, *self._now_params())).fetchone() is not None

    def set_stage(self, job_id, stage, stage_seconds=None, token=None) -> bool:
        sets, params = "current_stage = ?, checkpoint = 0", [stage]
        if stage_seconds is not None:
            sets += ", stage_seconds = ?"
            params.append(json.dumps(stage_seconds))
        where, params = self._fenced("id = ?", params + [job_id], token)
        return self._exec(f"UPDATE jobs SET {sets} WHERE {where}", params).rowcount == 1

    def set_checkpoint(self, job_id, checkpoint, token=None) -> bool:
        """Progress within the current stage, so that a death of the daemon can be placed."""
        where, params = self._fenced("id = ? AND status = 'running'", [checkpoint, job_id], token)
        return self._exec(f"UPDATE jobs SET checkpoint = ? WHERE {where}", params).rowcount == 1

    def update(self, job_id, token=None, **fields) -> bool:
        """Set result columns (audio_seconds, language, model, resource summary, …)."""
        if not fields:
            return True
        for col in _JSON_COLUMNS:
            if col in fields and fields[col] is not None:
                fields[col] = json.dumps(fields[col])
        cols = ", ".join(f"{k} = ?" for k in fields)
        where, params = self._fenced("id = ?", [*fields.values(), job_id], token)
        return self._exec(f"UPDATE jobs SET {cols} WHERE {where}", params).rowcount == 1

    def finish(self, job_id, status, *, reason=None, stage=None, message=None, token=None,
               **fields) -> bool:
        """The job's end, and in the same transaction its notifications (the outbox:
        `announce`), so a death of the daemon loses neither without the other."""
        assert status in FINAL, status
        with self._transaction():
            done = self.update(job_id, token, status=status, finished_at=time.time(),
                               current_stage=None, reason=reason, error_stage=stage,
                               error_message=message, lease_expires_at=None, **fields)
            if done:
                self._announce_finished(job_id)
            return done

    def requeue(self, job_id, *, not_before=0.0, reason=None, stage=None, message=None,
                refund_attempt=False, token=None) -> bool:
        """Back to the queue: a transient failure (with backoff), a shutdown, or a paused mount."""
        where, params = self._fenced("id = ?", [not_before, reason, stage, message, job_id], token)
        return self._exec(
            "UPDATE jobs SET status = 'queued', not_before = ?, current_stage = NULL, "
            "worker = NULL, lease_token = NULL, lease_expires_at = NULL, "
            "reason = ?, error_stage = ?, error_message = ?, "
            f"attempts = attempts - {1 if refund_attempt else 0} WHERE {where}",
            params).rowcount == 1

    # -- deaths: a restart of this node, or another node's lease running out ---------------
    def recover_after_crash(self, max_attempts: int) -> tuple[list[Job], list[Job]]:
        """Jobs left `running` by a death of this daemon: queue them again, or fail the ones
        that keep killing it.

        A death is counted against the file (a strike) only when the evidence points at it: the
        daemon died at the same point of the job (stage and checkpoint) as at its previous death,
        and that previous death was the last one — no progress in between and no death
        elsewhere (which would show something else is killing it: an OOM kill of a neighbour, a
        container restart). After `max_attempts` strikes in a row the job fails as
        `crashed_repeatedly` instead of crash-looping. The run that died is not a
        transient-failure attempt: `attempts` is refunded and the death counted in `crashes`.

        Each returned job has `crash_point`, `strikes` and `crashes` as now stored."""
        scope, params = self._recover_scope()
        with self._transaction():
            sql = f"SELECT * FROM jobs WHERE status = 'running'{scope} ORDER BY id"
            stuck = [_row_to_job(r) for r in self._exec(sql + self._lock_rows(),
                                                         params).fetchall()]
            return self._blame(stuck, max_attempts, takeover=False)

    def take_over_expired(self, max_attempts: int) -> tuple[list[Job], list[Job]]:
        """Running jobs whose lease ran out `takeover_delay_seconds` ago (their node was
        killed, lost power or the network): a death like any other, accounted the same way,
        and back in the queue for whichever node claims next. `takeovers` counts them."""
        sql = ("SELECT * FROM jobs WHERE status = 'running' AND lease_expires_at IS NOT NULL "
               f"AND lease_expires_at + ? < {self._NOW} ORDER BY id{self._lock_rows()}")
        with self._transaction():
            stuck = [_row_to_job(r) for r in self._exec(
                sql, (self.lease.takeover_delay_seconds, *self._now_params())).fetchall()]
            return self._blame(stuck, max_attempts, takeover=True)

    def _blame(self, stuck: list[Job], max_attempts: int, *, takeover: bool):
        requeued, failed = [], []
        if not stuck:
            return requeued, failed   # a clean stop, or a death while no job ran
        seq = int(self._meta_get("deaths") or 0) + 1
        self._meta_set("deaths", str(seq))
        for job in stuck:
            point = crash_point(job.current_stage, job.checkpoint)
            again = job.crash_point == point and job.crash_seq == seq - 1
            strikes = job.strikes + 1 if again else 1
            job = dataclasses.replace(job, crash_point=point, crash_seq=seq, strikes=strikes,
                                      crashes=job.crashes + 1,
                                      takeovers=job.takeovers + int(takeover),
                                      attempts=max(0, job.attempts - 1))
            self._exec("UPDATE jobs SET crash_point = ?, crash_seq = ?, strikes = ?, "
                       "crashes = ?, takeovers = ?, attempts = ? WHERE id = ?",
                       (point, seq, strikes, job.crashes, job.takeovers, job.attempts, job.id))
            if strikes >= max_attempts:
                stage = job.current_stage or FAILURE_REASONS["crashed_repeatedly"][0]
                self.finish(job.id, "failed", reason="crashed_repeatedly", stage=stage,
                            message=f"the daemon died {strikes} times in a row at the same "
                                    f"point of this job ({point}), with no progress between")
                failed.append(dataclasses.replace(job, error_stage=stage))
            else:
                self.requeue(job.id)
                requeued.append(job)
        return requeued, failed

    # -- the command line ------------------------------------------------------------------
    def retry_failed(self, job_ids=None, reason=None) -> list[int]:
        """Failed jobs back to the queue with fresh attempts, once their cause is fixed."""
        # Not an API job: its upload is gone with it, and its client asks again anyway.
        sql, params = "SELECT id FROM jobs WHERE status = 'failed' AND source <> 'api'", []
        if job_ids is not None:
            ids = list(job_ids)
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            params += ids
        if reason is not None:
            sql += " AND reason = ?"
            params.append(reason)
        ids = [r[0] for r in self._exec(sql, params).fetchall()]
        for job_id in ids:
            self._exec("UPDATE jobs SET status = 'queued', attempts = 0, strikes = 0, "
                       "crash_point = NULL, not_before = 0, finished_at = NULL, worker = NULL "
                       "WHERE id = ?", (job_id,))
        return ids

    def _under(self, prefix: str) -> tuple[str, tuple]:
        # A range on the path index: every path starting with "DIR/" ("0" follows "/").
        return "path >= ? AND path < ?", (prefix, prefix[:-1] + "0")

    def redo(self, paths=(), under=None, statuses=FINAL) -> tuple[list[Job], list[Job]]:
        """Queue files again whatever their outcome (a better model, a fixed file): the newest
        job of each of `paths`, or of every file below the folder `under`, whose status is in
        `statuses`. Returns (queued again, left alone because queued or running already).

        The job row itself goes back (fresh attempts, detected now), as `retry_failed` does:
        one row per file stays active, and its `outputs` tell the daemon that the subtitle
        beside the file is its own to replace, not a reason to skip."""
        statuses = [s for s in statuses if s in FINAL]
        newest = "id = (SELECT MAX(id) FROM jobs AS n WHERE n.path = jobs.path)"
        found: list[Job] = []
        with self.batch():
            for path in paths:
                found += [_row_to_job(r) for r in self._exec(
                    f"SELECT * FROM jobs WHERE path = ? AND {newest}", (path,)).fetchall()]
            if under is not None:
                clause, params = self._under(under.rstrip("/") + "/")
                found += [_row_to_job(r) for r in self._exec(
                    f"SELECT * FROM jobs WHERE {clause} AND {newest}", params).fetchall()]
            queued, active, seen, now = [], [], set(), time.time()
            for job in found:
                if job.id in seen:   # a file given twice, or by --path and --under
                    continue
                seen.add(job.id)
                if job.status in ACTIVE:
                    active.append(job)
                elif job.status in statuses:
                    self._exec("UPDATE jobs SET status = 'queued', attempts = 0, not_before = 0, "
                               "detected_at = ?, started_at = NULL, finished_at = NULL, "
                               "worker = NULL, current_stage = NULL, reason = NULL, "
                               "error_stage = NULL, error_message = NULL WHERE id = ?",
                               (now, job.id))
                    queued.append(job)
        return queued, active

    # -- reads -----------------------------------------------------------------------------
    def get(self, job_id: int) -> Job | None:
        row = self._exec("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def latest_stat(self, path: str):
        return self._exec("SELECT size, mtime_ns, status, reason FROM jobs WHERE path = ? "
                          "ORDER BY id DESC LIMIT 1", (path,)).fetchone()

    def latest_for_path(self, path: str) -> Job | None:
        row = self._exec("SELECT * FROM jobs WHERE path = ? ORDER BY id DESC LIMIT 1",
                         (path,)).fetchone()
        return _row_to_job(row) if row else None

    def next_wakeup(self) -> float | None:
        """When the earliest backed-off job becomes runnable (None: nothing queued)."""
        return self._exec("SELECT MIN(not_before) FROM jobs WHERE status = 'queued'").fetchone()[0]

    def oldest_queued_at(self) -> float | None:
        return self._exec("SELECT MIN(detected_at) FROM jobs WHERE status = 'queued'").fetchone()[0]

    def last_success_at(self) -> float | None:
        return self._exec(
            "SELECT MAX(finished_at) FROM jobs WHERE status = 'succeeded'").fetchone()[0]

    def history(self, limit: int | None = 50, status: str | None = None) -> list[Job]:
        sql, params = "SELECT * FROM jobs", []
        if status:
            sql += " WHERE status = ?"
            params.append(status)
        sql += " ORDER BY id DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return [_row_to_job(r) for r in self._exec(sql, params).fetchall()]

    def all_jobs(self, after_id: int = 0, limit: int = 1000) -> list[Job]:
        """Every job in id order, a page at a time (`scribewatch migrate`)."""
        return [_row_to_job(r) for r in self._exec(
            "SELECT * FROM jobs WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)).fetchall()]
