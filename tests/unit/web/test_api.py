"""The API's HTTP side on the real server (web/api.py, protocol.py's bodies): routes, form
parameters, 413/411/401 before the body, 100-continue, keep-alive after a body, hang-ups, error
shapes and auth. The queue here is the contract's protocol answered by the test; the daemon's
real one, with the model, is in tests/system/test_api*.py."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import socket
import time

import pytest
import requests

from scribewatch.pipeline.contract import ApiFailed, ApiResult
from tests.harness import wait_for
from tests.harness.api import bazarr_asr, multipart_body, token_hash

TOKEN = "sk-unit-test-token"
USERS = {"u": "sha256:" + "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"}


@dataclasses.dataclass(eq=False)
class Ticket:
    future: concurrent.futures.Future = dataclasses.field(
        default_factory=concurrent.futures.Future)
    cancelled: bool = False
    took_upload: bool = False

    def cancel(self) -> None:
        self.cancelled = True
        self.future.cancel()


class Queue:
    """Answers at once with what it was sent (the upload's bytes and the parameters), fails
    with `fail`, or holds the request (`hold`) until the test looks."""

    max_wait_seconds = 1.0

    def __init__(self, fail: ApiFailed | None = None, hold: bool = False, take: bool = False,
                 spool_dir: str | None = None):
        self.fail, self.hold, self.take, self.spool_dir = fail, hold, take, spool_dir
        self.requests, self.tickets, self.uploads = [], [], []

    def submit(self, request):
        ticket = Ticket(took_upload=self.take)
        self.requests.append(request)
        self.tickets.append(ticket)
        with open(request.path, "rb") as f:
            f.seek(request.offset)
            self.uploads.append(f.read(request.length))
        if self.hold:
            return ticket
        if self.fail:
            ticket.future.set_exception(self.fail)
        else:
            doc = {k: v for k, v in dataclasses.asdict(request).items() if k != "path"}
            ticket.future.set_result(ApiResult(json.dumps(doc).encode(), "application/json",
                                               "en", 1.0))
        return ticket


@pytest.fixture
def api(serve):
    """`api(queue=None, **kw)`: a started server whose API hands its requests to `queue` (by
    default a Queue that answers at once)."""
    return lambda queue=None, **kw: serve(api_queue=queue or Queue(), **kw)


def raw(url: str, head: str, body: bytes = b"", read_until: bytes = b"\r\n\r\n") -> bytes:
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        got = b""
        while read_until not in got:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_bazarr_parameters_reach_the_queue_and_the_spool_file_goes(api):
    queue = Queue()
    exp = api(queue)
    answer = bazarr_asr(exp.url, b"\x01\x02" * 1000, language="de", task="translate",
                        video_file="/movies/a b.mkv")
    assert answer.status_code == 200
    req = queue.requests[0]
    assert (req.task, req.language, req.output, req.raw_pcm) == ("translate", "de", "srt", True)
    assert queue.uploads == [b"\x01\x02" * 1000]
    assert answer.headers["Content-Disposition"] == 'attachment; filename="audio_file.srt"'
    assert not os.path.exists(req.path)
    r = requests.post(f"{exp.url}/asr", params={"output": "vtt", "word_timestamps": "1",
                                                "vad_filter": "false",
                                                "initial_prompt": "Names: Zoë"},
                      files={"audio_file": b"x"})
    req = queue.requests[1]
    assert (req.raw_pcm, req.output, req.word_timestamps, req.vad_filter, req.prompt) == \
        (False, "vtt", True, False, "Names: Zoë")
    assert queue.requests[0].vad_filter is None and r.status_code == 200


def test_an_upload_a_job_took_stays_in_the_queues_spool_folder(api, tmp_path):
    """A new job keeps the spooled upload (and deletes it when it ends, after a restart if
    need be): the server leaves it, and spools into the queue's folder, beside the store."""
    queue = Queue(take=True, spool_dir=str(tmp_path))
    answer = bazarr_asr(api(queue).url, b"\x01\x02" * 100)
    assert answer.status_code == 200
    req = queue.requests[0]
    assert os.path.dirname(req.path) == str(tmp_path) and os.path.exists(req.path)
    assert req.endpoint == "asr"


def test_openai_form_fields(api):
    queue = Queue()
    exp = api(queue)
    r = requests.post(f"{exp.url}/v1/audio/transcriptions", files=[
        ("model", (None, "whisper-1")), ("language", (None, "FR")), ("prompt", (None, "hi")),
        ("response_format", (None, "verbose_json")), ("temperature", (None, "0.2")),
        ("timestamp_granularities[]", (None, "word")), ("file", ("a.mp3", b"MP3"))])
    assert r.status_code == 200, r.text
    req = queue.requests[0]
    assert (req.task, req.language, req.output, req.prompt, req.temperature,
            req.word_timestamps, req.raw_pcm) == ("transcribe", "fr", "verbose_json", "hi", 0.2,
                                                 True, False)
    assert queue.uploads == [b"MP3"]
    requests.post(f"{exp.url}/v1/audio/translations", files={"file": b"x"})
    assert (queue.requests[1].task, queue.requests[1].output) == ("translate", "json")


@pytest.mark.parametrize("path, files, params, message", [
    ("/asr", {"audio_file": b"x"}, {"output": "docx"}, "output='docx'"),
    ("/asr", {"audio_file": b"x"}, {"encode": "maybe"}, "encode='maybe'"),
    ("/asr", {"audio_file": b"x"}, {"task": "summarise"}, "task='summarise'"),
    ("/asr", {"file": b"x"}, {}, "audio_file"),
    ("/v1/audio/transcriptions", {"audio_file": b"x"}, {}, "no file field"),
    ("/v1/audio/transcriptions", {"file": b"x", "response_format": (None, "xml")}, {}, "xml"),
    ("/v1/audio/transcriptions", {"file": b"x", "temperature": (None, "hot")}, {}, "hot"),
])
def test_bad_parameters_are_400_with_a_named_reason(api, path, files, params, message):
    queue = Queue()
    exp = api(queue)
    r = requests.post(exp.url + path, files=files, params=params)
    assert r.status_code == 400 and message in r.text and not queue.requests
    if path == "/asr":
        assert r.text.startswith("error: ") and r.text.endswith("[bad_request]\n")
    else:
        error = r.json()["error"]
        assert error["code"] == "bad_request" and error["type"] == "invalid_request_error"
        assert set(error) == {"message", "type", "param", "code"}
        assert r.headers["x-should-retry"] == "false"


def test_a_body_over_the_limit_is_refused_before_it_is_sent(api):
    exp = api(api_max_upload_bytes=1000)
    head = (f"POST /asr HTTP/1.1\r\nHost: x\r\nContent-Length: {10**10}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n")
    started = time.monotonic()
    answer = raw(exp.url, head, read_until=b"]\n")    # no body sent at all
    assert answer.startswith(b"HTTP/1.1 413 ") and b"[upload_too_large]" in answer
    assert b"Connection: close" in answer and time.monotonic() - started < 5
    chunked = raw(exp.url, "POST /asr HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 411 ")
    # python-requests sends the whole body before it reads: it still gets the 413.
    r = requests.post(f"{exp.url}/asr", files={"audio_file": b"\0" * 200_000})
    assert r.status_code == 413 and "-->" not in r.text


def test_expect_100_continue_and_keep_alive_after_a_body(api):
    exp = api()
    body = multipart_body("audio_file", b"\0\0" * 10)
    head = (f"POST /asr?encode=false&output=srt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            f"Content-Type: multipart/form-data; boundary=scribewatch-test\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    host, port = exp.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")   # pipelined
        got = b""
        while got.count(b"HTTP/1.1 200 ") < 2:
            got += sock.recv(65536)
    assert b'"raw_pcm": true' in got and got.endswith(b"ok\n")


def test_a_client_that_hangs_up_withdraws_its_request(api):
    queue = Queue(hold=True)
    exp = api(queue)
    body = multipart_body("audio_file", b"\0\0")
    host, port = exp.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((f"POST /asr HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                      "Content-Type: multipart/form-data; boundary=scribewatch-test\r\n\r\n")
                     .encode() + body)
        wait_for(lambda: queue.tickets, 5, what="the request queued")
    wait_for(lambda: queue.tickets[0].cancelled, 5, what="the request withdrawn")
    wait_for(lambda: 'code="499",endpoint="asr"} 1.0' in
             requests.get(f"{exp.url}/metrics").text, 5, what="the hang-up counted")


def test_failures_and_busy_answers(api):
    exp = api(Queue(fail=ApiFailed(503, "busy", "every worker is busy", retry_after=30)))
    r = bazarr_asr(exp.url, b"\0\0")
    assert r.status_code == 503 and r.headers["Retry-After"] == "30"
    assert r.text == "error: every worker is busy [busy]\n"
    r = requests.post(f"{exp.url}/v1/audio/transcriptions", files={"file": b"x"})
    assert r.json()["error"]["code"] == "busy" and r.headers["x-should-retry"] == "true"
    exp = api(Queue(fail=ApiFailed(500, "transcribe_error", "out of memory")))
    r = requests.post(f"{exp.url}/v1/audio/transcriptions", files={"file": b"x"})
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert r.headers["x-should-retry"] == "false"     # the SDK would upload it twice more


def test_routes_and_auth(api):
    exp = api(basic_auth_users=USERS, api_tokens=[token_hash(TOKEN)], metrics_auth=False)
    assert requests.get(f"{exp.url}/status").json()["version"]     # open: Bazarr's Test button
    assert requests.get(f"{exp.url}/asr").status_code == 405
    assert requests.get(f"{exp.url}/metrics").status_code == 200
    assert requests.get(f"{exp.url}/api/status").status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(f"{exp.url}/api/status", headers=bearer).status_code == 200
    for headers, status in [({}, 401), ({"Authorization": "Bearer nope"}, 401), (bearer, 200)]:
        r = requests.post(f"{exp.url}/asr", files={"audio_file": b"x"}, headers=headers)
        assert r.status_code == status and "-->" not in r.text
    assert requests.post(f"{exp.url}/asr", files={"audio_file": b"x"},
                         auth=("u", "secret")).status_code == 200
    locked = api(basic_auth_users=USERS)                  # metrics_auth defaults to true
    assert requests.get(f"{locked.url}/metrics").status_code == 401
    assert requests.get(f"{locked.url}/metrics", auth=("u", "secret")).status_code == 200


def test_no_queue_no_api(serve):
    exp = serve()
    assert requests.post(f"{exp.url}/asr", files={"audio_file": b"x"}).status_code == 405
    assert requests.get(f"{exp.url}/status").status_code == 404


@pytest.mark.parametrize("interim_seconds, survives", [(0.3, True), (30.0, False)])
def test_interim_answers_keep_a_clients_read_timeout_from_firing(api, interim_seconds,
                                                                 survives):
    """Bazarr's read timeout is per socket read: a transcription longer than it would fail,
    unless `100 Continue` lines arrive meanwhile (python-requests skips them)."""
    import threading

    queue = Queue(hold=True)
    exp = api(queue)
    exp.api.interim_seconds = interim_seconds

    def answer_later():
        wait_for(lambda: queue.tickets, 5, what="the request queued")
        time.sleep(2.5)
        if not queue.tickets[0].cancelled:     # a client that timed out has withdrawn it
            queue.tickets[0].future.set_result(ApiResult(
                b"1\n00:00:00,000 --> 00:00:01,000\nhi\n\n", "text/plain; charset=utf-8",
                "en", 1.0))

    threading.Thread(target=answer_later, daemon=True).start()
    post = lambda: requests.post(f"{exp.url}/asr", files={"audio_file": b"\0\0"},  # noqa: E731
                                 params={"encode": "false", "output": "srt"}, timeout=(5, 1))
    if survives:
        assert post().text.startswith("1\n00:00:00,000 --> ")
    else:
        with pytest.raises(requests.exceptions.ReadTimeout):
            post()
        wait_for(lambda: queue.tickets[0].cancelled, 5, what="the request withdrawn")
