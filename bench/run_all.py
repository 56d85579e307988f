"""Run every benchmark, one after another (never two at once: they would time each other).

    python -m bench.run_all [--quick] [--only throughput,latency]

Each benchmark runs as its own process (`python -m bench.<name>`), prints its one JSON object,
and writes `bench/results/<name>.json` (`bench/work/results/` with --quick). This prints one
JSON object too: the name, `met` and the exit status of each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench import common

# Cheap and quiet first; the long ones (throughput, scan's first start) last.
BENCHMARKS = ("overhead", "latency", "scrape", "soak", "scan", "language", "timing",
              "throughput", "api_latency", "api_cache")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", help="comma-separated subset of " + ", ".join(BENCHMARKS))
    args = p.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    summary = {}
    failed = False
    for name in names:
        common.log(f"== {name}{' --quick' if args.quick else ''}")
        t = time.time()
        cmd = [sys.executable, "-m", f"bench.{name}"] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, cwd=common.REPO, stdout=subprocess.PIPE, text=True)
        entry = {"exit_status": proc.returncode, "seconds": round(time.time() - t, 1)}
        try:
            doc = json.loads(proc.stdout.strip().splitlines()[-1])
            entry.update(met=doc["met"], checks=doc["checks"])
        except (IndexError, ValueError, KeyError):
            entry["met"] = None
        failed |= proc.returncode != 0
        summary[name] = entry
        common.log(f"== {name}: {entry}")
    print(json.dumps({"quick": args.quick, "benchmarks": summary}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
