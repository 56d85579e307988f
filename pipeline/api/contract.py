"""The HTTP transcription API's side of the contract (re-exported by `contract`): the exporter
spools an upload and submits an `ApiRequest` to the daemon's `ApiQueue`; a worker runs it ahead
of the folder backlog and answers with an `ApiResult` or `ApiFailed`."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Protocol

from ..subtitles.formats import ASR, OPENAI, api_outputs

# -- the HTTP transcription API: the exporter submits, the daemon's workers run ---------------
# The answer formats (subtitles/formats.py): whisper-asr-webservice's `output` (Bazarr) and
# OpenAI's `response_format`.
ASR_OUTPUTS = api_outputs(ASR)
OPENAI_OUTPUTS = api_outputs(OPENAI)
API_OUTPUTS = tuple(dict.fromkeys(ASR_OUTPUTS + OPENAI_OUTPUTS))
API_TASKS = ("transcribe", "translate", "detect_language")

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
    endpoint: str = ""                     # the `endpoint` label (web/api.py ROUTES)
    audio_sha256: str | None = None        # None: the queue hashes the audio part itself


@dataclasses.dataclass(frozen=True)
class ApiResult:
    body: bytes
    content_type: str
    language: str                           # Whisper code
    audio_seconds: float


class ApiFailed(Exception):
    """The request ran (or was refused) and has no answer: `status` for HTTP, `reason` from
    FAILURES, SKIPS or API_REJECTIONS (contract.py), `message` one line for people."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.retry_after = retry_after


class ApiTicket(Protocol):
    """A submitted request: `future` (concurrent.futures) ends with an ApiResult or ApiFailed;
    `cancel()` withdraws it (the client hung up): its job is withdrawn before it starts, or
    stopped at the next segment, unless other requests wait for the same answer.
    `took_upload`: the request's job keeps the spooled upload (and deletes it when done)."""
    future: "concurrent.futures.Future[ApiResult]"
    took_upload: bool

    def cancel(self) -> None: ...


class ApiQueue(Protocol):
    max_wait_seconds: float
    spool_dir: str | None       # where uploads are spooled (beside the store)

    def submit(self, request: ApiRequest) -> ApiTicket:
        """Answer `request` from the answers kept, or join the job in flight for the same
        answer, or queue a job ahead of the folder backlog. Blocking (the store): call it off
        the event loop. When no worker takes a new job within `max_wait_seconds`, its future
        fails with ApiFailed(503, "busy")."""
