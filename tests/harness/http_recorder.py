"""A scripted HTTP server on loopback, in a thread, that records every request: the stand-in
for Jellyfin, Emby, Plex and webhook receivers (none of which can run here).

    with HttpRecorder() as server:
        server.answer("POST", "/Library/Media/Updated", 500, 204)   # first 500, then 204s
        ...                                                         # point the client at server.url
        (req,) = server.wait_for(1, timeout=10)
        assert req.method == "POST" and req.json() == {...}

Each recorded request keeps its method, path, decoded query, headers, raw body and arrival time,
so a test can check them against the documented API exactly.

`hold(method, path)` makes such requests hang after they are recorded, until `release()`: a
server that is slow exactly while a test does something (kills the client) — the recorded
arrival is the moment to do it, with no sleep to race.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
import time
import urllib.parse


@dataclasses.dataclass(frozen=True)
class Recorded:
    method: str
    path: str                       # without the query
    query: dict[str, list[str]]     # urllib.parse.parse_qs of the raw query
    raw_query: str
    headers: dict[str, str]         # names in lower case
    body: bytes
    at: float                       # time.monotonic() on arrival
    status: int                     # what the server answered

    def json(self):
        return json.loads(self.body)


@dataclasses.dataclass
class _Script:
    statuses: list[int]
    body: bytes
    content_type: str


class HttpRecorder:
    def __init__(self):
        self._lock = threading.Condition()
        self._received: list[Recorded] = []
        self._scripts: dict[tuple[str, str], _Script] = {}
        self._held: set[tuple[str, str]] = set()
        self._released = threading.Event()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                status, answer, ctype = recorder._next_answer(self.command, path)
                with recorder._lock:
                    recorder._received.append(Recorded(
                        self.command, path, urllib.parse.parse_qs(query), query,
                        {k.lower(): v for k, v in self.headers.items()}, body,
                        time.monotonic(), status))
                    recorder._lock.notify_all()
                    held = (self.command, path) in recorder._held
                if held:
                    recorder._released.wait(60)
                self.send_response(status)
                if status != 204:
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if status != 204:
                    self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, *args):   # keep test output clean
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # a short poll: close() (shutdown) waits for it
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name="http-recorder")
        self._thread.start()

    def answer(self, method: str, path: str, *statuses: int, body: bytes | str | dict = b"",
               content_type: str = "application/json") -> None:
        """Answer `method path` with these statuses in turn (the last one from then on)."""
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._scripts[method, path] = _Script(list(statuses) or [200], body, content_type)

    def hold(self, method: str, path: str) -> None:
        """Requests to `method path` hang (recorded first) until `release()`."""
        with self._lock:
            self._held.add((method, path))
            self._released.clear()

    def release(self) -> None:
        """Held requests are answered, and later ones are not held."""
        with self._lock:
            self._held.clear()
        self._released.set()

    def _next_answer(self, method: str, path: str) -> tuple[int, bytes, str]:
        with self._lock:
            script = self._scripts.get((method, path))
            if script is None:
                return 404, b'{"error":"not scripted"}', "application/json"
            status = script.statuses.pop(0) if len(script.statuses) > 1 else script.statuses[0]
            return status, script.body, script.content_type

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float, *, method: str | None = None,
                 path: str | None = None) -> list[Recorded]:
        """The first `count` requests (of this method and path, if given), waiting for them."""
        def matching():
            return [r for r in self._received if (method is None or r.method == method)
                    and (path is None or r.path == path)]
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(matching()) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [(r.method, r.path, r.raw_query) for r in self._received]
                    raise TimeoutError(f"{len(matching())} of {count} request(s) to {method} "
                                       f"{path} within {timeout}s; got: {got}")
                self._lock.wait(remaining)
            return matching()[:count]

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
