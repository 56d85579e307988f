"""Profile the watcher's scan (a diagnostic, not one of the six benchmarks): where a first start
and a rescan over a placeholder library spend their time, with the daemon's own code in this
process (`Daemon.watcher.scan`, its `take()` and job store; no model is loaded).

    python -m bench.diagnostics.profile_scan [--files 10000] [--top 12]

Prints one JSON object: wall and CPU seconds per file for both scans and the top functions by
own time (cProfile), so a hot spot can be named with numbers.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import time

from bench import common
from bench.library import make_library


def profiled(fn, top: int) -> dict:
    prof = cProfile.Profile()
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    prof.enable()
    seen = fn()
    prof.disable()
    cpu, wall = time.process_time() - t_cpu, time.perf_counter() - t_wall
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
        rows.append({"function": f"{file.rsplit('/', 2)[-1] if '/' in file else file}:{line}"
                                 f"({func})", "calls": calls, "own_seconds": round(tottime, 3),
                     "cumulative_seconds": round(cumtime, 3)})
    rows.sort(key=lambda r: -r["own_seconds"])
    return {"entries_seen": seen, "wall_seconds_profiled": round(wall, 2),
            "cpu_seconds_profiled": round(cpu, 2), "top_own_time": rows[:top]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args()
    from scribewatch.pipeline import config as config_mod
    from scribewatch.pipeline.daemon import Daemon

    logging.basicConfig(level=logging.INFO, filename=str(common.WORK / "profile_scan.log"))
    library = common.WORK / f"library-{args.files // 1000}k"
    make_library(library, files=args.files)
    folder = common.WORK / "profile_scan"
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "jobs.db"
    for f in folder.glob("jobs.db*"):
        f.unlink()
    cfg = config_mod.load(None, environ={}, flags={
        "watch_dirs": [str(library)], "db": str(db), "model": common.model_dir()})
    d = Daemon(cfg)
    d.watcher._available = {r: True for r in d.watcher.roots}
    root = d.watcher.roots[0]
    out = {"files": args.files}
    out["first_start"] = profiled(lambda: d.watcher.scan(root, root), args.top)
    out["rescan"] = profiled(lambda: d.watcher.scan(root, root), args.top)
    d.store.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
