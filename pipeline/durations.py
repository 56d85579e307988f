"""Summaries of job durations for `scribewatch history --stats`: count, mean, p50, p95, max;
and the whole `--stats` document from the store (`job_stats`)."""

from __future__ import annotations


def summary(sorted_values: list[float]) -> dict:
    if not sorted_values:
        return {"count": 0, "avg": None, "p50": None, "p95": None, "max": None}
    return {
        "count": len(sorted_values),
        "avg": sum(sorted_values) / len(sorted_values),
        "p50": quantile(sorted_values, 0.50),
        "p95": quantile(sorted_values, 0.95),
        "max": sorted_values[-1],
    }


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def job_stats(counts: dict, execute) -> dict:
    """Counts by status, processing time avg/p50/p95, audio hours, mean real-time factor.
    `execute(sql)`: the store's query function."""
    rows = execute(
        "SELECT finished_at - started_at AS processing, finished_at - detected_at AS total, "
        "audio_seconds FROM jobs WHERE status = 'succeeded' AND started_at IS NOT NULL"
    ).fetchall()
    processing = sorted(r["processing"] for r in rows if r["processing"] is not None)
    total = sorted(r["total"] for r in rows if r["total"] is not None)
    audio = sum(r["audio_seconds"] or 0.0 for r in rows)
    factors = [r["processing"] / r["audio_seconds"] for r in rows
               if r["audio_seconds"] and r["processing"] is not None]
    reasons = {r["reason"]: r["n"] for r in execute(
        "SELECT reason, COUNT(*) AS n FROM jobs WHERE status = 'failed' GROUP BY reason")}
    skip_reasons = {r["reason"]: r["n"] for r in execute(
        "SELECT reason, COUNT(*) AS n FROM jobs WHERE status = 'skipped' GROUP BY reason")}
    return {
        "counts": counts,
        "total_jobs": sum(counts.values()),
        "failure_reasons": reasons,
        "skip_reasons": skip_reasons,
        "processing_seconds": summary(processing),
        "job_seconds": summary(total),
        "audio_hours": audio / 3600.0,
        "mean_realtime_factor": (sum(factors) / len(factors)) if factors else None,
    }
