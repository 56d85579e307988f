"""Webhook: a JSON POST per finished job to each `on_finished` URL, signed when a secret is set.

`X-Scribewatch-Signature: sha256=<hex>` is HMAC-SHA256 of the raw body under `webhook_secret`
(the receiver recomputes it over the bytes it got, before parsing them). A retried delivery
keeps its body and its `X-Scribewatch-Delivery` id (made from the body, so a delivery sent again
after a restart keeps it too), so a receiver can ignore a repeat.
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


def delivery_id(body: bytes) -> str:
    """The same for every attempt of one delivery, across restarts and nodes: the body names
    the job and its finish time, so two deliveries never share it."""
    return str(uuid.UUID(bytes=hashlib.sha256(body).digest()[:16], version=4))


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
        # Several webhook URLs: each its own rows in the outbox (the URL itself, a secret,
        # is not stored).
        self.key = "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]
        self.shown = http.shown_url(url, secret_path=True)   # its path may be the secret

    def items(self, job: Job) -> list[str]:
        return [json.dumps(payload(job, self.path_map), separators=(",", ":"))]

    def requests(self, items: Sequence[str]) -> list[tuple[object, list[str]]]:
        return [(body, [body]) for body in items]       # one POST per finished job

    def send(self, text: str) -> None:
        body = text.encode()
        delivery = delivery_id(body)
        headers = {"Content-Type": "application/json", "X-Scribewatch-Event": EVENT,
                   "X-Scribewatch-Delivery": delivery}
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        http.request("POST", self.url, body=body, headers=headers, secret_path=True)
