"""The HTTP server: /metrics, /healthz, /readyz, /api/status; optional TLS and basic auth.

An asyncio HTTP/1.1 server on its own thread (keep-alive, pipelining, HEAD): a slow scrape or a
stalled TLS handshake never blocks a probe. /healthz and /readyz are never behind auth, so
orchestrator probes work without credentials.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Mapping

from prometheus_client.exposition import choose_encoder, gzip_accepted

# The listen address and the TLS pair are parsed by the functions config uses at start.
from ..pipeline.contract import OUTCOMES, StatusSnapshot, StatusSource, parse_listen, tls_pair
from .auth import REALM, BasicAuth
from .exposition import CachedOpenMetricsEncoder, Exposition
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
            {"id": j.job_id, "worker": j.worker, "progress": round(j.progress, 4),
             "elapsed_seconds": round(max(0.0, now - j.started_at), 1),
             "audio_seconds": j.audio_seconds, "path": j.path, "watch_dir": j.watch_dir}
            for j in snap.running
        ],
        "counts": {**{o: 0 for o in OUTCOMES}, **snap.counts},
        "last_success_at": snap.last_success_at,
        # Files already in the folders when the daemon started are found by this scan: until
        # it is done, the queue may still grow without anything new arriving.
        "startup_scan": {"done": snap.startup_scan_seconds is not None,
                         "seconds": (None if snap.startup_scan_seconds is None
                                     else round(snap.startup_scan_seconds, 2)),
                         "files": snap.startup_scan_files},
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


class MetricsServer:
    """Serves `exposition` and `status_source` on `listen`. Configuration errors raise ValueError
    here, at construction; binding happens in start() (OSError if the port is taken).

    Requests are answered on the event loop (exporter.protocol); work that can take long
    (rendering the registry, the status snapshot, a bcrypt check) runs on a small pool, and
    scrapes that arrive while a render is under way share its result."""

    ROUTES = {   # path -> (method name, needs auth)
        "/metrics": ("_metrics", True),
        "/api/status": ("_status", True),
        "/healthz": ("_healthz", False),
        "/readyz": ("_readyz", False),
    }

    def __init__(self, exposition: Exposition, status_source: StatusSource, *, listen: str,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 basic_auth_users: Mapping[str, str] | None = None):
        self.exposition = exposition
        self.status_source = status_source
        self._host, self._port = parse_listen(listen)
        pair = tls_pair(tls_cert_file, tls_key_file)
        self._tls = _tls_context(*pair) if pair else None
        self.auth = BasicAuth(basic_auth_users) if basic_auth_users else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._connections: set[Connection] = set()
        self._renders: dict[tuple, asyncio.Future] = {}

    # -- answers (on the loop) ------------------------------------------------------------
    def answer(self, request: Request) -> Response | Awaitable[Response]:
        """The answer now, or a coroutine that will produce it."""
        if request.method not in ("GET", "HEAD"):
            if request.method in OTHER_METHODS:
                return Response(405, b"method not allowed\n", headers={"Allow": "GET, HEAD"})
            # An unknown method may carry a body in an unknown way: answer, then close.
            return Response(501, b"not implemented\n", close=True)
        route = self.ROUTES.get(request.path)
        if route is None:
            return Response(404, b"not found\n")
        method, protected = route
        if protected and self.auth is not None:
            verdict = self.auth.quick_check(request.headers.get("authorization"))
            if verdict is None:
                return self._after_slow_auth(request, method)
            if not verdict:
                return self._unauthorized()
        return getattr(self, method)(request)

    async def _after_slow_auth(self, request: Request, method: str) -> Response:
        ok = await self._loop.run_in_executor(
            self._pool, self.auth.check, request.headers.get("authorization"))
        if not ok:
            return self._unauthorized()
        answer = getattr(self, method)(request)
        return answer if isinstance(answer, Response) else await answer

    @staticmethod
    def _unauthorized() -> Response:
        return Response(401, b"unauthorized\n",
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
        snap = await self._loop.run_in_executor(self._pool, self.status_source.snapshot)
        return _json(200, status_document(snap, time.time()))

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
            lambda: Connection(self.answer, self._loop, self._connections),
            sock=sock, ssl=self._tls,
            ssl_handshake_timeout=REQUEST_TIMEOUT if self._tls else None))
        self._thread = threading.Thread(target=self._serve, args=(server,),
                                        name="scribewatch-http", daemon=True)
        self._thread.start()
        log.info("serving /metrics on %s", self.url)

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
