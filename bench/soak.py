"""Soak: 500 short jobs through one daemon; its RSS after job 50 against after job 500.

Files (copies of jfk.flac, 11 s) are dropped 50 at a time; when a batch is done and the daemon is
idle again, its resident set (VmRSS) is read. The job store's per-job `rss_max_bytes` gives the
curve in between; a least-squares slope over jobs 50..500 says whether memory keeps climbing.
"""

from __future__ import annotations

import time

from bench import common
from bench.common import log
from tests.harness import SHARED_MEDIA
from tests.harness import media as gen
from tests.harness.daemon import BenchDaemon

NAME = "soak"
TARGETS = {"rss_growth_job50_to_job500_percent_max": 10.0}


def slope_per_100_jobs(points: list[tuple[int, int]]) -> float | None:
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return 100 * sum((x - mx) * (y - my) for x, y in points) / var if var else None


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    res = common.Result(NAME, args.quick)
    total, batch, early = (60, 10, 10) if args.quick else (500, 50, 50)
    res.targets = dict(TARGETS, jobs=total, early_job=early)
    src = SHARED_MEDIA / "jfk.flac"
    d = BenchDaemon(common.WORK / NAME / "daemon")
    d.start()
    checkpoints = {}
    started = time.monotonic()
    try:
        checkpoints[0] = d.rss()["VmRSS"]
        for first in range(0, total, batch):
            for i in range(first, first + batch):
                gen.copy_closed(src, d.watch / f"soak-{i:04d}.flac")
            d.wait_finished(first + batch, timeout=600, interval=0.25)
            time.sleep(1.0)   # idle again: the job's buffers are released
            checkpoints[first + batch] = d.rss()["VmRSS"]
            log(f"{first + batch} jobs: RSS {checkpoints[first + batch] / 2**20:.1f} MiB")
        peak = d.rss()["VmHWM"]
        jobs = d.jobs()
    finally:
        d.stop()
    statuses = {}
    for j in jobs:
        statuses[j["status"]] = statuses.get(j["status"], 0) + 1
    per_job = [(n, j["rss_max_bytes"]) for n, j in enumerate(jobs, 1) if j["rss_max_bytes"]]
    rss_early, rss_end = checkpoints[early], checkpoints[total]
    growth = 100 * (rss_end - rss_early) / rss_early
    res.measured = {
        "jobs": len(jobs),
        "statuses": statuses,
        "rss_after_job_early_bytes": rss_early,
        "rss_after_last_job_bytes": rss_end,
        "rss_after_job_early_mib": round(rss_early / 2**20, 1),
        "rss_after_last_job_mib": round(rss_end / 2**20, 1),
        "rss_growth_percent": round(growth, 2),
        "rss_before_first_job_mib": round(checkpoints[0] / 2**20, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "rss_checkpoints_mib": {k: round(v / 2**20, 1) for k, v in checkpoints.items()},
        "per_job_rss_max_slope_mib_per_100_jobs": round(
            (slope_per_100_jobs([p for p in per_job if p[0] >= early]) or 0) / 2**20, 3),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    res.config = {"file": "jfk.flac copies (11 s)", "batch": batch,
                  "daemon_settings": "defaults (workers 1, cpu_threads 2)"}
    res.check("rss_growth", growth < TARGETS["rss_growth_job50_to_job500_percent_max"])
    res.check("all_succeeded", statuses.get("succeeded", 0) == total)
    res.finish()


if __name__ == "__main__":
    main()
