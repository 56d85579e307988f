"""Webhook: a JSON POST per finished job to each `on_finished` URL, signed when a secret is set.

`X-Scribewatch-Signature: sha256=<hex>` is HMAC-SHA256 of the raw body under `webhook_secret`
(the receiver recomputes it over the bytes it got, before parsing them). A retried delivery
keeps its body and its `X-Scribewatch-Delivery` id, so a receiver can ignore a repeat.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import uuid
from typing import Sequence

from ..contract import STAGES
from ..job import Job
from . import http
from .paths import PathMap

EVENT = "job.finished"
SIGNATURE_HEADER = "X-Scribewatch-Signature"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _iso(unix: float | None) -> str | None:
    if unix is None:
        return None
    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).isoformat()


def payload(job: Job, path_map: PathMap) -> dict:
    """The body's fields (docs/integrations.md, "Webhooks")."""
    def between(a, b):
        return round(b - a, 3) if a is not None and b is not None else None

    durations = {s: round(job.stage_seconds[s], 3) for s in STAGES if s in job.stage_seconds}
    durations["queue_wait"] = between(job.detected_at, job.started_at)
    durations["total"] = between(job.detected_at, job.finished_at)
    return {
        "event": EVENT,
        "id": job.id,
        "path": path_map(job.path),          # as the media server sees it
        "daemon_path": job.path,
        "status": job.status,                # succeeded | failed | skipped
        "reason": job.reason,                # a code of the README's "Bad input" tables
        "stage": job.error_stage if job.status == "failed" else None,
        "message": job.error_message,
        "language": job.language,
        "outputs": [path_map(o) for o in job.outputs],
        "audio_seconds": job.audio_seconds,
        "attempts": job.attempts,
        "durations": durations,
        "detected_at": _iso(job.detected_at),
        "finished_at": _iso(job.finished_at),
    }


class WebhookTarget:
    name = "webhook"
    batch = False

    def __init__(self, url: str, path_map: PathMap, *, secret: str | None = None):
        self.url, self.path_map, self.secret = url, path_map, secret
        self.shown = http.shown_url(url, secret_path=True)   # its path may be the secret

    def items(self, job: Job) -> list[bytes]:
        return [json.dumps(payload(job, self.path_map), separators=(",", ":")).encode()]

    def requests(self, items: Sequence[bytes]) -> list[tuple[object, int]]:
        # The delivery id is made once per request, so a retry sends the same one.
        return [((body, str(uuid.uuid4())), 1) for body in items]

    def send(self, request: tuple[bytes, str]) -> None:
        body, delivery = request
        headers = {"Content-Type": "application/json", "X-Scribewatch-Event": EVENT,
                   "X-Scribewatch-Delivery": delivery}
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        http.request("POST", self.url, body=body, headers=headers, secret_path=True)
