"""The web server's HTTP/1.1 at the socket level: keep-alive and pipelining, connection
close rules, malformed and oversized requests, scrapes sharing one render, slow work kept off
the loop, idle timeouts and a clean stop."""

from __future__ import annotations

import socket
import threading
import time

import bcrypt
import pytest

import scribewatch.web.protocol as protocol_mod
import scribewatch.web.server as server_mod
from tests.harness import wait_for
from tests.harness.status import basic, request, web_server


def connect(exp) -> socket.socket:
    host, port = exp.url[len("http://"):].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def read_response(s: socket.socket, buf: bytearray,
                  head_only: bool = False) -> tuple[int, dict, bytes]:
    """One response from `s` (leftover bytes stay in `buf`): (status, headers, body)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response: {bytes(buf)!r}")
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[:end + 4]
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = 0 if head_only else int(headers["content-length"])
    while len(buf) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    return status, headers, body


def closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def exp(serve):
    return serve()


def test_keep_alive_and_pipelined_requests_are_answered_in_order(exp):
    with connect(exp) as s:
        buf = bytearray()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = [read_response(s, buf) for _ in range(4)]
        assert [a[0] for a in answers] == [200, 404, 200, 200]
        assert answers[0][2] == b"ok\n"
        assert b"scribewatch_queue_jobs" in answers[2][2]
        assert answers[3][2] == b'{"ready": true}\n'
        # The connection stays open for the next scrape.
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s, buf)[0] == 200


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.0\r\n\r\n",                                  # 1.0 closes by default
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
])
def test_connection_close_rules(exp, request_bytes):
    with connect(exp) as s:
        s.sendall(request_bytes)
        status, headers, _ = read_response(s, bytearray())
        assert status == 200 and headers["connection"] == "close"
        assert closed_by_server(s)


def test_http_1_0_keep_alive_when_asked(exp):
    with connect(exp) as s:
        buf = bytearray()
        for _ in range(2):
            s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, _ = read_response(s, buf)
            assert status == 200 and "connection" not in headers


def test_head_has_the_length_of_get_and_no_body(exp):
    with connect(exp) as s:
        buf = bytearray()
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        _, get_headers, body = read_response(s, buf)
        s.sendall(b"HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = read_response(s, buf, head_only=True)
        assert status == 200 and int(headers["content-length"]) == len(body) > 0
        # No body bytes came before the next answer.
        assert read_response(s, buf)[2] == b"ok\n"


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 405),
    (b"BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"nonsense\r\n\r\n", 400),
    (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
    (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
])
def test_bad_requests_get_an_answer_and_the_connection_closes(exp, request_bytes, status):
    with connect(exp) as s:
        s.sendall(request_bytes)
        answer = read_response(s, bytearray())
        assert answer[0] == status
        assert answer[1]["connection"] == "close"
        assert closed_by_server(s)
    assert request(exp.url + "/healthz")[0] == 200, "the server goes on"


# Message framing (request smuggling, RFC 9112 §11.2): a server and a proxy before it must
# agree on where a body ends, so a request whose length can be read two ways is refused.
# - RFC 9112 §6.3 (5): "If a message is received without Transfer-Encoding and with an invalid
#   Content-Length header field, then the message framing is invalid and the recipient MUST
#   treat it as an unrecoverable error, unless the field value can be successfully parsed as a
#   comma-separated list ..., all values in the list are valid, and all values in the list are
#   the same"; in a request: "the server MUST respond with a 400 (Bad Request) status code and
#   then close the connection".
# - RFC 9112 §6.1: "A server MAY reject a request that contains both Content-Length and
#   Transfer-Encoding ... Regardless, the server MUST close the connection after responding";
#   §6.3 (3): such a message "ought to be handled as an error". Rejected here.
# - RFC 9110 §8.6: Content-Length = 1*DIGIT; the same value repeated ("42, 42") MAY be
#   accepted as one. Accepted here (it frames the body one way only).
@pytest.mark.parametrize("lengths", [
    [b"Content-Length: 5", b"Content-Length: 6"],         # two fields, two values
    [b"Content-Length: 5, 6"],                            # one field, a list of two values
    [b"Content-Length: 6", b"Content-Length: 6, 5"],
    [b"Content-Length: 5", b"Transfer-Encoding: chunked"],
    [b"Transfer-Encoding: chunked", b"Content-Length: 5"],
    [b"Content-Length: 5", b"Content-Length: 5", b"Transfer-Encoding: chunked"],
    [b"Content-Length: -5"], [b"Content-Length: +5"], [b"Content-Length: 5x"],
    [b"Content-Length: "], [b"Content-Length: 5,"], [b"Content-Length: \xb9"],
], ids=lambda lengths: b" | ".join(lengths).decode("latin-1"))
def test_a_body_length_that_reads_two_ways_is_a_400_and_the_connection_closes(exp, lengths):
    with connect(exp) as s:
        # What a smuggler sends: after the first length's body, the bytes of a second request.
        s.sendall(b"POST /asr HTTP/1.1\r\nHost: x\r\n" + b"\r\n".join(lengths) + b"\r\n\r\n"
                  b"helloGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = bytearray()
        status, headers, body = read_response(s, buf)
        assert status == 400, body
        assert headers["connection"] == "close"
        assert closed_by_server(s), "nothing more is read from the connection"
        assert not buf, "the bytes after the head were not taken as a second request"
    assert request(exp.url + "/healthz")[0] == 200, "the server takes the next connection"


@pytest.mark.parametrize("lengths", [
    [b"Content-Length: 0, 0"], [b"Content-Length: 0", b"Content-Length: 0"],
    [b"Content-Length: 000"],
])
def test_the_same_length_repeated_is_one_length(exp, lengths):
    """RFC 9110 §8.6 and RFC 9112 §6.3 (5): processed with that single value. The pipelined
    request after it is answered: the body was framed at that length."""
    with connect(exp) as s:
        buf = bytearray()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"\r\n".join(lengths)
                  + b"\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        first, second = read_response(s, buf), read_response(s, buf)
        assert (first[0], first[2]) == (200, b"ok\n")
        assert (second[0], second[2]) == (200, b'{"ready": true}\n')
        assert "connection" not in second[1], "the connection stays open"


def test_scrapes_that_arrive_during_a_render_share_it(exp, monkeypatch):
    renders = []
    real = server_mod._render
    release = threading.Event()

    def slow_render(*args):
        renders.append(1)
        release.wait(10)
        return real(*args)

    monkeypatch.setattr(server_mod, "_render", slow_render)
    results = []
    clients = [threading.Thread(target=lambda: results.append(request(exp.url + "/metrics")))
               for _ in range(20)]
    for c in clients:
        c.start()
    wait_for(lambda: len(renders) == 1 and len(exp._connections) == 20, 10, 0.01,
             "20 scrapers connected, one render under way")
    time.sleep(0.2)   # let every request reach the server and join the render
    release.set()
    for c in clients:
        c.join(10)
    assert len(results) == 20 and all(r[0] == 200 for r in results)
    assert len({r[2] for r in results}) == 1
    assert len(renders) == 1
    # The next scrape renders afresh: nothing is served stale.
    assert request(exp.url + "/metrics")[0] == 200 and len(renders) == 2


def test_a_slow_password_check_does_not_hold_up_other_requests(serve, monkeypatch):
    e = serve(basic_auth_users={"p": bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()})
    entered, release = threading.Event(), threading.Event()
    real = e.auth.check

    def blocked_check(header):
        entered.set()
        release.wait(10)
        return real(header)

    monkeypatch.setattr(e.auth, "check", blocked_check)
    result = []
    t = threading.Thread(target=lambda: result.append(
        request(e.url + "/metrics", headers=basic("p", "pw"))))
    t.start()
    assert entered.wait(10)
    # The bcrypt round is under way (held here): probes are answered meanwhile.
    assert request(e.url + "/healthz")[0] == 200
    assert request(e.url + "/metrics")[0] == 401, "no credentials needs no bcrypt"
    release.set()
    t.join(10)
    assert result[0][0] == 200


def test_idle_connections_are_closed(exp, monkeypatch):
    monkeypatch.setattr(protocol_mod, "REQUEST_TIMEOUT", 0.3)
    with connect(exp) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s, bytearray())[0] == 200
        s.settimeout(10)
        assert closed_by_server(s)
    with connect(exp) as s:        # half a request, then silence
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        s.settimeout(10)
        assert closed_by_server(s)
    with connect(exp) as s:        # a request trickling in a byte at a time (1.8 s in all)
        interrupted = False
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: y\r\n":
                s.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            interrupted = True     # the server closed it mid-trickle
        assert interrupted, "every byte re-armed the idle timer"


def test_stop_closes_open_connections_and_frees_the_port(serve):
    e = serve()
    port = int(e.url.rsplit(":", 1)[1])
    s = connect(e)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s, bytearray())[0] == 200
    e.stop()
    assert closed_by_server(s)
    s.close()
    again = serve(listen=f"127.0.0.1:{port}")
    assert request(again.url + "/healthz")[0] == 200


def test_a_taken_port_is_an_error_at_start():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        e = web_server(listen=f"127.0.0.1:{taken.getsockname()[1]}")
        with pytest.raises(OSError):
            e.start()
