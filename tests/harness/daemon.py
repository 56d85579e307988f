"""A real `python -m scribewatch run` process on a free loopback port, seen from outside:
its files, its HTTP endpoints, its job store (read-only), its memory and the CLI.

`Daemon` is what the tests start (fast retry and rescan timings, the model passed by the
`daemon_factory` fixture); `BenchDaemon` is the same process as the benchmarks start it (the
daemon's own defaults, a fresh work folder, startup timed finely, a lenient stop).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.harness import FAKE_CUDA_DIR, FAKE_NVML_DIR, REPO, free_port, model_dir, wait_for


class DaemonDied(AssertionError, RuntimeError):
    """The daemon exited, or would not stop: a failed assertion to a test, a RuntimeError to a
    benchmark."""


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak RSS) of a process in bytes, from /proc."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


class Daemon:
    """A real `scribewatch run` process in `tmp` (its inbox, job store, config and log)."""

    # Config under the overrides. Tests want failures retried and files rescanned quickly, and
    # the same words for the same audio: Whisper's fallback temperatures sample at random.
    DEFAULTS: dict = {
        "temperature": 0,
        "stability_seconds": 0.5,
        "rescan_interval_seconds": 5,
        "retry_backoff_seconds": 0.2,
        "shutdown_grace_seconds": 10,
        "cpu_threads": 2,
    }
    READY_TIMEOUT = 60
    READY_POLL = 0.2
    # A daemon that ignores SIGTERM for `timeout` is a failed test.
    STOP_TIMEOUT_FAILS = True
    LOG_TAIL: int | None = None       # how much of the log a DaemonDied shows (None: all)

    def __init__(self, tmp: Path, overrides: dict | None = None, *, watch: list | None = None,
                 env: dict | None = None, fake_nvml: bool = False, preexec=None,
                 fresh: bool = False, fake_cuda: bool = False):
        self.tmp = Path(tmp)
        if fresh and self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.watch = self.tmp / "inbox"
        self.watch.mkdir(parents=True, exist_ok=True)
        self.db = self.tmp / "jobs.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.tmp / "daemon.log"
        self.config = {
            "watch_dirs": [str(w) for w in (watch or [self.watch])],
            "db": str(self.db),
            "listen": f"127.0.0.1:{self.port}",
            **self.DEFAULTS,
        }
        self.config.update(overrides or {})
        self.config_path = self.tmp / "scribewatch.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.env = dict(os.environ)
        self.env["PYTHONUNBUFFERED"] = "1"
        # A fake CUDA comes with a fake NVML: the daemon plans its GPUs from what NVML says.
        path = [str(FAKE_NVML_DIR)] if fake_nvml or fake_cuda else []
        if fake_cuda:
            path.append(str(FAKE_CUDA_DIR))
            self.env["FAKE_CUDA"] = "1"
        self.env["PYTHONPATH"] = os.pathsep.join(
            [*path, str(REPO), self.env.get("PYTHONPATH", "")])
        self.env.update(env or {})
        self.preexec = preexec
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.log_offset = 0                   # where this start's lines begin in daemon.log
        self.started_at: float | None = None  # time.time() at Popen

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, wait_ready: bool = True, timeout: float | None = None) -> "Daemon":
        self._log = open(self.log_path, "ab")
        self.log_offset = self.log_path.stat().st_size
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scribewatch", "run", "--config", str(self.config_path)],
            cwd=self.tmp, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=self.preexec,
        )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died(self, what: str) -> DaemonDied:
        log = self.log()
        return DaemonDied(f"{what}:\n{log[-self.LOG_TAIL:] if self.LOG_TAIL else log}")

    def ready(self) -> bool:
        if not self.alive():
            raise self.died(f"daemon exited with {self.proc.returncode}")
        try:
            return self.get("/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float | None = None) -> float:
        """Wait for /readyz 200; returns the time.time() it was seen."""
        wait_for(self.ready, timeout or self.READY_TIMEOUT, self.READY_POLL, "daemon /readyz")
        return time.time()

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int | None:
        """Signal the daemon and wait; its exit code (None if it was never started)."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    if self.STOP_TIMEOUT_FAILS:
                        raise self.died(f"daemon did not stop within {timeout}s")
            return self.proc.returncode
        finally:
            if self._log is not None:
                self._log.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_since_start(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            return f.read().decode(errors="replace")

    def rss(self) -> dict[str, int]:
        return proc_status(self.pid)

    # -- HTTP ------------------------------------------------------------------------------
    def get(self, path: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, body
        return body.decode()

    def status(self) -> dict:
        return json.loads(self.get("/api/status")[1])

    def startup_scan(self) -> dict | None:
        """/api/status's `startup_scan` once the daemon's startup scan is done, else None."""
        try:
            scan = self.status()["startup_scan"]
        except OSError:
            return None
        return scan if scan["done"] else None

    # -- the job store, read-only: the ground truth ----------------------------------------
    def query(self, sql: str, params=()) -> list[dict]:
        if not self.db.exists():
            return []
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute(sql, params)]
        finally:
            con.close()

    def jobs(self) -> list[dict]:
        return self.query("SELECT * FROM jobs ORDER BY id")

    def finished_count(self) -> int:
        rows = self.query("SELECT COUNT(*) AS n FROM jobs WHERE status IN "
                          "('succeeded','failed','skipped')")
        return rows[0]["n"] if rows else 0

    def active_count(self) -> int:
        rows = self.query("SELECT COUNT(*) AS n FROM jobs WHERE status IN ('queued','running')")
        return rows[0]["n"] if rows else 0

    def wait_jobs(self, count: int, timeout: float = 180,
                  statuses=("succeeded", "failed", "skipped")) -> list[dict]:
        """The finished rows, once there are `count` of them."""
        def done():
            if self.proc is not None and self.proc.poll() is not None:
                raise self.died(f"daemon died ({self.proc.returncode})")
            finished = [j for j in self.jobs() if j["status"] in statuses]
            return finished if len(finished) >= count else None
        return wait_for(done, timeout, 0.25, f"{count} finished jobs")

    def wait_finished(self, count: int, timeout: float, interval: float = 0.1) -> None:
        """Like wait_jobs, but counted in SQL: cheap on a benchmark's 100,000-row store."""
        def done():
            if not self.alive():
                raise self.died(f"daemon died ({self.proc.returncode})")
            return self.finished_count() >= count
        wait_for(done, timeout, interval, f"{count} finished jobs")

    # -- the CLI ---------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "scribewatch", *args], cwd=self.tmp, env=self.env,
            capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"scribewatch {' '.join(args)} -> {result.returncode}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def history(self) -> list[dict]:
        return json.loads(self.cli("history", "--db", str(self.db), "--json").stdout)


class BenchDaemon(Daemon):
    """The daemon as the benchmarks measure it: its own defaults apart from the model and two
    threads, in a work folder emptied first (a benchmark must not inherit an old store)."""

    DEFAULTS = {"cpu_threads": 2, "log_level": "info"}
    READY_TIMEOUT = 120
    READY_POLL = 0.02                 # startup is a measured figure: poll finely
    # stop() sits in `finally:` blocks: raising there would hide the benchmark's own error.
    STOP_TIMEOUT_FAILS = False
    LOG_TAIL = 3000                   # the error goes to a terminal, not a test report

    def __init__(self, folder: Path, overrides: dict | None = None, watch: list | None = None,
                 fresh: bool = True):
        super().__init__(folder, {"model": model_dir(), **(overrides or {})}, watch=watch,
                         fresh=fresh)
