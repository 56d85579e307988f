"""Requests of the HTTP transcription API: jobs in the store, run by the daemon's workers
ahead of the folder queue, their answers kept by content.

The web server spools an upload into `spool_dir` (beside the store, never a watch folder) and
`submit`s it here (`contract.ApiQueue`). The request's answer key (answer_key.py) is looked up
in the store: a kept answer is sent back at once, without a worker; a job in flight for the
same key, on this node or another one, is joined (the store's unique active key is where they
meet); otherwise a queued job of source `api` takes the spooled upload. Each worker asks
`run_next()` before it claims a folder job, so a request never waits behind a queued file,
however long; with every worker in the middle of a file, a new job waits for the first one to
finish, at most `max_wait_seconds`, then fails as `busy` (503 with Retry-After).
`api_workers` reserves workers for the API alone.

A job survives the daemon: one killed while it waited or ran is run again after the restart
(`recover_after_crash` queues it again) and its answer kept, so the client's retry finds it.
The upload goes when its job ends; what a kill leaves behind is removed at the next start.
A client that hangs up withdraws its job (before it starts, or at its next segment) only when
no other request waits for the same answer.
"""

from __future__ import annotations

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

from .. import skip_policy, stages
from ..contract import ApiFailed, ApiRequest, ApiResult, NullReporter, Reporter
from ..errors import SkipJob, StageError
from ..guards import check_transcript
from ..job import Job
from ..language.codes import WHISPER_CODES
from ..language.vote import vote_language
from ..media.reader import decode, probe
from ..store import StoreUnavailable
from ..store.api_jobs import StoredAnswer
from . import render as api_render
from .answer_key import answer_key, audio_digest, detection_key

log = logging.getLogger(__name__)

# Failures of the upload itself: the client sent something we cannot use; a 5xx makes Bazarr
# and the OpenAI SDK send the same bytes again for nothing.
_CLIENT_REASONS = {"empty_file", "not_media", "corrupt_container", "no_audio_stream",
                   "decode_error", "timestamp_jump", "vanished"}
POLL_SECONDS = 0.2   # how often a request waiting for another process's job looks at it
_REQUEST_FIELDS = ("offset", "length", "raw_pcm", "task", "output", "language",
                   "word_timestamps", "vad_filter", "prompt", "temperature", "endpoint",
                   "audio_sha256")


def http_status(reason: str) -> int:
    if reason in _CLIENT_REASONS:
        return 400
    return 503 if reason in ("model_load_failed", "busy", "cancelled") else 500


def stored_request(request: ApiRequest) -> dict:
    """What a job keeps of its request: enough to run it after a restart."""
    return {"spool": request.path, **{k: getattr(request, k) for k in _REQUEST_FIELDS}}


def request_of(job: Job) -> ApiRequest:
    fields = dict(job.api_request or {})
    return ApiRequest(path=fields.pop("spool"), **fields)


@dataclasses.dataclass(eq=False)
class Ticket:
    """One submitted request (contract.ApiTicket)."""
    request: ApiRequest
    key: str = ""
    future: concurrent.futures.Future = dataclasses.field(
        default_factory=concurrent.futures.Future)
    submitted: float = dataclasses.field(default_factory=time.monotonic)
    took_upload: bool = False
    on_cancel: Callable[["Ticket"], None] | None = None

    def cancel(self) -> None:
        self.future.cancel()
        if self.on_cancel:
            self.on_cancel(self)

    @property
    def cancelled(self) -> bool:
        return self.future.cancelled()


@dataclasses.dataclass(eq=False)
class Flight:
    """A job in the store and this process's requests waiting for its answer."""
    job_id: int
    key: str
    tickets: list[Ticket] = dataclasses.field(default_factory=list)
    owner: Ticket | None = None      # the request that made the job (its own row)
    spool: str | None = None         # its upload, this process's to delete when it ends
    local: bool = True               # run by this process (else polled in the store)
    running: bool = False
    cancelled: bool = False          # its last client hung up: stop at the next segment
    timer: threading.Timer | None = None


@dataclasses.dataclass(frozen=True)
class AnswerBounds:
    """How much of the answers the store keeps (api_answers_max_bytes, …_max_age_seconds)."""
    max_bytes: int = 256 * 1024**2
    max_age_seconds: float = 30 * 86400.0


class ApiJobs:
    """The API's jobs (contract.ApiQueue) and what a worker does with one."""

    def __init__(self, model, options: stages.TranscribeOptions, *, store, spool_dir: str,
                 max_wait_seconds: float, notify: Callable[[], None],
                 reporter: Reporter | None = None, bounds: AnswerBounds = AnswerBounds(),
                 heartbeat_seconds: float = 10.0):
        self.model = model
        self.options = options
        self.store = store
        self.spool_dir = str(spool_dir)
        Path(self.spool_dir).mkdir(parents=True, exist_ok=True)
        self.max_wait_seconds = max_wait_seconds
        self.bounds = bounds
        self.heartbeat_seconds = heartbeat_seconds
        self.reporter: Reporter = reporter or NullReporter()
        self._notify = notify
        self._flights: dict[int, Flight] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._poller: threading.Thread | None = None
        self._created = time.time()
        self.running = 0

    # -- start: what a kill left behind --------------------------------------------------------
    def remove_orphans(self) -> list[str]:
        """Delete spooled uploads no active job of this node needs (a kill between two steps:
        after the spool, before the job; after the answer, before the delete). Only files from
        before this process: an upload arriving now is no orphan."""
        needed = self.store.active_api_spools()
        removed = []
        for entry in os.scandir(self.spool_dir):
            if (entry.is_file() and entry.path not in needed
                    and entry.stat().st_mtime < self._created):
                _unlink(entry.path)
                removed.append(entry.path)
        return removed

    # -- the server's side -----------------------------------------------------------------
    def key_for(self, request: ApiRequest) -> str:
        return answer_key(request.audio_sha256, request, model=self.model.name,
                          options=self.options)

    def submit(self, request: ApiRequest) -> Ticket:
        """Raises ApiFailed(400) for a language Whisper does not know."""
        if request.language and request.language not in WHISPER_CODES:
            raise ApiFailed(400, "bad_request", f"language={request.language!r}: not one of "
                                                "Whisper's language codes")
        if request.audio_sha256 is None:
            request = dataclasses.replace(request, audio_sha256=audio_digest(
                request.path, request.offset, request.length))
        ticket = Ticket(request, self.key_for(request), on_cancel=self._withdraw)
        if self._closed:
            ticket.future.set_exception(ApiFailed(503, "busy", "the daemon is stopping",
                                                  retry_after=30))
            return ticket
        try:
            found = self.store.submit_api_job(
                ticket.key, request.endpoint or request.task, stored_request(request),
                size=request.length, use_answer=self.bounds.max_bytes > 0)
        except StoreUnavailable as e:
            raise ApiFailed(503, "busy", f"the job store is unreachable: {e}",
                            retry_after=10) from None
        if found.answer is not None:
            log.info("API %s answered from the store (%s)", request.task, ticket.key[:12])
            self._answered(ticket, found.answer)
            return ticket
        job = found.job
        with self._lock:
            flight = self._flights.get(job.id)
            if flight is None:
                flight = self._flights[job.id] = Flight(
                    job.id, ticket.key, local=job.node == self.store.lease.node)
            flight.tickets.append(ticket)
            if found.created:
                flight.owner, flight.spool, ticket.took_upload = ticket, request.path, True
                flight.timer = threading.Timer(self.max_wait_seconds, self._expire, (flight,))
                flight.timer.daemon = True
                flight.timer.start()
        if found.created:
            self._notify()
        else:
            log.info("API %s joins job %d in flight for the same answer", request.task, job.id)
        self._start_poller()
        return ticket

    def _answered(self, ticket: Ticket, answer: StoredAnswer) -> None:
        """A request answered by another's transcription: a job row of its own, finished."""
        try:
            self.store.record_api_answered(ticket.key, ticket.request.endpoint or
                                           ticket.request.task, answer, ticket.request.length)
        except StoreUnavailable as e:
            log.warning("API answer not recorded in the store: %s", e)
        self.reporter.job_finished("succeeded", source="api")
        _resolve(ticket, ApiResult(answer.body, answer.content_type, answer.language,
                                   answer.audio_seconds))

    def _withdraw(self, ticket: Ticket) -> None:
        """The client hung up: its job goes too when nobody else waits for it."""
        with self._lock:
            flight = next((f for f in self._flights.values() if ticket in f.tickets), None)
            if flight is None:
                return
            flight.tickets.remove(ticket)
            if not flight.tickets and not flight.local:
                self._flights.pop(flight.job_id, None)   # the other node's job goes on
            if flight.tickets or not flight.local:
                return
            if flight.running:
                flight.cancelled = True      # the transcription sees it at its next segment
                return
        if self.store.withdraw_api_job(flight.job_id, "cancelled", "the client hung up"):
            log.info("API job %d withdrawn before it started: its client hung up",
                     flight.job_id)
            self._end(flight, ApiFailed(499, "cancelled", "the client hung up"))

    def _expire(self, flight: Flight) -> None:
        message = (f"every worker is busy; no worker took the request within "
                   f"{self.max_wait_seconds:g}s (api_max_wait_seconds)")
        try:
            withdrawn = self.store.withdraw_api_job(flight.job_id, "busy", message)
        except StoreUnavailable:
            withdrawn = False
        if withdrawn:
            log.warning("API request refused: no worker free within %.0fs [busy]",
                        self.max_wait_seconds)
            self._end(flight, ApiFailed(503, "busy", message,
                                        retry_after=max(1, round(self.max_wait_seconds))))

    def _end(self, flight: Flight, outcome: ApiResult | ApiFailed,
             answer: StoredAnswer | None = None) -> None:
        """The job is over: its upload deleted, every request waiting for it answered."""
        with self._lock:
            self._flights.pop(flight.job_id, None)
            tickets = list(flight.tickets)
        if flight.timer:
            flight.timer.cancel()
        if flight.spool:
            _unlink(flight.spool)
        for ticket in tickets:
            if answer is not None and ticket is not flight.owner:
                self._answered(ticket, answer)
            else:
                _resolve(ticket, outcome)

    def close(self) -> None:
        """Shutdown: the waiting requests get a 503; their jobs stay queued in the store and
        run after the restart (the client's retry then finds the answer kept)."""
        with self._lock:
            self._closed = True
            flights = list(self._flights.values())
        for flight in flights:
            if flight.timer:
                flight.timer.cancel()
            flight.cancelled = flight.running   # a running one goes back to the queue
            for ticket in flight.tickets:
                _resolve(ticket, ApiFailed(503, "busy", "the daemon is stopping",
                                           retry_after=30))

    @property
    def waiting(self) -> int:
        with self._lock:
            return sum(1 for f in self._flights.values() if f.local and not f.running)

    # -- requests waiting for a job another process runs -----------------------------------
    def _start_poller(self) -> None:
        with self._lock:
            if self._poller is not None:
                return
            self._poller = threading.Thread(target=self._poll, name="api-poller", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        """Settle flights whose job ended elsewhere (another node, or a worker that finished
        it between a request's lookup and its joining). Ends when no flight is left."""
        while True:
            time.sleep(POLL_SECONDS)
            with self._lock:
                if not self._flights or self._closed:
                    self._poller = None
                    return
                flights = [f for f in self._flights.values() if not f.running]
            for flight in flights:
                try:
                    self._settle_if_over(flight)
                except StoreUnavailable:
                    continue
                except Exception:   # never let the poller die: the requests would hang
                    log.exception("API job %d: reading its outcome failed", flight.job_id)

    def _settle_if_over(self, flight: Flight) -> None:
        job = self.store.get(flight.job_id)
        if job is None or job.status in ("queued", "running"):
            return
        answer = self.store.api_answer(flight.key) if job.status == "succeeded" else None
        if answer is not None:
            self._end(flight, ApiResult(answer.body, answer.content_type, answer.language,
                                        answer.audio_seconds), answer)
        elif job.status == "succeeded":   # kept nowhere (api_answers_max_bytes: 0): ask again
            self._end(flight, ApiFailed(503, "busy", "the answer was not kept; ask again",
                                        retry_after=1))
        else:
            reason = job.reason or "internal_error"
            status = 422 if job.status == "skipped" else http_status(reason)
            self._end(flight, ApiFailed(status, reason, job.error_message or reason,
                                        retry_after=1 if status == 503 else None))

    # -- the workers' side -----------------------------------------------------------------
    def run_next(self, worker: str = "api") -> bool:
        """Run the oldest queued API job of this node on this thread; False when none waits."""
        if self._closed:
            return False
        try:
            job = self.store.claim_next_api(worker)
        except StoreUnavailable:
            return False
        if job is None:
            return False
        with self._lock:
            flight = self._flights.get(job.id)
            if flight is None:   # queued before a restart: nobody waits, the answer is kept
                flight = self._flights[job.id] = Flight(job.id, job.answer_key)
            flight.spool = request_of(job).path
            flight.running, self.running = True, self.running + 1
        if flight.timer:
            flight.timer.cancel()
        beating = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(job, beating), daemon=True,
                                 name=f"api-lease-{job.id}")
        heart.start()
        try:
            self._run(job, flight)
        finally:
            beating.set()
            with self._lock:
                self.running -= 1
        return True

    def _heartbeat(self, job: Job, done: threading.Event) -> None:
        """Renew the job's lease while it runs, as a folder job's: a transcription longer than
        `lease_seconds` is not taken for a dead node's and queued again."""
        while not done.wait(self.heartbeat_seconds):
            try:
                if not self.store.renew(job.id, job.lease_token):
                    log.warning("API job %d: its lease is lost; its answer is still kept",
                                job.id)
                    return
            except StoreUnavailable:
                continue

    def _run(self, job: Job, flight: Flight) -> None:
        req, started = request_of(job), time.monotonic()
        log.info("API %s started (job %d, %s, %d bytes uploaded, waited %.2fs)", req.task,
                 job.id, "raw PCM" if req.raw_pcm else "media", req.length,
                 max(0.0, job.started_at - job.detected_at))
        stage_seconds: dict[str, float] = {}
        try:
            result = self._execute(req, flight, stage_seconds)
        except stages.Cancelled:
            if self._closed:   # a shutdown: it runs again after the restart
                self.store.requeue(job.id, token=job.lease_token, refund_attempt=True)
                log.info("API job %d queued again: the daemon is stopping", job.id)
                with self._lock:
                    self._flights.pop(job.id, None)
                return
            log.info("API %s cancelled: the client hung up", req.task)
            self._failed(job, flight, "failed", "cancelled", None, "the client hung up",
                         ApiFailed(499, "cancelled", "the client hung up"))
            return
        except SkipJob as skip:
            message = skip.message.replace(req.path, "upload")
            log.info("API %s: %s [%s]", req.task, message, skip.reason)
            self.reporter.job_finished("skipped", reason=skip.reason, source="api")
            self._failed(job, flight, "skipped", skip.reason, None, message,
                         ApiFailed(422, skip.reason, message))
            return
        except StageError as err:
            message = err.message.replace(req.path, "upload")
            log.warning("API %s failed: %s [%s/%s]", req.task, message, err.stage, err.reason)
            self.reporter.job_finished("failed", reason=err.reason, stage=err.stage,
                                       source="api")
            self._failed(job, flight, "failed", err.reason, err.stage, message,
                         ApiFailed(http_status(err.reason), err.reason, message))
            return
        except Exception as e:   # a bug: logged with its traceback, the worker goes on
            log.exception("API %s: unexpected error", req.task)
            self.reporter.job_finished("failed", reason="internal_error", source="api")
            message = f"{type(e).__name__} (a bug; see the log)"
            self._failed(job, flight, "failed", "internal_error", None, message,
                         ApiFailed(500, "internal_error", message))
            return
        processing = time.monotonic() - started
        answer = StoredAnswer(job.answer_key, result.body, result.content_type,
                              result.language, result.audio_seconds, job.id)
        try:
            evicted = self.store.finish_api_job(
                job, answer, max_bytes=self.bounds.max_bytes,
                max_age_seconds=self.bounds.max_age_seconds, token=job.lease_token,
                model=self.model.name, stage_seconds=stage_seconds)
            if evicted.age or evicted.bytes:
                log.info("API answers evicted: %d past api_answers_max_age_seconds, %d over "
                         "api_answers_max_bytes", evicted.age, evicted.bytes)
        except StoreUnavailable as e:   # the waiting clients still get it
            log.warning("API job %d: answer not stored: %s", job.id, e)
        self.reporter.job_finished(
            "succeeded", job_seconds=time.time() - job.detected_at,
            audio_seconds=result.audio_seconds, processing_seconds=processing, source="api")
        log.info("API %s done: %.1fs of %s audio in %.1fs", req.task, result.audio_seconds,
                 result.language, processing)
        self._end(flight, result, answer)

    def _failed(self, job: Job, flight: Flight, status: str, reason: str, stage: str | None,
                message: str, failure: ApiFailed) -> None:
        try:
            self.store.finish(job.id, status, reason=reason, stage=stage, message=message,
                              token=job.lease_token)
        except StoreUnavailable as e:
            log.warning("API job %d: outcome not stored: %s", job.id, e)
        self._end(flight, failure)

    def _execute(self, req: ApiRequest, flight: Flight, stage_seconds: dict) -> ApiResult:
        def timed(stage: str, fn, *args):
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                took = time.perf_counter() - t0
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + took
                self.reporter.stage_observed(stage, took)

        audio = timed("decode", load_audio, req)
        seconds = len(audio) / stages.SAMPLE_RATE
        if flight.cancelled:
            raise stages.Cancelled()
        if req.task != "detect_language" and req.language is None:
            req = self._decided_language(req)
        try:
            use = self.model.use()
            model = use.__enter__()
        except Exception as e:
            raise StageError("model_load_failed",
                             f"model {self.model.name} failed to load: {e}") from None
        try:
            if req.task == "detect_language":
                decision = timed("transcribe", vote_language, model, audio)
                if decision.language == "unknown":
                    raise skip_policy.no_speech_in_upload()
                body, kind = api_render.detection(decision.language, decision.confidence)
                return ApiResult(body, kind, decision.language, seconds)
            transcript = timed("transcribe", self._transcribe, model, audio, req, flight)
        finally:
            use.__exit__(None, None, None)
        if not transcript.words:
            raise skip_policy.no_speech_in_upload()
        body, kind = api_render.render(transcript, req.output, task=req.task,
                                       words=req.word_timestamps)
        return ApiResult(body, kind, transcript.language, seconds)

    def _decided_language(self, req: ApiRequest) -> ApiRequest:
        """Bazarr asks `/detect-language` before `/asr` on the same audio: the decision kept
        for it is this transcription's language, not a second detection."""
        key = detection_key(req.audio_sha256, req.raw_pcm, model=self.model.name,
                            options=self.options)
        try:
            found = self.store.api_answer(key) if req.audio_sha256 else None
        except StoreUnavailable:
            found = None
        if found is None:
            return req
        log.info("API %s: language %s from the earlier /detect-language on this audio",
                 req.task, found.language)
        return dataclasses.replace(req, language=found.language)

    def _transcribe(self, model, audio: np.ndarray, req: ApiRequest, flight: Flight):
        opts = dataclasses.replace(
            self.options, language=req.language or self.options.language, task=req.task,
            vad=self.options.vad if req.vad_filter is None else req.vad_filter, batch_size=0,
            initial_prompt=req.prompt,
            temperature=self.options.temperature if req.temperature is None else req.temperature)

        def run(safer: bool):
            return stages.transcribe(model, audio, opts, model_name=self.model.name, safer=safer,
                                     should_stop=lambda: flight.cancelled)

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
        probe(path)
        return decode(path)
    except (StageError, SkipJob) as e:
        # Messages name the file: here a spool file nobody knows, so "upload".
        e.message = e.message.replace(str(path), "upload")
        raise
    finally:
        if part:
            os.unlink(part)


def _resolve(ticket: Ticket, outcome: ApiResult | ApiFailed) -> None:
    try:
        if isinstance(outcome, ApiFailed):
            ticket.future.set_exception(outcome)
        else:
            ticket.future.set_result(outcome)
    except concurrent.futures.InvalidStateError:
        pass   # withdrawn (its client hung up), or answered already (a shutdown)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _copy(src, dst, length: int) -> None:
    left = length
    while left > 0:
        chunk = src.read(min(left, 1 << 20))
        if not chunk:
            break
        dst.write(chunk)
        left -= len(chunk)

