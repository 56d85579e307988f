"""What people read from the job store: `history --stats`, and the status page's lists (the
next queued files, the recent failures, today's figures). A mixin of both stores
(`sql.SqlStore`): the queue and its writes stay there.
"""

from __future__ import annotations

import time

from ..contract import DayFigures, FailedJob, QueuedJob
from .durations import summary
from .sqlite_schema import CLAIM_ORDER


class StoreViews:
    """Read-only reports, through the store's `_read` (SQLite: its reader connection, committed
    data, never waiting for a worker's commit)."""

    def next_queued(self, limit: int = 10, now: float | None = None) -> list[QueuedJob]:
        """The queued jobs in the order the workers will claim them: runnable ones first (a
        backed-off retry waits), suspects behind the rest, imports before the folder backlog,
        then oldest first. Sorts the whole queue, so it is for the status page, not for every
        scrape."""
        now = time.time() if now is None else now
        rows = self._read(
            "SELECT id, path, root, detected_at, not_before FROM jobs WHERE status = 'queued' "
            f"ORDER BY not_before > ?, {CLAIM_ORDER} LIMIT ?", (now, limit))
        return [QueuedJob(r["id"], r["path"], r["root"], r["detected_at"],
                          r["not_before"] if r["not_before"] > now else None) for r in rows]

    def recent_failures(self, limit: int = 10) -> list[FailedJob]:
        """Jobs failed now (not since retried), the latest first (the finished-time index)."""
        rows = self._read(
            "SELECT id, path, root, reason, error_stage, error_message, finished_at FROM jobs "
            "WHERE status = 'failed' ORDER BY finished_at DESC, id DESC LIMIT ?", (limit,))
        return [FailedJob(r["id"], r["path"], r["root"], r["reason"], r["error_stage"],
                          r["error_message"], r["finished_at"]) for r in rows]

    def finished_since(self, since: float) -> DayFigures:
        """Jobs finished at or after `since` by outcome, and the audio and processing seconds
        of the succeeded ones that had audio (the real-time factor's two sides)."""
        counts = {"succeeded": 0, "failed": 0, "skipped": 0}
        audio = processing = 0.0
        for r in self._read(
                "SELECT status, COUNT(*) AS n, "
                "SUM(CASE WHEN audio_seconds > 0 AND started_at IS NOT NULL "
                "THEN audio_seconds END) AS audio, "
                "SUM(CASE WHEN audio_seconds > 0 AND started_at IS NOT NULL "
                "THEN finished_at - started_at END) AS processing "
                "FROM jobs WHERE status IN ('succeeded', 'failed', 'skipped') "
                "AND finished_at >= ? GROUP BY status", (since,)):
            counts[r["status"]] = r["n"]
            if r["status"] == "succeeded":
                audio, processing = r["audio"] or 0.0, max(0.0, r["processing"] or 0.0)
        return DayFigures(since, counts, audio, processing)

    def stats(self) -> dict:
        """Counts by status, processing time avg/p50/p95, audio hours, mean real-time factor."""
        counts = self.counts()
        rows = self._exec(
            "SELECT finished_at - started_at AS processing, finished_at - detected_at AS total, "
            "audio_seconds FROM jobs WHERE status = 'succeeded' AND started_at IS NOT NULL"
        ).fetchall()
        processing = sorted(r[0] for r in rows if r[0] is not None)
        total = sorted(r[1] for r in rows if r[1] is not None)
        audio = sum(r[2] or 0.0 for r in rows)
        factors = [r[0] / r[2] for r in rows if r[2] and r[0] is not None]
        by_reason = "SELECT reason, COUNT(*) FROM jobs WHERE status = ? GROUP BY reason"
        return {
            "counts": counts,
            "total_jobs": sum(counts.values()),
            "failure_reasons": {r[0]: r[1] for r in self._exec(by_reason, ("failed",))},
            "skip_reasons": {r[0]: r[1] for r in self._exec(by_reason, ("skipped",))},
            "processing_seconds": summary(processing),
            "job_seconds": summary(total),
            "audio_hours": audio / 3600.0,
            "mean_realtime_factor": (sum(factors) / len(factors)) if factors else None,
        }
