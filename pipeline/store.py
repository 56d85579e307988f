"""The persistent job store: SQLite in WAL mode. It is also the queue, so a crash loses nothing.

One connection guarded by a lock: the daemon writes a handful of rows per job, so contention
is no concern, and one connection keeps claim-next atomic without retry loops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable

from .contract import FAILURE_REASONS
from .job import Job
from .store_schema import COUNTS as _COUNTS
from .store_schema import MIGRATIONS as _MIGRATIONS
from .store_schema import SCHEMA as _SCHEMA
from .store_schema import SCHEMA_VERSION, SUSPECT_STRIKES
from .store_views import StoreViews

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "skipped")
_JSON_COLUMNS = ("stage_seconds", "outputs", "suspect", "stage_spans")
_row_to_job = Job.from_row


class JobStore(StoreViews):
    """The queue and its writes; the reports people read (history stats, the status page's
    lists) are in `StoreViews`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()   # re-entered by `batch`
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                    timeout=30)
        self._con.row_factory = sqlite3.Row
        self._con.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable against a process crash (kill -9). A power cut may undo
        # the last few commits: a job then runs again and a lost enqueue is found again by the
        # startup scan — nothing is lost, and no fsync per row slows short jobs down.
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._con.executescript(_SCHEMA)
            self._con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', '1')")
            self._con.execute("BEGIN IMMEDIATE")   # two processes opening an old store at once
            try:
                if not self._con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                         "AND name = 'job_counts'").fetchone():
                    for statement in _COUNTS:
                        self._con.execute(statement)
                self._migrate()
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        # Status and /metrics read through their own connection: in WAL mode a reader neither
        # waits for nor blocks the writer, so a scrape never queues behind a worker's commit
        # or the WAL checkpoint (an fsync) that a commit may run while holding `_lock`.
        self._reader = sqlite3.connect(self.path, check_same_thread=False,
                                       isolation_level=None, timeout=30)
        self._reader.row_factory = sqlite3.Row
        self._reader.execute("PRAGMA query_only=1")
        self._read_lock = threading.Lock()

    def _migrate(self) -> None:
        """Bring the store to SCHEMA_VERSION, inside the caller's transaction. A store from a
        newer version is left as it is: its extra columns do not disturb this one."""
        version = int(self._con.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                self._con.execute(statement)
            self._con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                              (str(target),))

    def schema_version(self) -> int:
        return int(self._exec("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._con.close()
        with self._read_lock:
            self._reader.close()

    # -- writes ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self):
        """The writes this thread makes inside, as one transaction: one WAL commit, not one per
        row. Other threads wait for the store meanwhile, so keep a batch short (the startup
        scan uses one per 100 files). A crash inside loses only the batch's intake records, and
        the next scan finds those files again."""
        with self._lock:
            if self._con.in_transaction:     # nested: the outer batch commits
                yield
                return
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def _exec(self, sql: str, params: Iterable = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._con.execute(sql, tuple(params))

    def _read(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        """A read for status figures, on the reader connection (committed data only)."""
        with self._read_lock:
            return self._reader.execute(sql, tuple(params)).fetchall()

    def enqueue(self, path: str, root: str, size: int, mtime_ns: int, fingerprint: str,
                detected_at: float | None = None) -> int:
        cur = self._exec(
            "INSERT INTO jobs (path, root, size, mtime_ns, fingerprint, status, detected_at) "
            "VALUES (?, ?, ?, ?, ?, 'queued', ?)",
            (path, root, size, mtime_ns, fingerprint, detected_at or time.time()))
        return cur.lastrowid

    def record_skipped(self, path: str, root: str, size: int, mtime_ns: int, fingerprint: str,
                       reason: str, message: str) -> int:
        now = time.time()
        cur = self._exec(
            "INSERT INTO jobs (path, root, size, mtime_ns, fingerprint, status, detected_at, "
            "finished_at, reason, error_message) VALUES (?, ?, ?, ?, ?, 'skipped', ?, ?, ?, ?)",
            (path, root, size, mtime_ns, fingerprint, now, now, reason, message))
        return cur.lastrowid

    def update_stat(self, job_id: int, size: int, mtime_ns: int) -> None:
        """Same content, new mtime (a `touch`): remember it so the cheap check matches next time."""
        self._exec("UPDATE jobs SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, job_id))

    @staticmethod
    def _runnable(available_roots, now: float, suspects: bool) -> tuple[str, list] | None:
        """The WHERE … ORDER BY … LIMIT 1 of the next job to run, or None (no root there)."""
        roots = list(available_roots) if available_roots is not None else None
        where = "status = 'queued' AND not_before <= ?" + ("" if suspects else " AND strikes = 0")
        params: list = [now]
        if roots is not None:
            if not roots:
                return None
            where += f" AND root IN ({','.join('?' * len(roots))})"
            params += roots
        return f"{where} ORDER BY strikes >= {SUSPECT_STRIKES}, id LIMIT 1", params

    def peek_next(self, available_roots: Iterable[str] | None = None, *,
                  suspects: bool = True) -> Job | None:
        """The job claim_next would take now, left queued (the daemon's prefetch reads it)."""
        query = self._runnable(available_roots, time.time(), suspects)
        row = query and self._exec(f"SELECT * FROM jobs WHERE {query[0]}", query[1]).fetchone()
        return _row_to_job(row) if row else None

    def claim_next(self, worker: str, available_roots: Iterable[str] | None = None,
                   now: float | None = None, *, suspects: bool = True) -> Job | None:
        """Atomically take the oldest runnable queued job: status → running, attempts + 1.

        `suspects=False` leaves jobs the daemon died during (strikes) in the queue."""
        now = time.time() if now is None else now
        query = self._runnable(available_roots, now, suspects)
        if query is None:
            return None
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                row = self._con.execute(f"SELECT id FROM jobs WHERE {query[0]}",
                                        query[1]).fetchone()
                if row is None:
                    self._con.execute("COMMIT")
                    return None
                self._con.execute(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, "
                    "worker = ?, current_stage = NULL, checkpoint = 0, error_stage = NULL, "
                    "reason = NULL, error_message = NULL, stage_spans = '{}' WHERE id = ?",
                    (now, worker, row["id"]))
                job = self._con.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        return _row_to_job(job)

    def set_stage(self, job_id: int, stage: str, stage_seconds: dict | None = None) -> None:
        if stage_seconds is None:
            self._exec("UPDATE jobs SET current_stage = ?, checkpoint = 0 WHERE id = ?",
                       (stage, job_id))
        else:
            self._exec("UPDATE jobs SET current_stage = ?, checkpoint = 0, stage_seconds = ? "
                       "WHERE id = ?", (stage, json.dumps(stage_seconds), job_id))

    def set_checkpoint(self, job_id: int, checkpoint: float) -> None:
        """Progress within the current stage, so that a death of the daemon can be placed."""
        self._exec("UPDATE jobs SET checkpoint = ? WHERE id = ? AND status = 'running'",
                   (checkpoint, job_id))

    def update(self, job_id: int, **fields) -> None:
        """Set result columns (audio_seconds, language, model, resource summary, …)."""
        if not fields:
            return
        for col in _JSON_COLUMNS:
            if col in fields and fields[col] is not None:
                fields[col] = json.dumps(fields[col])
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._exec(f"UPDATE jobs SET {cols} WHERE id = ?", (*fields.values(), job_id))

    def finish(self, job_id: int, status: str, *, reason: str | None = None,
               stage: str | None = None, message: str | None = None, **fields) -> None:
        assert status in FINAL, status
        self.update(job_id, status=status, finished_at=time.time(), current_stage=None,
                    reason=reason, error_stage=stage, error_message=message, **fields)

    def requeue(self, job_id: int, *, not_before: float = 0.0, reason: str | None = None,
                stage: str | None = None, message: str | None = None,
                refund_attempt: bool = False) -> None:
        """Back to the queue: a transient failure (with backoff), a shutdown, or a paused mount."""
        self._exec(
            "UPDATE jobs SET status = 'queued', not_before = ?, current_stage = NULL, "
            "worker = NULL, "
            "reason = ?, error_stage = ?, error_message = ?, "
            f"attempts = attempts - {1 if refund_attempt else 0} WHERE id = ?",
            (not_before, reason, stage, message, job_id))

    def recover_after_crash(self, max_attempts: int) -> tuple[list[Job], list[Job]]:
        """Jobs left `running` by a death of the daemon: queue them again, or fail the ones that
        keep killing it.

        A death is counted against the file (a strike) only when the evidence points at it: the
        daemon died at the same point of the job (stage and checkpoint) as at its previous death,
        and that previous death was the daemon's last one — no progress in between and no death
        elsewhere (which would show something else is killing it: an OOM kill of a neighbour, a
        container restart; a death while no job ran leaves no trace, so it cannot say so).
        After `max_attempts` strikes in a row the job fails as `crashed_repeatedly` instead of
        crash-looping. The run that died is not a transient-failure attempt: `attempts` is
        refunded and the death counted in `crashes`.

        Each returned job has `crash_point`, `strikes` and `crashes` as now stored.
        """
        requeued, failed = [], []
        with self.batch():
            stuck = [_row_to_job(r) for r in
                     self._con.execute("SELECT * FROM jobs WHERE status = 'running'").fetchall()]
            if not stuck:
                return requeued, failed   # a clean stop, or a death while no job ran
            deaths = self._con.execute("SELECT value FROM meta WHERE key = 'deaths'").fetchone()
            seq = int(deaths[0]) + 1 if deaths else 1
            self._con.execute("INSERT OR REPLACE INTO meta VALUES ('deaths', ?)", (str(seq),))
            for job in stuck:
                point = crash_point(job.current_stage, job.checkpoint)
                again = job.crash_point == point and job.crash_seq == seq - 1
                strikes = job.strikes + 1 if again else 1
                job = dataclasses.replace(job, crash_point=point, crash_seq=seq, strikes=strikes,
                                          crashes=job.crashes + 1,
                                          attempts=max(0, job.attempts - 1))
                self._con.execute(
                    "UPDATE jobs SET crash_point = ?, crash_seq = ?, strikes = ?, crashes = ?, "
                    "attempts = ? WHERE id = ?",
                    (point, seq, strikes, job.crashes, job.attempts, job.id))
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

    def retry_failed(self, job_ids: Iterable[int] | None = None,
                     reason: str | None = None) -> list[int]:
        """Failed jobs back to the queue with fresh attempts, once their cause is fixed."""
        sql, params = "SELECT id FROM jobs WHERE status = 'failed'", []
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

    def redo(self, paths: Iterable[str] = (), under: str | None = None,
             statuses: Iterable[str] = FINAL) -> tuple[list[Job], list[Job]]:
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
                    f"SELECT * FROM jobs WHERE path = ? AND {newest}", (path,))]
            if under is not None:
                prefix = under.rstrip("/") + "/"
                # A range on the path index: every path starting with "DIR/" ("0" follows "/").
                found += [_row_to_job(r) for r in self._exec(
                    f"SELECT * FROM jobs WHERE path >= ? AND path < ? AND {newest}",
                    (prefix, prefix[:-1] + "0"))]
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

    def check_writable(self) -> bool:
        try:
            self._exec("INSERT OR REPLACE INTO meta VALUES ('heartbeat', ?)", (str(time.time()),))
            return True
        except sqlite3.Error:
            return False

    # -- reads -----------------------------------------------------------------------------
    def get(self, job_id: int) -> Job | None:
        row = self._exec("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def latest_stat(self, path: str) -> tuple | None:
        """(size, mtime_ns, status, reason) of the newest job for `path`: the cheap rescan check."""
        return self._exec("SELECT size, mtime_ns, status, reason FROM jobs WHERE path = ? "
                          "ORDER BY id DESC LIMIT 1", (path,)).fetchone()

    def latest_for_path(self, path: str) -> Job | None:
        row = self._exec("SELECT * FROM jobs WHERE path = ? ORDER BY id DESC LIMIT 1",
                         (path,)).fetchone()
        return _row_to_job(row) if row else None

    def next_wakeup(self) -> float | None:
        """When the earliest backed-off job becomes runnable (None: nothing queued)."""
        row = self._exec("SELECT MIN(not_before) FROM jobs WHERE status = 'queued'").fetchone()
        return row[0]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ACTIVE + FINAL}
        for status, n in self._read("SELECT status, n FROM job_counts"):
            out[status] = n
        return out

    def queued_with_reason(self, reason: str) -> int:
        """Queued jobs sent back with this reason (`waiting_for_vram`), not yet taken again."""
        return self._read("SELECT count(*) FROM jobs WHERE status = 'queued' AND reason = ?",
                          (reason,))[0][0]

    def last_success_at(self) -> float | None:
        return self._read(
            "SELECT MAX(finished_at) FROM jobs WHERE status = 'succeeded'")[0][0]

    def history(self, limit: int | None = 50, status: str | None = None) -> list[Job]:
        sql = "SELECT * FROM jobs"
        params: list = []
        if status:
            sql += " WHERE status = ?"
            params.append(status)
        sql += " ORDER BY id DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return [_row_to_job(r) for r in self._exec(sql, params).fetchall()]


def crash_point(stage: str | None, checkpoint: float) -> str:
    """Where in a job the daemon died: 'start' (claimed, no stage yet), 'decode',
    'transcribe@120' (120 s of audio transcribed), …"""
    point = stage or "start"
    return f"{point}@{checkpoint:g}" if checkpoint else point
