"""The HTTP transcription API's side of the contract (re-exported by `contract`): the exporter
spools an upload and submits an `ApiRequest` to the daemon's `ApiQueue`; a worker runs it ahead
of the folder backlog and answers with an `ApiResult` or `ApiFailed`."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Protocol

from ..contract import Reason

# -- the HTTP transcription API: the exporter submits, the daemon's workers run ---------------
# The answer formats: whisper-asr-webservice's `output` (Bazarr) and OpenAI's `response_format`.
API_OUTPUTS = ("srt", "vtt", "txt", "json", "tsv", "text", "verbose_json")
API_TASKS = ("transcribe", "translate", "detect_language")

# Requests refused before any job runs; the HTTP status is the `code` label, these the log's and
# the error body's name for it. Jobs that run and fail carry a FAILURES code instead.
API_REJECTIONS: tuple[Reason, ...] = (
    Reason("bad_request", None, False, "a missing upload field or a bad parameter (400)"),
    Reason("unauthorized", None, False, "no valid basic-auth user or bearer token (401)"),
    Reason("length_required", None, False, "an upload without Content-Length (411)"),
    Reason("upload_too_large", None, False, "Content-Length over `api_max_upload_bytes`, "
           "refused before the body is read (413)"),
    Reason("busy", None, False, "no worker took the request within `api_max_wait_seconds` "
           "(503, with Retry-After)"),
)


@dataclasses.dataclass(frozen=True)
class ApiRequest:
    """One upload to transcribe. The server spooled the body to `path`; the audio is the
    `length` bytes at `offset` (a multipart part): raw s16le 16 kHz mono PCM when `raw_pcm`
    (whisper-asr-webservice's encode=false, what Bazarr sends), else any media file."""
    path: str
    offset: int
    length: int
    raw_pcm: bool
    task: str = "transcribe"               # one of API_TASKS
    output: str = "srt"                    # one of API_OUTPUTS
    language: str | None = None            # Whisper code; None: detect
    word_timestamps: bool = False          # words in the json / verbose_json answer
    vad_filter: bool | None = None         # None: the daemon's `vad` setting
    prompt: str | None = None
    temperature: float | None = None


@dataclasses.dataclass(frozen=True)
class ApiResult:
    body: bytes
    content_type: str
    language: str                           # Whisper code
    audio_seconds: float


class ApiFailed(Exception):
    """The request ran (or was refused) and has no answer: `status` for HTTP, `reason` from
    FAILURES, SKIPS or API_REJECTIONS, `message` one line for people."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.retry_after = retry_after


class ApiTicket(Protocol):
    """A submitted request: `future` (concurrent.futures) ends with an ApiResult or ApiFailed;
    `cancel()` withdraws it (the client hung up): before it starts, or at the next segment."""
    future: "concurrent.futures.Future[ApiResult]"

    def cancel(self) -> None: ...


class ApiQueue(Protocol):
    max_wait_seconds: float

    def submit(self, request: ApiRequest) -> ApiTicket:
        """Queue `request` ahead of the folder backlog. When no worker takes it within
        `max_wait_seconds`, its future fails with ApiFailed(503, "busy")."""
