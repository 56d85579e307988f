"""A StatusSource the test controls, the web server (with its exporter) built on it, and the HTTP
helpers the exporter and web tests share."""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request

from scribewatch.exporter import Exporter
from scribewatch.pipeline.contract import DevicePlanView, RunningJob, StatusSnapshot
from scribewatch.web import WebServer


def snapshot(**changes) -> StatusSnapshot:
    """A busy daemon's snapshot (one job running, four queued); `changes` override fields."""
    now = time.time()   # at call time: the suite may reach a test minutes after import
    base = dict(
        version="0.1.0", started_at=now - 7200, model_name="tiny.en", device="cpu",
        compute_type="int8", model_loaded=True, model_ready=True, model_error=None,
        watcher_up=True, watch_dirs_unavailable=0, store_writable=True, queue_jobs=4,
        running=(RunningJob(job_id=12, worker="0", started_at=now - 90, progress=0.375,
                            audio_seconds=1800.0, path="/media/Films/Heat (1995)/Heat.mkv",
                            watch_dir="/media"),),
        workers=1, counts={"succeeded": 10, "failed": 2}, last_success_at=now - 300, dirs={},
        plan=DevicePlanView("cpu", ("device: cpu: CPU, 1 worker(s), no batching",),
                            cpu_workers=("0",), cpu_running=True))
    return StatusSnapshot(**{**base, **changes})


class Source:
    """A StatusSource whose snapshot the test sets (or that fails); counts the calls."""

    def __init__(self, snap: StatusSnapshot | None = None, error: Exception | None = None):
        self.snap, self.error, self.calls = snap or snapshot(), error, 0
        self.details: list[bool] = []       # what each call asked for

    def snapshot(self, details: bool = False) -> StatusSnapshot:
        self.calls += 1
        self.details.append(details)
        if self.error:
            raise self.error
        return self.snap


def web_server(source=None, listen: str = "127.0.0.1:0", **kw) -> WebServer:
    """A web server on `source` (a fresh Source by default) serving its own exporter, not
    started: `start_web_server` starts both, as `scribewatch run` does."""
    source = source or Source()
    return WebServer(Exporter(source), source, listen=listen, **kw)


def start_web_server(server: WebServer) -> WebServer:
    server.start()
    server.exporter.start()
    return server


def stop_web_server(server: WebServer) -> None:
    server.stop()
    server.exporter.stop()


def request(url: str, method: str = "GET", headers: dict | None = None, context=None):
    """(status, headers, body) — HTTP errors are answers too."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
