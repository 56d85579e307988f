"""Scan: daemon startup over a library of 100,000 tiny placeholder media files, 99 % of them with
a `<stem>.en.srt` beside them — time to ready and peak RSS.

"Ready" here = `/readyz` answers 200 AND the startup scan has finished (`/api/status` reports
`startup_scan.done`), both polled every 20 ms from the moment the process is started. Peak RSS
is the kernel's high-water mark (VmHWM) of the daemon
process, read at scan end and again once the queue is empty; VmRSS is also sampled.

Two starts over the same library:
* `restart` — the daemon ran before: every file with a subtitle is in its job store with an
  unchanged size/mtime (the store is written as a previous run leaves it, in one transaction);
  the 1 % without subtitles are new and become jobs (they fail as `not_media`: placeholders).
* `first_start` — empty job store: the 99 % are seen for the first time and each is recorded
  as skipped (`subtitle_exists`); the 1 % become jobs.
Both start with the kernel's caches dropped (as root; otherwise as found, and the result says
so): the library's folders, inodes and the job store come from disk, as after a reboot. A
library scanned minutes before is several times faster, and how much of it is still cached
depends on what else the machine did meanwhile (this one reclaims idle page cache), so only
the cold case is a figure that repeats. `first_start_warm` (no target) is the first start
again right after, with the caches as that left them.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

from bench import common
from bench.common import log
from bench.library import make_library, populate_store
from tests.harness.daemon import BenchDaemon

NAME = "scan"
TARGETS = {"time_to_ready_and_scanned_seconds_max": 30.0, "peak_rss_mb_max": 500.0}
LIBRARY = common.WORK / "library-100k"


def drop_caches() -> bool:
    """Write back and drop the page, dentry and inode caches (root only)."""
    if os.geteuid() != 0:
        return False
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def start_and_watch(d: BenchDaemon, timeout: float) -> dict:
    """Start the daemon; time /readyz 200 and the end of its startup scan from process start."""
    rss_samples: list[int] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            r = common.proc_status(d.pid).get("VmRSS")
            if r:
                rss_samples.append(r)
            stop.wait(0.1)

    d.start(wait_ready=False)
    t0 = d.started_at
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ready_at = scanned_at = None
    scan = None
    deadline = time.monotonic() + timeout
    try:
        while (ready_at is None or scanned_at is None) and time.monotonic() < deadline:
            if not d.alive():
                raise RuntimeError(f"daemon exited:\n{d.log()[-3000:]}")
            if ready_at is None:
                try:
                    if d.get("/readyz", timeout=2)[0] == 200:
                        ready_at = time.time()
                except OSError:
                    pass
            if scanned_at is None:
                scan = d.startup_scan()
                if scan is not None:
                    scanned_at = time.time()
            time.sleep(0.02)
        hwm_at_scan = common.proc_status(d.pid).get("VmHWM")
        queue_empty_at = None
        if scanned_at is not None:
            try:
                common.wait_for(lambda: d.active_count() == 0, timeout, 0.25, "empty queue")
                queue_empty_at = time.time()
            except TimeoutError:
                pass
        hwm_end = common.proc_status(d.pid).get("VmHWM")
        counts = {r["status"]: r["n"] for r in d.query(
            "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}
    finally:
        stop.set()
        d.stop()

    def since(t):
        return None if t is None else round(t - t0, 2)

    done = None if ready_at is None or scanned_at is None else max(ready_at, scanned_at)
    return {
        "ready_seconds": since(ready_at),
        "scan_finished_seconds": since(scanned_at),
        "time_to_ready_and_scanned_seconds": since(done),
        "scan_reported_by_daemon": scan,
        "queue_empty_seconds": since(queue_empty_at),
        "peak_rss_at_scan_end_mb": round(hwm_at_scan / 1e6, 1) if hwm_at_scan else None,
        "peak_rss_mb": round(hwm_end / 1e6, 1) if hwm_end else None,
        "rss_sampled_max_mb": round(max(rss_samples) / 1e6, 1) if rss_samples else None,
        "jobs_by_status": counts,
        "timed_out": done is None,
    }


def main() -> None:
    def extra(p):
        p.add_argument("--first-start-timeout", type=float, default=1200,
                       help="give up on the first-start scan after this many seconds")
    args = common.parse_args(__doc__.splitlines()[0], extra)
    quick = args.quick
    res = common.Result(NAME, quick)
    res.targets = TARGETS
    library = common.WORK / "library-10k" if quick else LIBRARY
    spec = make_library(library, files=10_000 if quick else 100_000)
    log(f"library: {spec}")
    overrides = {"watch_dirs": [str(library)]}
    scenarios = {}

    d = BenchDaemon(common.WORK / NAME / "restart", overrides, watch=[library])
    log(f"store: {populate_store(d.db, library, include_without_subtitles=False)}")
    cold = drop_caches()
    log(f"caches {'dropped' if cold else 'as found (not root)'}")
    scenarios["restart"] = r = start_and_watch(d, 600)
    log(f"restart: ready+scanned {r['time_to_ready_and_scanned_seconds']} s, "
        f"peak RSS {r['peak_rss_mb']} MB")

    common.wait_quiet(max_wait=60)
    d = BenchDaemon(common.WORK / NAME / "first_start", overrides, watch=[library])
    drop_caches()
    scenarios["first_start"] = f = start_and_watch(d, args.first_start_timeout)
    log(f"first start: ready+scanned {f['time_to_ready_and_scanned_seconds']} s, "
        f"peak RSS {f['peak_rss_mb']} MB")
    d = BenchDaemon(common.WORK / NAME / "first_start_warm", overrides, watch=[library])
    scenarios["first_start_warm"] = w = start_and_watch(d, args.first_start_timeout)
    log(f"first start, warm: ready+scanned {w['time_to_ready_and_scanned_seconds']} s")

    def fig(s, key):
        return scenarios[s][key]

    res.measured = {
        "time_to_ready_and_scanned_seconds": fig("restart", "time_to_ready_and_scanned_seconds"),
        "peak_rss_mb": fig("restart", "peak_rss_mb"),
        "first_start_time_to_ready_and_scanned_seconds":
            fig("first_start", "time_to_ready_and_scanned_seconds"),
        "first_start_peak_rss_mb": fig("first_start", "peak_rss_mb"),
        "first_start_warm_time_to_ready_and_scanned_seconds":
            fig("first_start_warm", "time_to_ready_and_scanned_seconds"),
        "caches": "dropped before restart and first_start" if cold else "as found (not root)",
        "files": spec["files"],
        "scenarios": scenarios,
    }
    res.config = {"library": str(library), "layout": f"{spec['files'] // 100} folders of 100 "
                  "placeholder .mp3 (a few bytes), 99 % with <stem>.en.srt, mtimes 1 h old",
                  "scan_finished_signal": "/api/status startup_scan.done",
                  "daemon_settings": "defaults"}

    def ok(s):
        t, rss = fig(s, "time_to_ready_and_scanned_seconds"), fig(s, "peak_rss_mb")
        return (t is not None and t < TARGETS["time_to_ready_and_scanned_seconds_max"]
                and rss is not None and rss < TARGETS["peak_rss_mb_max"])

    res.check("restart", ok("restart"))
    res.check("first_start", ok("first_start"))
    res.finish()


if __name__ == "__main__":
    main()
