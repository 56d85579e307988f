"""Shared code for the benchmarks: machine facts, result files, statistics, quality measures,
process figures. The speech corpus is in `bench.media`, the 100,000-file library in
`bench.library`; the daemon under test (`BenchDaemon`) and the media writers are the tests'
own, in `tests/harness/`.

Every benchmark prints ONE JSON object and writes it to `bench/results/<name>.json` (a full run)
or `bench/work/results/<name>.json` (a `--quick` smoke run, never committed). Each object has
`machine`, `measured`, `targets`, `checks` (one boolean per target) and `met` (all checks true).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

# One harness for the tests and the benchmarks: paths, waiting, ports, the model and /proc
# figures are the tests' own (re-exported for the bench scripts).
from tests.harness import REPO, free_port, model_dir, wait_for  # noqa: F401
from tests.harness.daemon import proc_status  # noqa: F401

BENCH = REPO / "bench"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
QUICK_RESULTS = WORK / "results"
PYTHON = sys.executable


# -- command line and results --------------------------------------------------------------------
def parse_args(description: str, extra=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="short smoke run; result goes to bench/work/results/, not bench/results/")
    if extra is not None:
        extra(p)
    # SIGTERM unwinds like Ctrl-C, so `finally:` blocks stop the daemons we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return p.parse_args()


def machine_info() -> dict:
    import psutil

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(dist: str) -> str:
        import importlib.metadata

        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "none"

    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "gpu": None,
        "python": platform.python_version(),
        "faster_whisper": version("faster-whisper"),
        "ctranslate2": version("ctranslate2"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def code_version() -> dict:
    """The commit measured, and whether the product's folders had uncommitted changes then
    (other engineers work in this checkout: a figure belongs to the code it was taken on)."""
    def git(*args):
        try:
            # Only the line ends trimmed: porcelain's first column is a space (" M path").
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes_in": sorted({line[3:].split("/")[0] for line in
                                              git("status", "--porcelain", "--", "pipeline",
                                                  "exporter", "web",
                                                  "scribewatch").splitlines()})}


class Result:
    """Collects one benchmark's figures; `finish()` computes `met`, writes and prints the JSON."""

    def __init__(self, name: str, quick: bool):
        self.name = name
        self.quick = quick
        self.started = time.time()
        self.machine = machine_info()
        self.code = code_version()
        self.measured: dict = {}
        self.targets: dict = {}
        self.checks: dict[str, bool] = {}
        self.notes: list[str] = []
        self.config: dict = {}

    def check(self, name: str, ok: bool) -> bool:
        self.checks[name] = bool(ok)
        return bool(ok)

    def finish(self) -> dict:
        doc = {
            "name": self.name,
            "quick": self.quick,
            "machine": self.machine,
            "code": self.code,
            "measured": self.measured,
            "targets": self.targets,
            "checks": self.checks,
            "met": bool(self.checks) and all(self.checks.values()),
            "config": self.config,
            "notes": self.notes,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_seconds": round(time.time() - self.started, 1),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        }
        folder = QUICK_RESULTS if self.quick else RESULTS
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(doc, indent=2, sort_keys=False, default=_json_default)
        (folder / f"{self.name}.json").write_text(text + "\n")
        print(json.dumps(doc, default=_json_default))
        sys.stdout.flush()
        return doc


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def log(msg: str) -> None:
    """Progress on stderr: stdout carries only the one JSON object."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- statistics ----------------------------------------------------------------------------------
def quantile(values, q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    v = sorted(values)
    if not v:
        return None
    pos = (len(v) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summary(values, scale: float = 1.0, digits: int = 3) -> dict:
    v = [x * scale for x in values]
    if not v:
        return {"n": 0}
    return {"n": len(v), "min": round(min(v), digits), "p50": round(quantile(v, 0.5), digits),
            "p95": round(quantile(v, 0.95), digits), "p99": round(quantile(v, 0.99), digits),
            "max": round(max(v), digits), "mean": round(statistics.fmean(v), digits)}


# -- text ---------------------------------------------------------------------------------------
def ref_words(text: str) -> int:
    try:
        from scribewatch.pipeline.guards import normalize_text

        return len(normalize_text(text).split())
    except ImportError:
        return len(text.split())


def srt_check(path: Path) -> tuple[str, list[str], int]:
    """(text of an SRT, readability problems, cue count) — 2 lines x 42 chars, <= 7 s."""
    from tests.harness.quality import check_readability, parse_srt

    cues = parse_srt(path.read_text(encoding="utf-8"))
    return " ".join(c.text for c in cues), check_readability(cues, 42, 2, 7.0), len(cues)


# -- processes -----------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


class CpuWindow:
    """CPU seconds used by one process over a window, and by everything else on the machine
    (the other engineers' tests): the noise figure that goes beside every timing."""

    def __init__(self, pid: int):
        import psutil

        self._psutil = psutil
        self.pid = pid

    def _busy(self) -> float:
        t = self._psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def __enter__(self) -> "CpuWindow":
        self._t0, self._busy0, self._own0 = time.monotonic(), self._busy(), cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.monotonic() - self._t0
        self.own = cpu_seconds(self.pid) - self._own0
        self.machine = self._busy() - self._busy0
        self.foreign = max(0.0, self.machine - self.own)

    def figures(self) -> dict:
        cores = os.cpu_count() or 1
        return {"own_cpu_seconds": round(self.own, 2),
                "foreign_cpu_seconds": round(self.foreign, 2),
                "foreign_cpu_share": round(self.foreign / (self.wall * cores), 3)}


def machine_busy_share(seconds: float = 1.0) -> float:
    """Share of the whole machine's CPU in use over `seconds` (0..1)."""
    import psutil

    def busy():
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0), sum(t)

    b0, a0 = busy()
    time.sleep(seconds)
    b1, a1 = busy()
    return (b1 - b0) / (a1 - a0) if a1 > a0 else 0.0


def wait_quiet(threshold: float = 0.15, quiet_seconds: int = 3, max_wait: float = 180) -> dict:
    """Other engineers run tests on this machine: before a timed run, wait (up to `max_wait`)
    for `quiet_seconds` in a row with less than `threshold` of the machine busy. Returns what
    was seen, so the result can say whether the run started quiet."""
    t0 = time.monotonic()
    streak, last = 0, 1.0
    while time.monotonic() - t0 < max_wait:
        last = machine_busy_share(1.0)
        streak = streak + 1 if last < threshold else 0
        if streak >= quiet_seconds:
            return {"waited_seconds": round(time.monotonic() - t0, 1), "quiet": True}
    return {"waited_seconds": round(time.monotonic() - t0, 1), "quiet": False,
            "busy_share": round(last, 2)}
