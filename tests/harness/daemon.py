"""A real `python -m scribewatch run` process on a free loopback port, seen from outside:
its files, `/metrics`, its job store (read-only) and the CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.harness import FAKE_NVML_DIR, REPO, free_port, wait_for


class Daemon:
    """A real `scribewatch run` process."""

    def __init__(self, tmp: Path, overrides: dict | None = None, env: dict | None = None,
                 fake_nvml: bool = False, preexec=None):
        self.tmp = tmp
        self.watch = tmp / "inbox"
        self.watch.mkdir(parents=True, exist_ok=True)
        self.db = tmp / "jobs.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "daemon.log"
        self.config = {
            "watch_dirs": [str(self.watch)],
            "db": str(self.db),
            "listen": f"127.0.0.1:{self.port}",
            "stability_seconds": 0.5,
            "rescan_interval_seconds": 5,
            "retry_backoff_seconds": 0.2,
            "shutdown_grace_seconds": 10,
            "cpu_threads": 2,
        }
        self.config.update(overrides or {})
        self.config_path = tmp / "scribewatch.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.env = dict(os.environ)
        self.env["PYTHONUNBUFFERED"] = "1"
        if fake_nvml:
            self.env["PYTHONPATH"] = os.pathsep.join(
                [str(FAKE_NVML_DIR), str(REPO), self.env.get("PYTHONPATH", "")])
        else:
            self.env["PYTHONPATH"] = os.pathsep.join([str(REPO), self.env.get("PYTHONPATH", "")])
        self.env.update(env or {})
        self.preexec = preexec
        self.proc: subprocess.Popen | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, wait_ready: bool = True, timeout: float = 60) -> "Daemon":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scribewatch", "run", "--config", str(self.config_path)],
            cwd=self.tmp, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=self.preexec,
        )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return self.get("/readyz")[0] == 200
            except OSError:
                return False
        wait_for(ready, timeout, 0.2, "daemon /readyz")

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.log()}")
        finally:
            self._log.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- outside views ---------------------------------------------------------------------
    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, body
        return body.decode()

    def jobs(self) -> list[dict]:
        """Rows of the job store, read directly (read-only) — the ground truth."""
        if not self.db.exists():
            return []
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute("SELECT * FROM jobs ORDER BY id")]
        finally:
            con.close()

    def wait_jobs(self, count: int, timeout: float = 180, statuses=("succeeded", "failed", "skipped")):
        def done():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon died ({self.proc.returncode}):\n{self.log()}")
            finished = [j for j in self.jobs() if j["status"] in statuses]
            return finished if len(finished) >= count else None
        return wait_for(done, timeout, 0.25, f"{count} finished jobs")

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
