"""Summaries of job durations for `scribewatch history --stats`: count, mean, p50, p95, max."""

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
