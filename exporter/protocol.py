"""HTTP/1.1 on one asyncio event loop: request parsing, keep-alive, pipelining, answers in order.

One thread answers every connection: a scrape is parsed and answered without handing the GIL
between threads, which is what twenty scrapers at once used to queue behind (a thread per
connection, each waking, parsing, answering). What to answer is the server's business
(`answer(request)` gives a Response, or an awaitable of one for work that runs off the loop).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import http
import logging
import time
from typing import Awaitable, Callable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0   # seconds a connection may idle or take for its TLS handshake
MAX_HEAD_BYTES = 16 * 1024          # request line and headers; longer is refused with 431
MAX_BUFFERED_BYTES = 1024 * 1024    # a client that sends or leaves unread more is paused


@dataclasses.dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]         # names lowercased
    keep_alive: bool


@dataclasses.dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    close: bool = False             # end the connection after this answer


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_request(head: bytes) -> Request:
    lines = head.split(b"\r\n")
    parts = lines[0].decode("latin-1").split()
    if len(parts) != 3:
        raise BadRequest(400, "bad request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, "HTTP version not supported")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "bad header line")
        headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
    connection = headers.get("connection", "").lower()
    keep_alive = ("close" not in connection if version == "HTTP/1.1"
                  else "keep-alive" in connection)
    return Request(method, urlsplit(target).path, headers, keep_alive)


_date_cache = (0, "")


def http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class Connection(asyncio.Protocol):
    """One client connection: requests are answered in order (pipelining included); the body
    of a request is never read, so a request that has one is answered and the connection
    closed."""

    def __init__(self, answer: Callable[[Request], "Response | Awaitable[Response]"],
                 loop: asyncio.AbstractEventLoop, connections: set):
        self.answer, self.loop, self.connections = answer, loop, connections
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiting = False        # an answer is being prepared off the loop
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None

    # asyncio callbacks
    def connection_made(self, transport):
        self.transport = transport
        self.connections.add(self)
        self._arm_timer()

    def connection_lost(self, exc):
        self.closed = True
        self.connections.discard(self)
        if self.timer:
            self.timer.cancel()

    def data_received(self, data: bytes):
        # The idle timer is not re-armed here: a request must be complete within
        # REQUEST_TIMEOUT of the connection or the previous answer, however slowly it trickles.
        self.buffer += data
        if len(self.buffer) > MAX_BUFFERED_BYTES:
            self.transport.pause_reading()
        self._answer_next()

    def pause_writing(self):
        self.transport.pause_reading()      # a client that does not read gets no more answers

    def resume_writing(self):
        self.transport.resume_reading()

    # requests and answers
    def _arm_timer(self):
        if self.timer:
            self.timer.cancel()
        self.timer = self.loop.call_later(REQUEST_TIMEOUT, self.close)

    def close(self):
        if not self.closed:
            self.closed = True
            self.transport.close()

    def _answer_next(self):
        while not self.waiting and not self.closed:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEAD_BYTES:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self._write(None, Response(431, b"request header fields too large\n",
                                                close=True))
                elif len(self.buffer) < MAX_BUFFERED_BYTES:
                    self.transport.resume_reading()
                return
            head = bytes(self.buffer[:end]).lstrip(b"\r\n")
            del self.buffer[:end + 4]
            if not head:
                continue
            try:
                request = parse_request(head)
            except BadRequest as e:
                self._write(None, Response(e.status, f"{e}\n".encode(), close=True))
                return
            try:
                answer = self.answer(request)
            except Exception:
                log.exception("error serving %s", request.path)
                answer = Response(500, b"internal error\n")
            if isinstance(answer, Response):
                self._write(request, answer)
            else:
                self.waiting = True
                task = self.loop.create_task(answer)
                task.add_done_callback(lambda t, r=request: self._answered(r, t))

    def _answered(self, request: Request, task: asyncio.Task):
        self.waiting = False
        if self.closed or task.cancelled():
            return
        try:
            response = task.result()
        except Exception:
            log.exception("error serving %s", request.path)
            response = Response(500, b"internal error\n")
        self._write(request, response)
        self._answer_next()

    def _write(self, request: Request | None, response: Response):
        keep_alive = (request is not None and request.keep_alive and not response.close
                      and not has_body(request))
        head = [f"HTTP/1.1 {response.status} {http.HTTPStatus(response.status).phrase}",
                "Server: scribewatch", f"Date: {http_date()}",
                f"Content-Type: {response.content_type}",
                f"Content-Length: {len(response.body)}"]
        head += [f"{k}: {v}" for k, v in response.headers.items()]
        if not keep_alive:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if request is None or request.method != "HEAD":
            data += response.body
        self.transport.write(data)
        if not keep_alive:
            self.closed = True
            self.transport.close()
        else:
            self._arm_timer()


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length", "0").strip()
    return "transfer-encoding" in request.headers or length not in ("", "0")
