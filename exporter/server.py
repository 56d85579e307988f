"""The HTTP server: /metrics, /healthz, /readyz, /api/status; optional TLS and basic auth.

stdlib `ThreadingHTTPServer` in a daemon thread: a slow scrape never blocks a probe. /healthz and
/readyz are never behind auth, so orchestrator probes work without credentials.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import socketserver
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Mapping
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from pipeline.errors import OUTCOMES
from pipeline.events import StatusSnapshot, StatusSource

from .auth import REALM, BasicAuth

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0   # seconds a connection may idle or take for its TLS handshake


def parse_listen(listen: str) -> tuple[str, int]:
    """'HOST:PORT', '[IPv6]:PORT' → (host, port). Raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"listen {listen!r}: put an IPv6 address in brackets, e.g. [::]:9847")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen {listen!r}: expected HOST:PORT, e.g. 0.0.0.0:9847 or [::]:9847")
    return host, int(port)


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
        "queue_jobs": snap.queue_jobs,
        "running": [
            {"id": j.job_id, "worker": j.worker, "progress": round(j.progress, 4),
             "elapsed_seconds": round(max(0.0, now - j.started_at), 1),
             "audio_seconds": j.audio_seconds}
            for j in snap.running
        ],
        "counts": {**{o: 0 for o in OUTCOMES}, **snap.counts},
        "last_success_at": snap.last_success_at,
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connections from a burst of scrapers: the
    # kernel then retries the SYN after a whole second.
    request_queue_size = 128

    def __init__(self, address, family, tls: ssl.SSLContext | None, app: "MetricsServer"):
        self.address_family = family
        self.tls = tls
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name (getfqdn), which can hang for seconds on
        # a box with broken DNS; nothing here uses it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        # A client that disconnects mid-answer is routine, not a traceback on stderr.
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)

    def finish_request(self, request, client_address):
        if self.tls is None:
            return super().finish_request(request, client_address)
        # The handshake runs here, in the connection's own thread, not in the accept loop:
        # a client that never finishes it (or speaks plain HTTP) cannot block the others.
        request.settimeout(REQUEST_TIMEOUT)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address[0], e)
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            self.shutdown_request(conn)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "scribewatch"
    sys_version = ""
    timeout = REQUEST_TIMEOUT
    _send_body = True         # False while answering HEAD

    # Routes: path -> (method name, needs auth).
    ROUTES = {
        "/metrics": ("_metrics", True),
        "/api/status": ("_status", True),
        "/healthz": ("_healthz", False),
        "/readyz": ("_readyz", False),
    }

    def do_GET(self):
        self._route(send_body=True)

    def do_HEAD(self):
        self._route(send_body=False)

    def _not_allowed(self):
        self._send(405, b"method not allowed\n", "text/plain; charset=utf-8",
                   {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = _not_allowed

    def _route(self, send_body: bool):
        self._send_body = send_body
        route = self.ROUTES.get(urlsplit(self.path).path)
        if route is None:
            return self._send(404, b"not found\n", "text/plain; charset=utf-8")
        method, protected = route
        auth = self.server.app.auth
        if protected and auth is not None and not auth.check(self.headers.get("Authorization")):
            return self._send(401, b"unauthorized\n", "text/plain; charset=utf-8",
                              {"WWW-Authenticate": f'Basic realm="{REALM}"'})
        try:
            getattr(self, method)()
        except (ConnectionError, TimeoutError):
            raise                   # the client went away: there is no one to answer
        except Exception:
            log.exception("error serving %s", self.path)
            self._send(500, b"internal error\n", "text/plain; charset=utf-8")

    def _metrics(self):
        compress = gzip_accepted(self.headers.get("Accept-Encoding"))
        body, content_type = self.server.app.exposition(self.headers.get("Accept"), compress)
        headers = {"Vary": "Accept, Accept-Encoding"}
        if compress:
            headers["Content-Encoding"] = "gzip"
        self._send(200, body, content_type, headers)

    def _healthz(self):
        self._send(200, b"ok\n", "text/plain; charset=utf-8")

    def _readyz(self):
        try:
            snap = self.server.app.status_source.snapshot()
            ready, reasons = snap.ready, snap.not_ready_reasons()
        except Exception as e:
            log.exception("status snapshot failed")
            ready, reasons = False, [f"status unavailable: {type(e).__name__}"]
        doc = {"ready": True} if ready else {"ready": False, "reasons": reasons}
        self._json(200 if ready else 503, doc)

    def _status(self):
        snap = self.server.app.status_source.snapshot()
        self._json(200, status_document(snap, time.time()))

    def _json(self, status: int, doc: dict):
        self._send(status, json.dumps(doc).encode() + b"\n", "application/json")

    def _send(self, status: int, body: bytes, content_type: str, headers: Mapping | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self._send_body:
            self.wfile.write(body)

    def log_message(self, format, *args):
        # Every scrape would be a line on stderr otherwise.
        log.debug("%s %s", self.address_string(), format % args)


class _Render:
    """One render of the registry, shared by the scrapes that wait for it."""

    def __init__(self):
        self.done = threading.Event()
        self.body = b""
        self.error: BaseException | None = None


class MetricsServer:
    """Serves `registry` and `status_source` on `listen`. Configuration errors raise ValueError
    here, at construction; binding happens in start()."""

    def __init__(self, registry: CollectorRegistry, status_source: StatusSource, *, listen: str,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 basic_auth_users: Mapping[str, str] | None = None):
        self.registry = registry
        self.status_source = status_source
        self._host, self._port = parse_listen(listen)
        if bool(tls_cert_file) != bool(tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        self._tls = _tls_context(tls_cert_file, tls_key_file) if tls_cert_file else None
        self.auth = BasicAuth(basic_auth_users) if basic_auth_users else None
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._renders: dict[tuple, _Render] = {}
        self._renders_lock = threading.Lock()

    def exposition(self, accept: str | None, compress: bool) -> tuple[bytes, str]:
        """The registry rendered for one scrape; scrapes that arrive while a render of the same
        format is under way share its result instead of rendering again.

        Rendering takes a few milliseconds of Python under the GIL: twenty scrapers at once
        would otherwise queue twenty renders behind each other.
        """
        encoder, content_type = choose_encoder(accept)
        key = (content_type, compress)
        with self._renders_lock:
            render = self._renders.get(key)
            owner = render is None
            if owner:
                render = self._renders[key] = _Render()
        if owner:
            try:
                body = encoder(self.registry)
                render.body = gzip.compress(body, compresslevel=6) if compress else body
            except BaseException as e:
                render.error = e
                raise
            finally:
                with self._renders_lock:
                    del self._renders[key]
                render.done.set()
        else:
            render.done.wait()
            if render.error is not None:
                raise RuntimeError("metrics rendering failed") from render.error
        return render.body, content_type

    def start(self) -> None:
        family = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        self._httpd = _Server((self._host, self._port), family, self._tls, self)
        self._port = self._httpd.server_address[1]      # the real one when listen said :0
        # poll_interval bounds how long stop() waits for the serving loop to notice.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.2,),
                                        name="scribewatch-http", daemon=True)
        self._thread.start()
        log.info("serving /metrics on %s", self.url)

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        self._httpd = self._thread = None

    @property
    def url(self) -> str:
        return client_url(self._host, self._port, self._tls is not None)
