"""The job store on one machine: SQLite in WAL mode. It is also the queue, so a crash loses
nothing. The SQL it shares with the PostgreSQL store is in `sql.py`.

One connection guarded by a lock: the daemon writes a handful of rows per job, so contention
is no concern, and one connection keeps claim-next atomic without retry loops.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable

from ..job import Job
from .interface import ACTIVE, FINAL, LeaseSettings
from .sql import SqlStore, crash_point
from .sqlite_schema import COUNTS as _COUNTS
from .sqlite_schema import MIGRATIONS as _MIGRATIONS
from .sqlite_schema import SCHEMA as _SCHEMA
from .sqlite_schema import SCHEMA_VERSION, SUSPECT_STRIKES

__all__ = ["ACTIVE", "FINAL", "SCHEMA_VERSION", "SUSPECT_STRIKES", "SqliteStore",
           "crash_point"]


class _Result:
    """A statement's rows and row count, read in full (what SqlStore uses of a cursor)."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list[sqlite3.Row], rowcount: int):
        self.rows, self.rowcount = rows, rowcount

    def fetchone(self) -> sqlite3.Row | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[sqlite3.Row]:
        return self.rows

    def __iter__(self):
        return iter(self.rows)


class SqliteStore(SqlStore):
    def __init__(self, path: str | os.PathLike, lease: LeaseSettings | None = None):
        self.lease = lease or LeaseSettings()
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
        for target in sorted(v for v in _MIGRATIONS if version < v <= SCHEMA_VERSION):
            for statement in _MIGRATIONS[target]:
                self._con.execute(statement)
            self._con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                              (str(target),))

    def close(self) -> None:
        with self._lock:
            self._con.close()
        with self._read_lock:
            self._reader.close()

    # -- the engine ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self):
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
                self._con.execute("COMMIT")
            except BaseException:
                # A failed COMMIT too: left open, the transaction would swallow every later
                # write as a "nested" one and never commit it.
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise

    def _exec(self, sql: str, params: Iterable = ()) -> _Result:
        # Stepped to the end under the lock: a cursor read later, outside it, would leave its
        # statement in progress on the shared connection, and another thread's COMMIT then
        # fails ("SQL statements in progress"): an intake thread's INSERT … RETURNING, read
        # after the lock, once killed a worker that way.
        with self._lock:
            cursor = self._con.execute(sql, tuple(params))
            try:
                return _Result(cursor.fetchall(), cursor.rowcount)
            finally:
                cursor.close()

    def _read(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        """A read for status figures, on the reader connection (committed data only)."""
        with self._read_lock:
            return self._reader.execute(sql, tuple(params)).fetchall()

    def check_writable(self) -> bool:
        try:
            self._meta_set("heartbeat", str(time.time()))
            return True
        except sqlite3.Error:
            return False

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ACTIVE + FINAL}
        for status, n in self._read("SELECT status, n FROM job_counts"):
            out[status] = n
        return out

    # The status figures (scrapes, /readyz) on the reader connection.
    def last_success_at(self) -> float | None:
        return self._read(
            "SELECT MAX(finished_at) FROM jobs WHERE status = 'succeeded'")[0][0]

    def oldest_queued_at(self) -> float | None:
        return self._read("SELECT MIN(detected_at) FROM jobs WHERE status = 'queued'")[0][0]

    def import_job(self, job: Job) -> bool:
        raise NotImplementedError("migrate into a PostgreSQL store")
