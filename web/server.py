"""The daemon's web server: the status page (/), /metrics (the exporter's registry), /healthz,
/readyz, /api/status, the page's retry (POST /api/jobs/{id}/retry), the transcription API
(`api.py`: /status, /asr, /detect-language, /v1/audio/*) and Sonarr's and Radarr's webhooks
(`hooks.py`: /hooks/sonarr, /hooks/radarr); optional TLS, basic auth and bearer tokens.

An asyncio HTTP/1.1 server on its own thread (keep-alive, pipelining, HEAD): a slow scrape or a
stalled TLS handshake never blocks a probe. /healthz and /readyz are never behind auth, so
orchestrator probes work without credentials.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable, Mapping

from prometheus_client.exposition import choose_encoder, gzip_accepted

from ..exporter import Exporter
from ..exporter.exposition import CachedOpenMetricsEncoder, Exposition

# The listen address and the TLS pair are parsed by the functions config uses at start.
from ..pipeline.contract import (
    OUTCOMES,
    ApiQueue,
    ArrHooks,
    DevicePlanView,
    JobControl,
    StatusSnapshot,
    StatusSource,
    parse_listen,
    tls_pair,
)
from . import status_page
from .api import ROUTES as API_ROUTES
from .api import TranscriptionApi
from .auth import REALM, Credentials
from .hooks import ROUTES as HOOK_ROUTES
from .hooks import ArrWebhookRoutes
from .protocol import REQUEST_TIMEOUT, Connection, Request, Response

log = logging.getLogger(__name__)


def client_url(host: str, port: int, tls: bool) -> str:
    """How a client on this machine reaches a server bound to host:port (wildcards → loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def status_document(snap: StatusSnapshot, now: float) -> dict:
    """The /api/status JSON: what someone without Prometheus wants to know."""
    return {
        "version": snap.version,
        "uptime_seconds": round(max(0.0, now - snap.started_at), 1),
        "ready": snap.ready,
        "not_ready_reasons": snap.not_ready_reasons(),
        "model": snap.model_name,
        "device": snap.device,
        "compute_type": snap.compute_type,
        "model_loaded": snap.model_loaded,
        "model_error": snap.model_error,
        "watcher_up": snap.watcher_up,
        "watch_dirs_unavailable": snap.watch_dirs_unavailable,
        "workers": snap.workers,
        "node": snap.node,
        "store": {"kind": snap.store_kind, "up": snap.store_up, "error": snap.store_error},
        "leases_held": snap.leases_held,
        "queue_jobs": snap.queue_jobs,
        "running": [
            {"id": j.job_id, "worker": j.worker, "gpu": j.gpu, "stage": j.stage,
             "progress": round(j.progress, 4),
             "elapsed_seconds": round(max(0.0, now - j.started_at), 1),
             "audio_seconds": j.audio_seconds, "path": j.path, "watch_dir": j.watch_dir}
            for j in snap.running
        ],
        # The next jobs a worker takes, in that order (at most 10; `queue_jobs` counts them all).
        "queue_next": [
            {"id": q.job_id, "path": q.path, "watch_dir": q.watch_dir,
             "detected_at": q.detected_at, "retry_at": q.retry_at}
            for q in snap.queue_next
        ],
        # Jobs failed now, newest first: what the status page offers to retry.
        "recent_failures": [
            {"id": f.job_id, "path": f.path, "watch_dir": f.watch_dir, "reason": f.reason,
             "stage": f.stage, "message": f.message, "finished_at": f.finished_at}
            for f in snap.recent_failures
        ],
        "today": None if snap.today is None else {
            "since": snap.today.since,
            "counts": {**{o: 0 for o in OUTCOMES}, **snap.today.counts},
            "audio_seconds": round(snap.today.audio_seconds, 1),
            "processing_seconds": round(snap.today.processing_seconds, 1),
            "realtime_factor": (None if snap.today.realtime_factor is None
                                else round(snap.today.realtime_factor, 4)),
        },
        "devices": _plan_document(snap.plan),
        "waiting_for_vram": snap.waiting_for_vram,
        "counts": {**{o: 0 for o in OUTCOMES}, **snap.counts},
        "last_success_at": snap.last_success_at,
        "api": {"waiting": snap.api_waiting, "running": snap.api_running},   # HTTP API requests
        # Files already in the folders when the daemon started are found by this scan: until
        # it is done, the queue may still grow without anything new arriving.
        "startup_scan": {"done": snap.startup_scan_seconds is not None,
                         "seconds": (None if snap.startup_scan_seconds is None
                                     else round(snap.startup_scan_seconds, 2)),
                         "files": snap.startup_scan_files},
    }


def _plan_document(plan: DevicePlanView | None) -> dict | None:
    """What the daemon runs where, and why (the GPU plan's reasons, then what changed)."""
    if plan is None:
        return None
    return {
        "mode": plan.mode,
        "reasons": list(plan.reasons),
        "gpus": [{"index": g.index, "uuid": g.uuid, "name": g.name, "workers": list(g.workers),
                  "active_workers": g.active_workers, "batch_size": g.batch_size,
                  "state": g.state, "wait_reason": g.wait_reason} for g in plan.gpus],
        "cpu": ({"workers": list(plan.cpu_workers), "batch_size": plan.cpu_batch_size,
                 "running": plan.cpu_running} if plan.cpu_workers else None),
    }


def _tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"tls_cert_file {cert_file!r} / tls_key_file {key_file!r}: "
                         f"cannot load the certificate and key: {e}") from None
    return ctx


OTHER_METHODS = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}


class WebServer:
    """Serves `exporter`'s metrics and `status_source` on `listen`. Configuration errors (a plain
    password, unreadable TLS files, a bad listen address) raise ValueError here, at
    construction; binding happens in start() (OSError if the port is taken).

    `job_control` (the daemon) lets the status page retry failed jobs; `grafana_url` adds links
    to the dashboards there; `api_queue` (the daemon's) turns the transcription API on. What the
    server does is counted by the exporter's reporter (retries, API requests).

    Requests are answered on the event loop (web.protocol); work that can take long
    (rendering the registry, the status snapshot, a bcrypt check) runs on a small pool, and
    scrapes that arrive while a render is under way share its result."""

    ROUTES = {   # path -> (method name, needs auth)
        "/": ("_page", True),
        "/metrics": ("_metrics", True),
        "/api/status": ("_status", True),
        "/healthz": ("_healthz", False),
        "/readyz": ("_readyz", False),
    }

    def __init__(self, exporter: Exporter, status_source: StatusSource, *, listen: str,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 basic_auth_users: Mapping[str, str] | None = None,
                 job_control: JobControl | None = None, grafana_url: str | None = None,
                 api_queue: ApiQueue | None = None, api_tokens=(), metrics_auth: bool = True,
                 api_max_upload_bytes: int = 2 * 1024**3, arr_hooks: ArrHooks | None = None):
        self.exporter = exporter
        self.exposition: Exposition = exporter.registry
        self.status_source = status_source
        self.job_control = job_control     # None: no retry endpoint (a server on its own)
        self.count_retry: Callable[[str], None] = exporter.reporter.retry_requested
        self.links = status_page.links(grafana_url)
        self.page = status_page.Page()
        self._host, self._port = parse_listen(listen)
        pair = tls_pair(tls_cert_file, tls_key_file)
        self._tls = _tls_context(*pair) if pair else None
        credentials = Credentials(basic_auth_users, api_tokens)
        self.auth = credentials if credentials.configured else None
        self.metrics_auth = metrics_auth      # false: /metrics open, the rest still protected
        # The transcription API, when the daemon takes its requests (`api_queue`).
        self.api = None if api_queue is None else TranscriptionApi(
            api_queue, max_upload_bytes=api_max_upload_bytes,
            record=exporter.reporter.api_request)
        # Sonarr's and Radarr's webhooks, when the daemon takes them (`arr_hooks`).
        self.hooks = None if arr_hooks is None else ArrWebhookRoutes(
            arr_hooks, record=exporter.reporter.arr_webhook)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._connections: set[Connection] = set()
        self._renders: dict[tuple, asyncio.Future] = {}

    # -- answers (on the loop) ------------------------------------------------------------
    def answer(self, request: Request) -> Response | Awaitable[Response]:
        """The answer now, or a coroutine that will produce it."""
        retry = status_page.RETRY_PATH.fullmatch(request.path) if self.job_control else None
        if retry and request.method == "POST":
            refused = status_page.cross_site(request.headers)
            if refused:   # before auth: the browser may well send valid credentials
                log.warning("refused POST %s: %s", request.path, refused)
                self.count_retry("refused")
                return _json(403, {"error": f"refused: {refused}"})
            return self._guarded(request, lambda: self._retry(int(retry[1]), request))
        endpoint = API_ROUTES.get(request.path) if self.api else None
        if endpoint is not None:
            if request.method != "POST":
                return Response(405, b"method not allowed\n", headers={"Allow": "POST"})
            return self._guarded(request, lambda: self.api.handle(
                request, endpoint, self._loop, self._pool))
        app = HOOK_ROUTES.get(request.path) if self.hooks else None
        if app is not None:
            if request.method != "POST":
                return Response(405, b"method not allowed\n", headers={"Allow": "POST"})
            return self._guarded(request, lambda: self.hooks.handle(
                request, app, self._loop, self._pool),
                refused=lambda: self.hooks.unauthorized(app))
        if request.path == "/status" and self.api and request.method in ("GET", "HEAD"):
            return self.api.status(request)   # open: Bazarr's Test button sends no credentials
        if request.method not in ("GET", "HEAD"):
            if request.method in OTHER_METHODS:
                return Response(405, b"method not allowed\n",
                                headers={"Allow": "POST" if retry else "GET, HEAD"})
            # An unknown method may carry a body in an unknown way: answer, then close.
            return Response(501, b"not implemented\n", close=True)
        if retry:
            return Response(405, b"method not allowed\n", headers={"Allow": "POST"})
        route = self.ROUTES.get(request.path)
        if route is None:
            return Response(404, b"not found\n")
        method, protected = route
        if not protected or (method == "_metrics" and not self.metrics_auth):
            return getattr(self, method)(request)
        return self._guarded(request, lambda: getattr(self, method)(request))

    def _guarded(self, request: Request, answer,
                 refused: Callable[[], None] = lambda: None) -> Response | Awaitable[Response]:
        """answer() for a client with credentials (when any are configured); `refused()` is
        called for one without."""
        if self.auth is None:
            return answer()
        verdict = self.auth.quick_check(request.headers.get("authorization"))
        if verdict is None:
            return self._after_slow_auth(request, answer, refused)
        if not verdict:
            refused()
            return self._unauthorized()
        return answer()

    async def _after_slow_auth(self, request: Request, answer, refused) -> Response:
        ok = await self._loop.run_in_executor(
            self._pool, self.auth.check, request.headers.get("authorization"))
        if not ok:
            if request.body is not None:    # an upload read before bcrypt could say no
                request.body.discard()
            refused()
            return self._unauthorized()
        result = answer()
        return result if isinstance(result, Response) else await result

    def accept_body(self, request: Request) -> Response | object | None:
        """protocol.Connection asks before reading a body: only the API and the webhooks take
        one, from a client whose credentials are not already known to be wrong."""
        endpoint = API_ROUTES.get(request.path) if self.api else None
        app = HOOK_ROUTES.get(request.path) if self.hooks else None
        if (endpoint is None and app is None) or request.method != "POST":
            return None
        if self.auth is not None and self.auth.quick_check(
                request.headers.get("authorization")) is False:
            if app is not None:
                self.hooks.unauthorized(app)
            else:
                self.api.record(endpoint, 401, 0.0)
            return self._unauthorized()
        if app is not None:
            return self.hooks.accept_body(request, app)
        return self.api.accept_body(request, endpoint)

    @staticmethod
    def _unauthorized() -> Response:
        # Not shaped like a subtitle either: Bazarr stores any /asr body it gets.
        return Response(401, b"error: unauthorized [unauthorized]\n",
                        headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})

    def _healthz(self, request: Request) -> Response:
        return Response(200, b"ok\n")

    async def _readyz(self, request: Request) -> Response:
        try:
            snap = await self._loop.run_in_executor(self._pool, self.status_source.snapshot)
            ready, reasons = snap.ready, snap.not_ready_reasons()
        except Exception as e:
            log.exception("status snapshot failed")
            ready, reasons = False, [f"status unavailable: {type(e).__name__}"]
        doc = {"ready": True} if ready else {"ready": False, "reasons": reasons}
        return _json(200 if ready else 503, doc)

    async def _status(self, request: Request) -> Response:
        snap = await self._loop.run_in_executor(
            self._pool, functools.partial(self.status_source.snapshot, details=True))
        return _json(200, {**status_document(snap, time.time()), "links": self.links})

    def _page(self, request: Request) -> Response:
        return Response(200, self.page.body, "text/html; charset=utf-8", dict(self.page.headers))

    async def _retry(self, job_id: int, request: Request) -> Response:
        result = await self._loop.run_in_executor(
            self._pool, self.job_control.retry_failed_job, job_id)
        self.count_retry(result)
        status = {"queued": 200, "not_failed": 409}.get(result, 404)
        return _json(status, {"id": job_id, "result": result})

    async def _metrics(self, request: Request) -> Response:
        compress = gzip_accepted(request.headers.get("accept-encoding"))
        encoder, content_type = choose_encoder(request.headers.get("accept"))
        if CachedOpenMetricsEncoder.can_replace(encoder):
            encoder = Exposition.openmetrics
        key = (content_type, compress)
        render = self._renders.get(key)
        if render is None:
            # Scrapes that arrive while this render runs wait for it instead of rendering again.
            render = self._renders[key] = self._loop.run_in_executor(
                self._pool, _render, encoder, self.exposition, compress)
            render.add_done_callback(lambda _f, k=key: self._renders.pop(k, None))
        body = await render
        headers = {"Vary": "Accept, Accept-Encoding"}
        if compress:
            headers["Content-Encoding"] = "gzip"
        return Response(200, body, content_type, headers)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        family = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            # The kernel's queue for a burst of scrapers connecting at once (a short queue
            # makes the kernel retry a SYN only after a whole second).
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]           # the real one when listen said :0
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="scribewatch-http")
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_loop_exception)
        server = self._loop.run_until_complete(self._loop.create_server(
            lambda: Connection(self.answer, self._loop, self._connections, self.accept_body),
            sock=sock, ssl=self._tls,
            ssl_handshake_timeout=REQUEST_TIMEOUT if self._tls else None))
        self._thread = threading.Thread(target=self._serve, args=(server,),
                                        name="scribewatch-http", daemon=True)
        self._thread.start()
        log.info("serving the status page, /metrics and the API on %s", self.url)

    def _serve(self, server: asyncio.AbstractServer) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for conn in list(self._connections):
                conn.transport.abort()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def stop(self) -> None:
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._loop = self._thread = self._pool = None

    @property
    def url(self) -> str:
        return client_url(self._host, self._port, self._tls is not None)


def _render(encoder, exposition: Exposition, compress: bool) -> bytes:
    body = encoder(exposition)
    return gzip.compress(body, compresslevel=6) if compress else body


def _json(status: int, doc: dict) -> Response:
    return Response(status, json.dumps(doc).encode() + b"\n", "application/json")


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    # A client that resets, times out or fails its TLS handshake is routine, not a traceback.
    exc = context.get("exception")
    if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
        log.debug("connection ended with an error: %s", exc)
    else:
        log.error("HTTP server: %s", context.get("message"), exc_info=exc)
