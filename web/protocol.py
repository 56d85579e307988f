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
from typing import Awaitable, Callable, Protocol
from urllib.parse import parse_qs, urlsplit

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
    query: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    body: "BodySink | None" = None  # the body, when the server took it (accept_body)
    gone: asyncio.Future | None = None   # done when the client hangs up
    # Writes an interim `100 Continue` (before the answer only): clients skip any number of
    # them (RFC 9110 §15.2) and their read timeout starts again.
    interim: Callable[[], None] | None = None


class BodySink(Protocol):
    """Where the server wants a request body to go (a spool file): the connection writes each
    piece as it arrives, never holding the body in memory."""

    def write(self, data: bytes) -> None: ...
    def finish(self) -> None: ...
    def discard(self) -> None: ...


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
    lengths = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "bad header line")
        key, text = name.decode("latin-1").lower(), value.strip().decode("latin-1")
        if key == "content-length":
            lengths.append(text)
        headers[key] = text
    if lengths:
        headers["content-length"] = str(_one_length(lengths))
        if "transfer-encoding" in headers:
            # RFC 9112 §6.1: a server MAY reject it and MUST close the connection either way;
            # §6.3 (3): it "ought to be handled as an error" (request smuggling, §11.2).
            raise BadRequest(400, "Content-Length together with Transfer-Encoding")
    connection = headers.get("connection", "").lower()
    keep_alive = ("close" not in connection if version == "HTTP/1.1"
                  else "keep-alive" in connection)
    url = urlsplit(target)
    return Request(method, url.path, headers, keep_alive, parse_qs(url.query))


_date_cache = (0, "")


def http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class Connection(asyncio.Protocol):
    """One client connection: requests are answered in order (pipelining included). A request
    body goes to the sink `accept_body` gives (the API's spool file) or is refused before it is
    read; with no sink it is never read, so the request is answered and the connection
    closed."""

    def __init__(self, answer: Callable[[Request], "Response | Awaitable[Response]"],
                 loop: asyncio.AbstractEventLoop, connections: set,
                 accept_body: Callable[[Request], "Response | BodySink | None"] | None = None):
        self.answer, self.loop, self.connections = answer, loop, connections
        # For a request with a body: a Response refuses it before it is read (401, 413), a
        # sink takes it, None leaves it unread (answered, then the connection is closed).
        self.accept_body = accept_body
        self.receiving: tuple[Request, BodySink] | None = None
        self.body_left = 0
        self.gone = loop.create_future()
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
        if not self.gone.done():
            self.gone.set_result(None)
        if self.receiving:
            self.receiving[1].discard()
            self.receiving = None
        self.connections.discard(self)
        if self.timer:
            self.timer.cancel()

    def data_received(self, data: bytes):
        # The idle timer is not re-armed here: a request must be complete within
        # REQUEST_TIMEOUT of the connection or the previous answer, however slowly it trickles.
        # A body (an upload of gigabytes) only may not idle that long between pieces.
        if self.receiving:
            data = self._take_body(data)
            if self.receiving:
                return
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
            if has_body(request) and self.accept_body is not None:
                taken = self.accept_body(request)
                if isinstance(taken, Response):
                    self._refuse_body(request, taken)
                    return
                if taken is not None:
                    self._start_body(request, taken)
                    continue    # the body arrives; _take_body dispatches once it is whole
            self._dispatch(request)

    def _refuse_body(self, request: Request, response: Response) -> None:
        """Answer before the body is read (401, 413), then drop what the client still sends:
        one that writes its whole body before reading (python-requests) would otherwise get a
        connection reset instead of the answer."""
        self._write(request, dataclasses.replace(
            response, headers={**response.headers, "Connection": "close"}), keep_open=True)
        self.receiving, self.body_left = (request, _Drop()), _content_length(request)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._take_body(bytes(self.buffer))
        self.buffer.clear()

    def _start_body(self, request: Request, sink: "BodySink") -> None:
        if request.headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.receiving, self.body_left = (request, sink), _content_length(request)
        rest = bytes(self.buffer)
        self.buffer.clear()
        self.buffer += self._take_body(rest)

    def _take_body(self, data: bytes) -> bytes:
        """Feed the body to its sink; returns what follows it (a pipelined request's bytes)."""
        request, sink = self.receiving
        piece, rest = data[:self.body_left], data[self.body_left:]
        try:
            if piece:
                sink.write(piece)
        except OSError as e:       # the spool disk is full
            log.error("cannot spool a request body: %s", e)
            self.receiving = None
            sink.discard()
            self._write(request, Response(507, b"error: cannot store the upload [disk_full]\n",
                                          close=True))
            return b""
        self.body_left -= len(piece)
        self._arm_timer()
        if self.body_left:
            return rest
        self.receiving = None
        if isinstance(sink, _Drop):
            self.close()
            return b""
        sink.finish()
        request.body = sink
        self._dispatch(request)
        return rest

    def _dispatch(self, request: Request) -> None:
        request.gone = self.gone
        request.interim = self._interim
        try:
            answer = self.answer(request)
        except Exception:
            log.exception("error serving %s", request.path)
            answer = Response(500, b"internal error\n")
        if isinstance(answer, Response):
            self._write(request, answer)
        else:
            self.waiting = True
            if self.timer:      # a transcription may take hours: no idle timeout meanwhile
                self.timer.cancel()
            task = self.loop.create_task(answer)
            task.add_done_callback(lambda t, r=request: self._answered(r, t))

    def _interim(self) -> None:
        if not self.closed:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

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

    def _write(self, request: Request | None, response: Response, keep_open: bool = False):
        keep_alive = keep_open or (request is not None and request.keep_alive
                                   and not response.close
                                   and (request.body is not None or not has_body(request)))
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


class _Drop:
    """The sink of a refused body: dropped as it arrives."""

    def write(self, data: bytes) -> None: ...
    def finish(self) -> None: ...
    def discard(self) -> None: ...


def _one_length(values: list[str]) -> int:
    """The body's length from every Content-Length field of a request (each may be a comma
    list). RFC 9112 §6.3 (5): an invalid value is an unrecoverable framing error (400, then the
    connection closes), unless it parses as a list of valid values that are all the same, which
    is then processed as that one value; RFC 9110 §8.6 lets a recipient accept such a repeated
    identical value ("42, 42", or the field twice). Accepted here: it frames the body the same
    way however it is read, so it cannot smuggle a request. Two different values could: each
    side of a proxy may take another one (RFC 9112 §11.2)."""
    numbers = set()
    for value in values:
        for part in value.split(","):
            part = part.strip(" \t")
            if not part.isascii() or not part.isdigit():   # 1*DIGIT (RFC 9110 §8.6)
                raise BadRequest(400, "bad Content-Length")
            numbers.add(int(part))
    if len(numbers) != 1:
        raise BadRequest(400, "two different Content-Length values")
    return numbers.pop()


def _content_length(request: Request) -> int:
    try:
        return max(0, int(request.headers.get("content-length", "0")))
    except ValueError:
        return 0


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length", "0").strip()
    return "transfer-encoding" in request.headers or length not in ("", "0")
