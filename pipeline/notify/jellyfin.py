"""Jellyfin and Emby: "these files changed", for the subtitle's folder.

Jellyfin: `POST /Library/Media/Updated` with `{"Updates": [{"Path", "UpdateType"}]}` and
`Authorization: MediaBrowser Token="<api key>"` answers 204 and rescans what holds the path
(after its LibraryMonitorDelay). Emby has the same operation under `/emby` with `X-Emby-Token`
and answers 200. Facts and sources: docs/dev/integration-facts.md, sections 4 and "Emby".
"""

from __future__ import annotations

import json
from typing import Sequence

from ..job import Job
from . import http
from .paths import PathMap
from .targets import subtitle_folders


class JellyfinTarget:
    batch = True

    def __init__(self, url: str, token: str, path_map: PathMap, *, emby: bool = False):
        self.name = "emby" if emby else "jellyfin"
        base = url.rstrip("/")
        # Emby's API lives under /emby; Jellyfin 12 dropped that alias, so it gets none.
        self.url = base + ("/emby" if emby and not base.endswith("/emby") else "") \
            + "/Library/Media/Updated"
        # Jellyfin 12 accepts only the Authorization header (the X-Emby-* ones are legacy);
        # Emby documents X-Emby-Token for API keys.
        self.auth = ({"X-Emby-Token": token} if emby
                     else {"Authorization": f'MediaBrowser Token="{token}"'})
        self.path_map = path_map

    def items(self, job: Job) -> list[str]:
        return subtitle_folders(job, self.path_map.folder)

    def requests(self, items: Sequence[str]) -> list[tuple[object, int]]:
        # One request names every folder of the batch: the body is a list.
        return [(tuple(items), len(items))]

    def send(self, folders: tuple[str, ...]) -> None:
        # UpdateType is documented as Created/Modified/Deleted; the server treats all alike.
        body = {"Updates": [{"Path": f, "UpdateType": "Modified"} for f in folders]}
        http.request("POST", self.url, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json", **self.auth})
