"""Requests of the HTTP transcription API, run by the daemon's workers ahead of the folder queue.

The exporter's server spools an upload to a file and `submit`s it here (`contract.ApiQueue`).
Each worker asks `run_next()` before it claims a folder job from the store, so a request never
waits behind a queued file, however long; with every worker in the middle of a file, the
request waits for the first one to finish, at most `max_wait_seconds`, then fails as `busy`
(503 with Retry-After). `api_workers` reserves workers for the API alone. A request whose
client hangs up is withdrawn if no worker has it yet, or stopped at its next segment.

Requests live in memory only: a daemon that dies drops the connection, and the client (Bazarr,
an OpenAI SDK) retries.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import media, skip_policy, stages
from ..contract import ApiFailed, ApiRequest, ApiResult, NullReporter, Reporter
from ..errors import SkipJob, StageError
from ..guards import check_transcript
from ..language.codes import WHISPER_CODES
from ..language.vote import vote_language
from . import render as api_render

log = logging.getLogger(__name__)

# Failures of the upload itself: the client sent something we cannot use; a 5xx makes Bazarr
# and the OpenAI SDK send the same bytes again for nothing.
_CLIENT_REASONS = {"empty_file", "not_media", "corrupt_container", "no_audio_stream",
                   "decode_error", "timestamp_jump", "vanished"}


def http_status(reason: str) -> int:
    if reason in _CLIENT_REASONS:
        return 400
    return 503 if reason == "model_load_failed" else 500


@dataclasses.dataclass(eq=False)
class Ticket:
    """One submitted request (contract.ApiTicket)."""
    request: ApiRequest
    future: concurrent.futures.Future = dataclasses.field(
        default_factory=concurrent.futures.Future)
    submitted: float = dataclasses.field(default_factory=time.monotonic)
    cancelled: bool = False
    timer: threading.Timer | None = None

    def cancel(self) -> None:
        self.cancelled = True      # a running transcription sees it at its next segment
        self.future.cancel()       # only works while no worker has it


class ApiJobs:
    """The in-memory API queue (contract.ApiQueue) and what a worker does with a request."""

    def __init__(self, model, options: stages.TranscribeOptions, *, max_wait_seconds: float,
                 notify: Callable[[], None], reporter: Reporter | None = None):
        self.model = model
        self.options = options
        self.max_wait_seconds = max_wait_seconds
        self.reporter: Reporter = reporter or NullReporter()
        self._notify = notify
        self._queue: collections.deque[Ticket] = collections.deque()
        self._lock = threading.Lock()
        self._closed = False
        self.running = 0

    # -- the server's side -----------------------------------------------------------------
    def submit(self, request: ApiRequest) -> Ticket:
        """Raises ApiFailed(400) for a language Whisper does not know."""
        if request.language and request.language not in WHISPER_CODES:
            raise ApiFailed(400, "bad_request", f"language={request.language!r}: not one of "
                                                "Whisper's language codes")
        ticket = Ticket(request)
        with self._lock:
            if self._closed:
                ticket.future.set_exception(ApiFailed(503, "busy", "the daemon is stopping",
                                                      retry_after=30))
                return ticket
            self._queue.append(ticket)
        ticket.timer = threading.Timer(self.max_wait_seconds, self._expire, (ticket,))
        ticket.timer.daemon = True
        ticket.timer.start()
        self._notify()
        return ticket

    def _expire(self, ticket: Ticket) -> None:
        with self._lock:
            try:
                self._queue.remove(ticket)
            except ValueError:
                return              # a worker took it meanwhile
        if not ticket.future.cancelled():
            log.warning("API request refused: no worker free within %.0fs [busy]",
                        self.max_wait_seconds)
            ticket.future.set_exception(ApiFailed(
                503, "busy", f"every worker is busy; no worker took the request within "
                f"{self.max_wait_seconds:g}s (api_max_wait_seconds)",
                retry_after=max(1, round(self.max_wait_seconds))))

    def close(self) -> None:
        """Shutdown: refuse what is still waiting."""
        with self._lock:
            self._closed, waiting = True, list(self._queue)
            self._queue.clear()
        for ticket in waiting:
            if ticket.timer:
                ticket.timer.cancel()
            if ticket.future.set_running_or_notify_cancel():
                ticket.future.set_exception(ApiFailed(503, "busy", "the daemon is stopping",
                                                      retry_after=30))

    @property
    def waiting(self) -> int:
        return len(self._queue)

    # -- the workers' side -----------------------------------------------------------------
    def _take(self) -> Ticket | None:
        with self._lock:
            while self._queue:
                ticket = self._queue.popleft()
                if ticket.timer:
                    ticket.timer.cancel()
                # False when the client hung up before any worker had it: dropped.
                if ticket.future.set_running_or_notify_cancel():
                    return ticket
        return None

    def run_next(self) -> bool:
        """Run the oldest waiting request on this thread; False when none waits."""
        ticket = self._take()
        if ticket is None:
            return False
        with self._lock:
            self.running += 1
        try:
            self._run(ticket)
        finally:
            with self._lock:
                self.running -= 1
        return True

    def _run(self, ticket: Ticket) -> None:
        req, started = ticket.request, time.monotonic()
        log.info("API %s started (%s, %d bytes uploaded, waited %.2fs)", req.task,
                 "raw PCM" if req.raw_pcm else "media", req.length, started - ticket.submitted)
        try:
            result = self._execute(ticket)
        except stages.Cancelled:
            log.info("API %s cancelled: the client hung up", req.task)
            ticket.future.set_exception(ApiFailed(499, "cancelled", "the client hung up"))
            return
        except SkipJob as skip:
            message = skip.message.replace(req.path, "upload")
            log.info("API %s: %s [%s]", req.task, message, skip.reason)
            self.reporter.job_finished("skipped", reason=skip.reason, source="api")
            ticket.future.set_exception(ApiFailed(422, skip.reason, message))
            return
        except StageError as err:
            message = err.message.replace(req.path, "upload")
            log.warning("API %s failed: %s [%s/%s]", req.task, message, err.stage, err.reason)
            self.reporter.job_finished("failed", reason=err.reason, stage=err.stage,
                                       source="api")
            ticket.future.set_exception(ApiFailed(http_status(err.reason), err.reason, message))
            return
        except Exception as e:   # a bug: logged with its traceback, the worker goes on
            log.exception("API %s: unexpected error", req.task)
            self.reporter.job_finished("failed", reason="internal_error", source="api")
            ticket.future.set_exception(ApiFailed(500, "internal_error",
                                                  f"{type(e).__name__} (a bug; see the log)"))
            return
        processing = time.monotonic() - started
        self.reporter.job_finished(
            "succeeded", job_seconds=time.monotonic() - ticket.submitted,
            audio_seconds=result.audio_seconds, processing_seconds=processing, source="api")
        log.info("API %s done: %.1fs of %s audio in %.1fs", req.task, result.audio_seconds,
                 result.language, processing)
        ticket.future.set_result(result)

    def _timed(self, stage: str, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.reporter.stage_observed(stage, time.perf_counter() - t0)

    def _execute(self, ticket: Ticket) -> ApiResult:
        req = ticket.request
        audio = self._timed("decode", load_audio, req)
        seconds = len(audio) / stages.SAMPLE_RATE
        if ticket.cancelled:
            raise stages.Cancelled()
        try:
            use = self.model.use()
            model = use.__enter__()
        except Exception as e:
            raise StageError("model_load_failed",
                             f"model {self.model.name} failed to load: {e}") from None
        try:
            if req.task == "detect_language":
                decision = self._timed("transcribe", vote_language, model, audio)
                if decision.language == "unknown":
                    raise skip_policy.no_speech_in_upload()
                body, kind = api_render.detection(decision.language, decision.confidence)
                return ApiResult(body, kind, decision.language, seconds)
            transcript = self._timed("transcribe", self._transcribe, model, audio, ticket)
        finally:
            use.__exit__(None, None, None)
        if not transcript.words:
            raise skip_policy.no_speech_in_upload()
        body, kind = api_render.render(transcript, req.output, task=req.task,
                                       words=req.word_timestamps)
        return ApiResult(body, kind, transcript.language, seconds)

    def _transcribe(self, model, audio: np.ndarray, ticket: Ticket):
        req = ticket.request
        opts = dataclasses.replace(
            self.options, language=req.language or self.options.language, task=req.task,
            vad=self.options.vad if req.vad_filter is None else req.vad_filter, batch_size=0,
            initial_prompt=req.prompt,
            temperature=self.options.temperature if req.temperature is None else req.temperature)

        def run(safer: bool):
            return stages.transcribe(model, audio, opts, model_name=self.model.name, safer=safer,
                                     should_stop=lambda: ticket.cancelled)

        transcript = run(False)
        findings = check_transcript(transcript)
        if findings:   # the folder path's guard: one re-run with safer settings
            log.warning("suspect API transcript (%s): re-running with safer settings",
                        "; ".join(findings))
            self.reporter.suspect_transcript()
            transcript = run(True)
        return transcript


def load_audio(req: ApiRequest) -> np.ndarray:
    """The upload as 16 kHz mono float32. Raw PCM is taken as it is (s16le, what
    whisper-asr-webservice's encode=false means); anything else is decoded like a watched
    file, its damage named by the same reason codes."""
    if req.length == 0:
        raise StageError("empty_file", "the upload is empty")
    if req.raw_pcm:
        if req.length % 2:
            raise StageError("decode_error", f"raw PCM (encode=false) is 16-bit samples, but "
                                             f"the upload has an odd size ({req.length} bytes)")
        with open(req.path, "rb") as f:
            f.seek(req.offset)
            data = f.read(req.length)
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    path = Path(req.path)
    part = None
    if req.offset or req.length != path.stat().st_size:
        # The media part alone, in a file of its own: PyAV reads containers from files.
        fd, part = tempfile.mkstemp(prefix=".api-", suffix=".media", dir=path.parent)
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            src.seek(req.offset)
            _copy(src, out, req.length)
        path = Path(part)
    try:
        media.probe(path)
        return media.decode(path)
    except (StageError, SkipJob) as e:
        # Messages name the file: here a spool file nobody knows, so "upload".
        e.message = e.message.replace(str(path), "upload")
        raise
    finally:
        if part:
            os.unlink(part)


def _copy(src, dst, length: int) -> None:
    left = length
    while left > 0:
        chunk = src.read(min(left, 1 << 20))
        if not chunk:
            break
        dst.write(chunk)
        left -= len(chunk)

