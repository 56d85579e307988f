"""Profile one `/metrics` answer (a diagnostic, not one of the six benchmarks): the daemon's and
the exporter's own objects in this process, no HTTP, no model loaded. Times rendering the
registry (OpenMetrics text, then gzip as for Prometheus) with the daemon's 1 s snapshot cache
warm and cold (a cold cache is what a scrape every >= 1 s gets), for an empty job store and
for one holding 100,000 finished jobs, and lists the top functions by own time.

    python -m bench.diagnostics.profile_scrape [--top 12]
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import io
import json
import pstats
import statistics
import time

from bench import common
from bench.library import make_library, populate_store


def render(exposition) -> bytes:
    """What the server does for a Prometheus scrape: the exposition's OpenMetrics, then gzip."""
    return gzip.compress(exposition.openmetrics(), compresslevel=6)


def measure(daemon, registry, n: int, cold: bool) -> dict:
    times = []
    for _ in range(n):
        if cold:
            daemon.status.invalidate()
        t = time.perf_counter()
        body = render(registry)
        times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(statistics.median(times), 3), "max_ms": round(max(times), 3),
            "bytes_gzip": len(body)}


def profile(daemon, registry, n: int, top: int) -> list[dict]:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        daemon.status.invalidate()
        render(registry)
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = [{"function": f"{file.rsplit('/', 2)[-1] if '/' in file else file}:{line}({func})",
             "calls": calls, "own_ms_per_scrape": round(1000 * tt / n, 3),
             "cumulative_ms_per_scrape": round(1000 * ct / n, 3)}
            for (file, line, func), (_cc, calls, tt, ct, _c) in stats.stats.items()]
    rows.sort(key=lambda r: -r["own_ms_per_scrape"])
    return rows[:top]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--top", type=int, default=12)
    p.add_argument("-n", type=int, default=200)
    args = p.parse_args()
    from scribewatch.exporter import Exporter
    from scribewatch.pipeline import config as config_mod
    from scribewatch.pipeline.daemon.service import Daemon

    out = {}
    library = common.WORK / "library-100k"
    make_library(library)
    for label, populate in (("empty_store", False), ("store_100k_jobs", True)):
        folder = common.WORK / "profile_scrape" / label
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "jobs.db"
        for f in folder.glob("jobs.db*"):
            f.unlink()
        if populate:
            populate_store(db, library, include_without_subtitles=True)
        cfg = config_mod.load(None, environ={}, flags={
            "watch_dirs": [str(library)], "db": str(db), "model": common.model_dir(),
            "listen": f"127.0.0.1:{common.free_port()}"})
        d = Daemon(cfg)
        exp = Exporter(d)
        d.reporter = exp.reporter
        render(exp.registry)
        out[label] = {"warm_cache": measure(d, exp.registry, args.n, cold=False),
                      "cold_cache": measure(d, exp.registry, args.n, cold=True),
                      "top_own_time_cold": profile(d, exp.registry, args.n, args.top)}
        d.store.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
