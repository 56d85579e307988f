"""The HTTP transcription API: whisper-asr-webservice's `/asr` and `/detect-language` (what
Bazarr's `whisperai` provider calls) and OpenAI's `/v1/audio/transcriptions|translations`.

The body is spooled to a file as it arrives (never held in memory; in the queue's spool folder
beside the job store) and refused with a 413 before it is read when its Content-Length is over
the limit. The request goes to the daemon through `contract.ApiQueue`: answered from the
answers the store keeps, or joined to the job in flight for the same answer, or a job of its
own ahead of the folder backlog; the answer waits on the event loop without holding a thread.
A client that hangs up withdraws its request (its job too, when nobody else waits for it).

Bazarr stores whatever body it gets as the subtitle, so an error is never shaped like one: an
error status and `error: <message> [<reason>]` in plain text (OpenAI's endpoints: OpenAI's JSON
error object).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import tempfile
import time
from typing import Callable

from .. import __version__
from ..pipeline.contract import (
    API_REJECTIONS,
    ASR_OUTPUTS,
    OPENAI_OUTPUTS,
    ApiFailed,
    ApiQueue,
    ApiRequest,
)
from . import multipart
from .protocol import Request, Response

log = logging.getLogger(__name__)

# path -> the `endpoint` label (a fixed set: catalog.API_ENDPOINTS)
ROUTES = {"/asr": "asr", "/detect-language": "detect_language",
          "/v1/audio/transcriptions": "transcriptions", "/v1/audio/translations": "translations"}
REFUSALS = {r.code for r in API_REJECTIONS}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


class Spool:
    """A request body on its way to a file (protocol.BodySink)."""

    def __init__(self, directory: str | None):
        fd, self.path = tempfile.mkstemp(prefix=".scribewatch-upload-", dir=directory)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def finish(self) -> None:
        self._file.close()

    def close(self) -> None:
        """Closed, the file left to whoever took it (a job)."""
        self._file.close()

    def discard(self) -> None:
        self._file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _bool(request: Request, name: str, default):
    value = request.query.get(name, [None])[-1]
    if value is None or value == "":
        return default
    if value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ApiFailed(400, "bad_request", f"{name}={value!r}: expected true or false")


def _choice(value: str, allowed: tuple, name: str) -> str:
    if value not in allowed:
        raise ApiFailed(400, "bad_request", f"{name}={value!r}: expected one of "
                                            f"{', '.join(allowed)}")
    return value


class TranscriptionApi:
    interim_seconds = 60.0     # how often a waiting client gets an interim `100 Continue`

    def __init__(self, queue: ApiQueue, *, max_upload_bytes: int,
                 record: Callable[[str, int, float], None], spool_dir: str | None = None):
        self.queue = queue
        self.max_upload_bytes = max_upload_bytes
        self.record = record          # (endpoint, status, seconds) -> the API metrics
        self.spool_dir = spool_dir or getattr(queue, "spool_dir", None)

    def accept_body(self, request: Request, endpoint: str) -> Response | Spool:
        """Take the body, or refuse it before reading a byte of it."""
        if "transfer-encoding" in request.headers:
            failed = ApiFailed(411, "length_required", "send the upload with a Content-Length")
        else:
            try:
                length = int(request.headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if length < 0:
                failed = ApiFailed(400, "bad_request", "a bad Content-Length")
            elif length > self.max_upload_bytes:
                failed = ApiFailed(413, "upload_too_large", f"the upload is {length} bytes; "
                                   f"this server takes at most {self.max_upload_bytes} "
                                   "(api_max_upload_bytes)")
            else:
                return Spool(self.spool_dir)
        return self.refuse(endpoint, failed, 0.0)

    def refuse(self, endpoint: str, failed: ApiFailed, started: float | None) -> Response:
        """An error answer, logged and counted. `started`: monotonic start, or 0 for now."""
        seconds = time.monotonic() - started if started else 0.0
        if failed.reason in REFUSALS:   # a job's failure is logged by the worker that ran it
            log.warning("API %s answered %d: %s [%s]", endpoint, failed.status, failed.message,
                        failed.reason)
        self.record(endpoint, failed.status, seconds)
        headers = {}
        if failed.retry_after is not None:
            headers["Retry-After"] = str(int(failed.retry_after))
        if endpoint in ("asr", "detect_language"):
            body = f"error: {failed.message} [{failed.reason}]\n".encode()
            return Response(failed.status, body, headers=headers)
        # OpenAI's error object; its SDKs re-send on 5xx unless told not to, and only a busy
        # server is worth a retry.
        headers["x-should-retry"] = "true" if failed.reason == "busy" else "false"
        kind = "invalid_request_error" if failed.status < 500 else "server_error"
        doc = {"error": {"message": failed.message, "type": kind, "param": None,
                         "code": failed.reason}}
        return Response(failed.status, json.dumps(doc).encode() + b"\n", "application/json",
                        headers)

    @staticmethod
    def status(request: Request) -> Response:
        """Bazarr's "Test" button: 200 and a JSON `version`."""
        return Response(200, json.dumps({"version": __version__}).encode() + b"\n",
                        "application/json")

    async def handle(self, request: Request, endpoint: str, loop, pool) -> Response:
        started = time.monotonic()
        upload = request.body
        if upload is None:
            return self.refuse(endpoint, ApiFailed(
                400, "bad_request", "expected a multipart/form-data upload"), started)
        try:
            # Parsing, hashing the audio and asking the store block: on the pool.
            api_request = await loop.run_in_executor(pool, self._build, request, endpoint)
            ticket = await loop.run_in_executor(pool, self.queue.submit, api_request)
        except ApiFailed as e:
            upload.discard()
            return self.refuse(endpoint, e, started)
        # The spool file goes when the request is over (answered, failed or withdrawn), unless
        # its job keeps it (the job deletes it when it ends, after a restart if need be).
        if ticket.took_upload:
            upload.close()
        else:
            ticket.future.add_done_callback(lambda _f: upload.discard())
        answer = asyncio.wrap_future(ticket.future, loop=loop)
        while True:
            await asyncio.wait({answer, request.gone}, timeout=self.interim_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
            if answer.done() or request.gone.done():
                break
            # A film can take longer than a client's read timeout (Bazarr: 3600 s per read);
            # a `100 Continue` now and then restarts it, and tells a dead connection apart.
            request.interim()
        if not answer.done():
            ticket.cancel()
            log.info("API %s: the client hung up; request withdrawn", endpoint)
            return self.refuse(endpoint, ApiFailed(499, "cancelled", "client hung up"), started)
        if answer.cancelled():
            return self.refuse(endpoint, ApiFailed(499, "cancelled", "client hung up"), started)
        try:
            result = answer.result()
        except ApiFailed as e:
            return self.refuse(endpoint, e, started)
        self.record(endpoint, 200, time.monotonic() - started)
        headers = {}
        if endpoint == "asr":   # as whisper-asr-webservice names it
            headers["Content-Disposition"] = \
                f'attachment; filename="audio_file.{api_request.output}"'
        return Response(200, result.body, result.content_type, headers)

    # -- the request's form and parameters -> contract.ApiRequest (on the pool) -------------
    def _build(self, request: Request, endpoint: str) -> ApiRequest:
        path = request.body.path
        try:
            parts = multipart.parse(path, request.headers.get("content-type"))
        except (multipart.FormError, OSError, ValueError) as e:
            raise ApiFailed(400, "bad_request", str(e)) from None
        if endpoint in ("asr", "detect_language"):
            return self._whisper_asr(request, endpoint, path, parts)
        return self._openai(endpoint, path, parts)

    def _whisper_asr(self, request: Request, endpoint: str, path: str, parts) -> ApiRequest:
        audio = parts.get("audio_file")
        if not audio:
            raise ApiFailed(400, "bad_request", "the form has no audio_file field")
        q = request.query
        language = (q.get("language", [""])[-1] or None)
        common = dict(path=path, offset=audio[0].offset, length=audio[0].length,
                      endpoint=endpoint,
                      raw_pcm=not _bool(request, "encode", True),
                      language=language.lower() if language else None)
        if endpoint == "detect_language":
            return ApiRequest(**common, task="detect_language", output="json")
        return ApiRequest(
            **common, task=_choice(q.get("task", ["transcribe"])[-1] or "transcribe",
                                   ("transcribe", "translate"), "task"),
            output=_choice(q.get("output", ["txt"])[-1] or "txt", ASR_OUTPUTS, "output"),
            word_timestamps=_bool(request, "word_timestamps", False),
            vad_filter=_bool(request, "vad_filter", None),
            prompt=q.get("initial_prompt", [""])[-1] or None)

    def _openai(self, endpoint: str, path: str, parts) -> ApiRequest:
        file = parts.get("file")
        if not file:
            raise ApiFailed(400, "bad_request", "the form has no file field")

        def field(name: str, default=None):
            found = parts.get(name)
            return multipart.text(path, found[-1]).strip() if found else default

        granularities = [multipart.text(path, p).strip()
                         for p in parts.get("timestamp_granularities[]", [])]
        for g in granularities:
            _choice(g, ("word", "segment"), "timestamp_granularities[]")
        temperature = field("temperature")
        try:
            temperature = None if temperature in (None, "") else float(temperature)
        except ValueError:
            raise ApiFailed(400, "bad_request", f"temperature={temperature!r}: expected a "
                                                "number") from None
        language = field("language") if endpoint == "transcriptions" else None
        if language and not re.fullmatch(r"[a-zA-Z]{2,3}", language):
            raise ApiFailed(400, "bad_request", f"language={language!r}: expected an "
                                                "ISO-639-1 code such as 'en'")
        return ApiRequest(
            path=path, offset=file[0].offset, length=file[0].length, raw_pcm=False,
            endpoint=endpoint,
            task="translate" if endpoint == "translations" else "transcribe",
            output=_choice(field("response_format") or "json", OPENAI_OUTPUTS,
                           "response_format"),
            language=language.lower() if language else None,
            word_timestamps="word" in granularities, prompt=field("prompt") or None,
            temperature=temperature)
