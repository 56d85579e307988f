"""The notification outbox: media-server refreshes and webhooks waiting in the job store.

A finished job's notifications are rows written in the same transaction that records the
job's end (`SqlStore.finish` calls `announce(job)`, which says what the configured targets
want), so a kill -9 at any moment loses none: before that commit the job is still running and
is run or recovered again after the restart; after it, the rows wait here for a sender.

A sender (`pipeline/notify/sender.py`, on any node) claims the due rows of one target, as jobs
are claimed: a token and an expiry on the store's clock, `FOR UPDATE SKIP LOCKED` on
PostgreSQL, so two nodes never send one row at the same time. Each claim counts an attempt, a
crash during a request included, so duplicates are bounded by `notify_max_attempts`. A row
ends `sent` or `failed` (given up: its last error is kept), and finished rows are deleted after
a while (`purge`). Writes about a claimed row carry its token: a sender whose claim ran out
and was taken by another changes nothing.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Callable, Iterable, Sequence

from ..job import Job

# What a finished job asks of the targets: (target key, item, seconds before it is due).
Announcement = tuple[str, str, float]
Announcer = Callable[[Job], Sequence[Announcement]]


@dataclasses.dataclass(frozen=True)
class OutboxRow:
    id: int
    job_id: int
    target: str              # the target's key: jellyfin, emby, plex, webhook:<hash of its URL>
    item: str                # a video's path, a folder, or a webhook body
    status: str              # pending | sent | failed
    attempts: int            # claims so far (a crash during a request counts)
    due_at: float
    created_at: float
    finished_at: float | None
    last_error: str | None


@dataclasses.dataclass(frozen=True)
class OutboxClaim:
    target: str
    token: str
    rows: tuple[OutboxRow, ...]


_COLUMNS = ("id, job_id, target, item, status, attempts, due_at, created_at, finished_at, "
            "last_error")


def _row(r) -> OutboxRow:
    return OutboxRow(*(r[i] for i in range(10)))


class OutboxStore:
    """Mixed into `SqlStore`: uses its `_exec`, `_transaction`, `_NOW`, `_now_params` and
    `_lock_rows`."""

    announce: Announcer | None = None   # set by the daemon: what a finished job notifies

    def _announce_finished(self, job_id: int) -> int:
        """Inside `finish`'s transaction: the finished job's outbox rows. Returns how many."""
        if self.announce is None:
            return 0
        job = self.get(job_id)
        rows = list(self.announce(job)) if job is not None else []
        now = self._now_params()
        for target, item, delay in rows:
            self._exec("INSERT INTO notifications (job_id, target, item, status, attempts, "
                       f"due_at, created_at) VALUES (?, ?, ?, 'pending', 0, {self._NOW} + ?, "
                       f"{self._NOW})", (job_id, target, item, *now, delay, *now))
        return len(rows)

    def _free(self) -> str:
        """Pending rows no live claim holds (parameters: `_now_params()` once)."""
        return (f"status = 'pending' AND (claim_expires_at IS NULL OR "
                f"claim_expires_at <= {self._NOW})")

    def outbox_claim(self, targets: Iterable[str], node: str, *, ahead: float = 0.0,
                     limit: int = 100, lease_seconds: float = 60.0) -> OutboxClaim | None:
        """The due rows of one target (the one whose row is due first), claimed for
        `lease_seconds`; rows of that target due within `ahead` seconds come too (the batch
        window: one request for a season). Each claimed row's `attempts` + 1. None: none due."""
        keys = list(targets)
        if not keys:
            return None
        now = self._now_params()
        marks = ",".join("?" * len(keys))
        with self._transaction():
            first = self._exec(
                f"SELECT target FROM notifications WHERE target IN ({marks}) AND {self._free()} "
                f"AND due_at <= {self._NOW} ORDER BY due_at, id LIMIT 1{self._lock_rows()}",
                (*keys, *now, *now)).fetchone()
            if first is None:
                return None
            target, token = first[0], uuid.uuid4().hex
            ids = [r[0] for r in self._exec(
                f"SELECT id FROM notifications WHERE target = ? AND {self._free()} "
                f"AND due_at <= {self._NOW} + ? ORDER BY id LIMIT ?{self._lock_rows()}",
                (target, *now, *now, ahead, limit)).fetchall()]
            if not ids:
                return None
            rows = self._exec(
                f"UPDATE notifications SET claim_node = ?, claim_token = ?, "
                f"claim_expires_at = {self._NOW} + ?, attempts = attempts + 1 "
                f"WHERE id IN ({','.join('?' * len(ids))}) RETURNING {_COLUMNS}",
                (node, token, *now, lease_seconds, *ids)).fetchall()
        return OutboxClaim(target, token, tuple(sorted((_row(r) for r in rows),
                                                       key=lambda r: r.id)))

    def _settle(self, token: str, ids: Sequence[int], sets: str, params: Sequence) -> int:
        if not ids:
            return 0
        return self._exec(
            f"UPDATE notifications SET {sets}, claim_node = NULL, claim_token = NULL, "
            f"claim_expires_at = NULL WHERE claim_token = ? AND status = 'pending' "
            f"AND id IN ({','.join('?' * len(ids))})", (*params, token, *ids)).rowcount

    def outbox_sent(self, token: str, ids: Sequence[int]) -> int:
        """Delivered. Returns the rows changed (0: the claim is no longer this token's)."""
        return self._settle(token, ids, f"status = 'sent', finished_at = {self._NOW}, "
                            "last_error = NULL", self._now_params())

    def outbox_retry(self, token: str, ids: Sequence[int], delay: float, error: str) -> int:
        """Not delivered, worth another attempt after `delay` seconds."""
        return self._settle(token, ids, f"due_at = {self._NOW} + ?, last_error = ?",
                            (*self._now_params(), delay, error))

    def outbox_failed(self, token: str, ids: Sequence[int], error: str) -> int:
        """Given up: kept with its last error (visible) until `purge` deletes it."""
        return self._settle(token, ids, f"status = 'failed', finished_at = {self._NOW}, "
                            "last_error = ?", (*self._now_params(), error))

    def outbox_extend(self, token: str, lease_seconds: float) -> int:
        """More time for the rows still claimed (a claim sent as several requests)."""
        return self._exec(
            f"UPDATE notifications SET claim_expires_at = {self._NOW} + ? "
            "WHERE claim_token = ? AND status = 'pending'",
            (*self._now_params(), lease_seconds, token)).rowcount

    def outbox_release(self, node: str) -> int:
        """At start: this node's claims, left by its death, are free again at once (a node
        name is one live daemon's: SQLite's instance lock, PostgreSQL's advisory lock). Their
        attempts stay counted."""
        return self._exec("UPDATE notifications SET claim_node = NULL, claim_token = NULL, "
                          "claim_expires_at = NULL WHERE status = 'pending' AND claim_node = ?",
                          (node,)).rowcount

    def outbox_pending(self) -> int:
        """Rows waiting to be delivered (the store's, so every node of a cluster alike)."""
        return self._read("SELECT count(*) FROM notifications WHERE status = 'pending'")[0][0]

    def outbox_wait(self, targets: Iterable[str]) -> float | None:
        """Seconds until a row of these targets may be claimed (0: now; None: none waits)."""
        keys = list(targets)
        if not keys:
            return None
        row = self._exec(
            "SELECT MIN(CASE WHEN claim_expires_at > due_at THEN claim_expires_at "
            f"ELSE due_at END) - {self._NOW} FROM notifications WHERE status = 'pending' "
            f"AND target IN ({','.join('?' * len(keys))})",
            (*self._now_params(), *keys)).fetchone()
        return None if row[0] is None else max(0.0, row[0])

    def outbox_purge(self, sent_seconds: float, failed_seconds: float) -> int:
        """Delete rows delivered more than `sent_seconds` ago and given up more than
        `failed_seconds` ago: the outbox holds what waits and a bounded recent past."""
        now = self._now_params()
        return self._exec(
            "DELETE FROM notifications WHERE (status = 'sent' AND finished_at < "
            f"{self._NOW} - ?) OR (status = 'failed' AND finished_at < {self._NOW} - ?)",
            (*now, sent_seconds, *now, failed_seconds)).rowcount

    def notifications(self, status: str | None = None, limit: int = 100) -> list[OutboxRow]:
        """The newest rows first (what `scribewatch notifications` and the tests read)."""
        sql, params = f"SELECT {_COLUMNS} FROM notifications", []
        if status:
            sql += " WHERE status = ?"
            params.append(status)
        sql += " ORDER BY id DESC LIMIT ?"
        return [_row(r) for r in self._exec(sql, (*params, limit)).fetchall()]
