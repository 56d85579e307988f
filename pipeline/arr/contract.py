"""What the web app and the pipeline share about Sonarr's and Radarr's webhooks: the bounded
labels of scribewatch_arr_webhooks_total, the answer, and `ArrHooks` (implemented by
`webhooks.ArrWebhooks`, called by web/hooks.py). Re-exported by `pipeline/contract.py`, the
only module the web app imports.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

# Sonarr and Radarr Connect webhooks (pipeline/arr/, web/hooks.py): the app (the route), the
# event (`import`: a Download that is no upgrade; `other`: Grab, Health, … taken and ignored;
# `unknown`: a body not read (401) or not readable (400))
# and what became of the request — bounded labels of scribewatch_arr_webhooks_total.
ARR_APPS = ("sonarr", "radarr")
ARR_EVENTS = ("test", "import", "upgrade", "rename", "other", "unknown")
# queued: a new job ahead of the backlog; promoted: its job was waiting (or running) already;
# done: that content was transcribed or skipped before; skipped: the skip policy (a subtitle
# there); renamed: subtitles moved; ignored: nothing to do; outside_libraries: a path under
# no watched folder (422); missing: no such file on this node (422); bad_request: not a
# webhook we can read (400); unauthorized: 401; unavailable: the job store is away (503).
ARR_OUTCOMES = ("ok", "queued", "promoted", "done", "skipped", "renamed", "ignored",
                "outside_libraries", "missing", "bad_request", "unauthorized", "unavailable")


@dataclasses.dataclass(frozen=True)
class HookAnswer:
    status: int            # the HTTP status
    event: str             # ARR_EVENTS
    outcome: str           # ARR_OUTCOMES: the request's, the most telling of its files'
    body: dict             # the JSON answer: one entry per file, for people


class ArrHooks(Protocol):
    def handle(self, app: str, payload) -> HookAnswer:
        """A webhook from `app` (ARR_APPS), its JSON already parsed (any JSON value). Never
        raises for a payload it cannot read: a 400 answer says why."""
