"""Sonarr's and Radarr's Connect webhooks: `POST /hooks/sonarr`, `POST /hooks/radarr`
(docs/integrations.md). Behind the API's auth (basic auth: the webhook's Username/Password
fields; a bearer token: a custom `Authorization: Bearer …` header).

The body (JSON, a few KB) is read into memory up to MAX_BODY_BYTES and refused with a 413
before it is read when its Content-Length says more; what it means is the pipeline's
(`contract.ArrHooks`, pipeline/arr/), called on the server's pool (it stats, hashes and renames
files, and writes the store). Every request is counted by app, event and outcome.
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from ..pipeline.contract import ArrHooks, HookAnswer
from .protocol import Request, Response

log = logging.getLogger(__name__)

ROUTES = {"/hooks/sonarr": "sonarr", "/hooks/radarr": "radarr"}
# A Download with a season's worth of episodes and their images is tens of KB; a megabyte is
# far above any real payload and still nothing to hold in memory.
MAX_BODY_BYTES = 1024 * 1024


class Body:
    """A webhook's JSON on its way into memory (protocol.BodySink)."""

    def __init__(self):
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def finish(self) -> None: ...

    def discard(self) -> None:
        self.data = bytearray()


class ArrWebhookRoutes:
    def __init__(self, hooks: ArrHooks, record: Callable[[str, str, str], None]):
        self.hooks = hooks
        self.record = record        # (app, event, outcome) -> scribewatch_arr_webhooks_total

    def accept_body(self, request: Request, app: str) -> Response | Body:
        """Take the body, or refuse it before reading a byte of it."""
        if "transfer-encoding" in request.headers:
            return self.refuse(app, 411, "bad_request", "send the body with a Content-Length")
        try:
            length = int(request.headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            return self.refuse(app, 400, "bad_request", "a bad Content-Length")
        if length > MAX_BODY_BYTES:
            return self.refuse(app, 413, "bad_request", f"the body is {length} bytes; a "
                                                        f"webhook is at most {MAX_BODY_BYTES}")
        return Body()

    def refuse(self, app: str, status: int, outcome: str, message: str) -> Response:
        log.warning("%s webhook answered %d: %s", app, status, message)
        self.record(app, "unknown", outcome)
        return _json(status, {"error": message})

    def unauthorized(self, app: str) -> None:
        self.record(app, "unknown", "unauthorized")

    async def handle(self, request: Request, app: str, loop, pool) -> Response:
        body = request.body
        if body is None or not body.data:
            return self.refuse(app, 400, "bad_request", "expected a JSON body")
        try:
            doc = json.loads(bytes(body.data))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return self.refuse(app, 400, "bad_request", f"the body is not JSON: {e}")
        answer: HookAnswer = await loop.run_in_executor(pool, self.hooks.handle, app, doc)
        self.record(app, answer.event, answer.outcome)
        return _json(answer.status, answer.body)


def _json(status: int, doc: dict) -> Response:
    return Response(status, json.dumps(doc).encode() + b"\n", "application/json")
