"""Jellyfin and Emby: "this media file changed", for each file that got a new subtitle.

Jellyfin: `POST /Library/Media/Updated` with `{"Updates": [{"Path", "UpdateType"}]}` and
`Authorization: MediaBrowser Token="<api key>"` answers 204; after its LibraryMonitorDelay the
server refreshes the item at each path (the nearest one above it when the path is no item).
Emby has the same operation under `/emby` with `X-Emby-Token` and answers 200. Facts and
sources: docs/dev/integration-facts.md, section 4 and "Emby".

The path sent is the media file's, not the subtitle's or its folder's: a subtitle file is no
library item, and neither is a film's own folder, so either would be walked up to the library's
root folder and rescan the whole library (Jellyfin's LibraryMonitor.GetAffectedBaseItem); the
video's path refreshes just that item, which picks up its new sidecar subtitle.
"""

from __future__ import annotations

import json
from typing import Sequence

from ..job import Job
from . import http
from .paths import PathMap


class JellyfinTarget:
    batch = True

    def __init__(self, url: str, token: str, path_map: PathMap, *, emby: bool = False):
        self.name = self.key = "emby" if emby else "jellyfin"
        base = url.rstrip("/")
        # Emby's API lives under /emby; Jellyfin 12 dropped that alias, so it gets none.
        self.url = base + ("/emby" if emby and not base.endswith("/emby") else "") \
            + "/Library/Media/Updated"
        # Jellyfin 12 accepts only the Authorization header (the X-Emby-* ones are legacy);
        # Emby documents X-Emby-Token for API keys.
        self.auth = ({"X-Emby-Token": token} if emby
                     else {"Authorization": f'MediaBrowser Token="{token}"'})
        self.path_map = path_map
        self.info_url = self.url.removesuffix("/Library/Media/Updated") + "/System/Info"

    def items(self, job: Job) -> list[str]:
        # Only a written subtitle is news to the server.
        return [self.path_map(job.path)] if job.status == "succeeded" and job.outputs else []

    def requests(self, items: Sequence[str]) -> list[tuple[object, list[str]]]:
        # The body is a list: one request carries every file of the batch window.
        return [(tuple(items), list(items))]

    def check(self, folders: Sequence[str]) -> str:
        """`scribewatch check`: the server answers and takes the key (GET /System/Info needs
        it), without asking for any refresh. Raises http.DeliveryError."""
        info = json.loads(http.request("GET", self.info_url, headers=self.auth).body or b"{}")
        return (f"{self.name} {info.get('ServerName', '?')} {info.get('Version', '?')} "
                "accepts the token")

    def send(self, paths: tuple[str, ...]) -> None:
        # UpdateType is documented as Created/Modified/Deleted; the server treats all alike.
        body = {"Updates": [{"Path": p, "UpdateType": "Modified"} for p in paths]}
        http.request("POST", self.url, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json", **self.auth})
