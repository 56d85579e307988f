"""`scribewatch status`: fetch /api/status from a running daemon and print it for people."""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request

from ..pipeline.contract import parse_listen
from .server import client_url


class StatusError(Exception):
    """The daemon could not be asked (not running, wrong credentials, TLS trouble)."""


def url_for_listen(listen: str, tls: bool = False) -> str:
    """The daemon's base URL from its `listen` setting (wildcard addresses → loopback)."""
    return client_url(*parse_listen(listen), tls)


def fetch_status(url: str, user: str | None = None, password: str | None = None,
                 cafile: str | None = None, insecure: bool = False,
                 timeout: float = 10.0) -> dict:
    """GET <url>/api/status (url may already end in /api/status). Raises StatusError."""
    url = url.rstrip("/")
    if not url.endswith("/api/status"):
        url += "/api/status"
    headers = {"Accept": "application/json"}
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context(cafile=cafile)
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=timeout, context=context) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        hint = " (wrong or missing user/password)" if e.code == 401 else ""
        raise StatusError(f"{url}: HTTP {e.code} {e.reason}{hint}") from None
    except urllib.error.URLError as e:
        raise StatusError(f"cannot reach {url}: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise StatusError(f"{url}: {e}") from None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def _where(path: str, watch_dir: str | None) -> str:
    """The file as its library knows it (relative to the watch folder), and where that is."""
    if watch_dir and path.startswith(watch_dir.rstrip("/") + "/"):
        return f"{path[len(watch_dir.rstrip('/')) + 1:]}  (in {watch_dir})"
    return path


def format_status(status: dict, now: float | None = None) -> str:
    """The /api/status document as a few readable lines."""
    now = time.time() if now is None else now
    ready = "ready" if status.get("ready") else "NOT READY"
    lines = [f"scribewatch {status.get('version', '?')} — {ready}, "
             f"up {_duration(status.get('uptime_seconds', 0))}"]
    lines += [f"  ! {reason}" for reason in status.get("not_ready_reasons", [])]
    store = status.get("store") or {}
    if store.get("kind") == "postgresql":   # several machines: which node this is
        lines.append(f"node      {status.get('node')} on a shared store "
                     f"({'up' if store.get('up') else 'UNREACHABLE'}), "
                     f"{status.get('leases_held', 0)} lease(s) held")
    loaded = "loaded" if status.get("model_loaded") else "not loaded"
    lines.append(f"model     {status.get('model')} on {status.get('device')} "
                 f"({status.get('compute_type')}), {loaded}")
    unavailable = status.get("watch_dirs_unavailable", 0)
    watcher = "up" if status.get("watcher_up") else "DOWN"
    if unavailable:
        watcher += f" ({unavailable} watch folder(s) unavailable)"
    scan = status.get("startup_scan") or {}
    if scan.get("done"):
        watcher += f", startup scan done in {scan['seconds']:.1f}s ({scan['files']} media files)"
    elif scan:
        watcher += ", startup scan running"
    lines.append(f"watcher   {watcher}")
    for gpu in (status.get("devices") or {}).get("gpus", []):
        batch = f"batch {gpu['batch_size']}" if gpu["batch_size"] else "no batching"
        state = (f"waiting for memory: {gpu['wait_reason']}" if gpu["state"] != "active"
                 else f"{gpu['active_workers']} of {len(gpu['workers'])} worker(s), {batch}")
        lines.append(f"GPU {gpu['index']:<5} {gpu['name']}: {state}")
    lines.append(f"queue     {status.get('queue_jobs', 0)} job(s) waiting"
                 + (f", {status['waiting_for_vram']} for GPU memory"
                    if status.get("waiting_for_vram") else ""))
    running = status.get("running", [])
    if not running:
        lines.append(f"running   nothing ({status.get('workers', '?')} worker(s) idle)")
    for i, job in enumerate(running):
        audio = job.get("audio_seconds")
        of_audio = f" of {_duration(audio)} audio" if audio else ""
        on_gpu = f" (GPU {job['gpu']})" if job.get("gpu") is not None else ""
        lines.append(f"{'running' if i == 0 else '':9} job {job['id']} on worker "
                     f"{job['worker']}{on_gpu}: {job['progress'] * 100:.0f}%{of_audio}, "
                     f"{_duration(job['elapsed_seconds'])} so far")
        if job.get("path"):
            lines.append(f"{'':9} {_where(job['path'], job.get('watch_dir'))}")
    counts = status.get("counts", {})
    lines.append("finished  " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items()))
    last = status.get("last_success_at")
    when = (f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last))} "
            f"({_duration(now - last)} ago)") if last else "never"
    lines.append(f"last success {when}")
    return "\n".join(lines)
