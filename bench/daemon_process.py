"""A real `python -m scribewatch run` subprocess for the benchmarks: its config, its HTTP
endpoints, its job store and its memory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from bench.common import PYTHON, REPO, free_port, model_dir, proc_status, wait_for


class Daemon:
    """A real `python -m scribewatch run` subprocess on a free loopback port, in `folder`."""

    def __init__(self, folder: Path, overrides: dict | None = None, watch: list | None = None,
                 fresh: bool = True):
        self.folder = Path(folder)
        if fresh and self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.watch = self.folder / "inbox"
        self.watch.mkdir(exist_ok=True)
        self.db = self.folder / "jobs.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.folder / "daemon.log"
        self.config = {
            "watch_dirs": [str(w) for w in (watch or [self.watch])],
            "db": str(self.db),
            "listen": f"127.0.0.1:{self.port}",
            "model": model_dir(),
            "cpu_threads": 2,
            "log_level": "info",
        }
        self.config.update(overrides or {})
        self.config_path = self.folder / "scribewatch.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None

    def start(self, wait_ready: bool = True, timeout: float = 120) -> "Daemon":
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        self._log = open(self.log_path, "ab")
        self.log_offset = self.log_path.stat().st_size
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "scribewatch", "run", "--config", str(self.config_path)],
            cwd=self.folder, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            return self.get("/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 120) -> float:
        wait_for(self.ready, timeout, 0.02, "daemon /readyz")
        return time.time()

    def stop(self, timeout: float = 60) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_since_start(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            return f.read().decode(errors="replace")

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def status(self) -> dict:
        return json.loads(self.get("/api/status")[1])

    def startup_scan(self) -> dict | None:
        """/api/status's `startup_scan` once the daemon's startup scan is done, else None."""
        try:
            scan = self.status()["startup_scan"]
        except OSError:
            return None
        return scan if scan["done"] else None

    # -- the job store, read-only: the ground truth --------------------------------------------
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

    def wait_finished(self, count: int, timeout: float, interval: float = 0.1) -> None:
        def done():
            if not self.alive():
                raise RuntimeError(f"daemon died ({self.proc.returncode}):\n{self.log()[-3000:]}")
            return self.finished_count() >= count
        wait_for(done, timeout, interval, f"{count} finished jobs")

    def rss(self) -> dict[str, int]:
        return proc_status(self.pid)
