"""Plex: a partial scan of the subtitle's folder in its library section.

`GET /library/sections/{id}/refresh?path=<folder>` with the `X-Plex-Token` header scans just
that folder. Without a configured section the one whose location holds the folder is looked up
in `GET /library/sections` (JSON with `Accept: application/json`; XML otherwise, also read).
Facts and sources: docs/dev/integration-facts.md, section 5.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Sequence

from ..job import Job
from . import http
from .paths import PathMap
from .targets import subtitle_folders

log = logging.getLogger(__name__)

# A library added on the server is found again after this long (or at once, on a miss).
SECTIONS_MAX_AGE_SECONDS = 600.0
SECTIONS_MIN_AGE_SECONDS = 30.0   # ... but a folder in no library does not ask every time


class PlexTarget:
    name = key = "plex"
    batch = True

    def __init__(self, url: str, token: str, path_map: PathMap, *, section: str | None = None):
        self.base = url.rstrip("/")
        self.headers = {"X-Plex-Token": token, "Accept": "application/json",
                        "X-Plex-Product": "scribewatch", "X-Plex-Client-Identifier": "scribewatch"}
        self.path_map = path_map
        self.section = section
        self._sections: list[tuple[str, str]] = []     # (location, key), longest first
        self._fetched_at: float | None = None

    def items(self, job: Job) -> list[str]:
        return subtitle_folders(job, self.path_map.folder)

    def requests(self, items: Sequence[str]) -> list[tuple[object, list[str]]]:
        return [(folder, [folder]) for folder in items]       # one scan per folder

    def send(self, folder: str) -> None:
        section = self.section or self.section_of(folder)
        query = urllib.parse.urlencode({"path": folder}, quote_via=urllib.parse.quote_plus)
        http.request("GET", f"{self.base}/library/sections/{section}/refresh?{query}",
                     headers=self.headers)

    def check(self, folders: Sequence[str]) -> str:
        """`scribewatch check`: the token works, and each (mapped) watch folder is in a library,
        or holds some. Raises http.DeliveryError."""
        self._fetch_sections()
        if not self.section:
            for folder in folders:
                inside = [loc for loc, _ in self._sections
                          if loc.rstrip("/").startswith(folder.rstrip("/") + "/")]
                if _holder(self._sections, folder) is None and not inside:
                    raise http.DeliveryError(
                        f"watch folder {folder} (as Plex sees it) is in no Plex library: "
                        f"{', '.join(loc for loc, _ in self._sections) or 'none'}; check "
                        "path_map or set plex_section", retry=False)
        return f"plex answers with {len(self._sections)} library folder(s)"

    # -- finding the section -------------------------------------------------------------------
    def section_of(self, folder: str) -> str:
        age = None if self._fetched_at is None else time.monotonic() - self._fetched_at
        if age is None or age > SECTIONS_MAX_AGE_SECONDS:
            self._fetch_sections()
        key = _holder(self._sections, folder)
        if key is None and age is not None and age > SECTIONS_MIN_AGE_SECONDS:
            self._fetch_sections()          # a library added since: look again, once
            key = _holder(self._sections, folder)
        if key is None:
            raise http.DeliveryError(
                f"no Plex library holds {folder} (locations: "
                f"{', '.join(loc for loc, _ in self._sections) or 'none'}); check path_map or "
                "set plex_section", retry=False)
        return key

    def _fetch_sections(self) -> None:
        answer = http.request("GET", f"{self.base}/library/sections", headers=self.headers)
        try:
            sections = parse_sections(answer.body)
        except (ValueError, TypeError, AttributeError, ET.ParseError) as e:
            # not Plex's answer (a proxy's login page?): the same next time
            raise http.DeliveryError(f"GET {self.base}/library/sections: not a library list "
                                     f"({type(e).__name__}: {e})", retry=False) from None
        self._sections = sorted(sections, key=lambda s: len(s[0]), reverse=True)
        self._fetched_at = time.monotonic()
        log.debug("Plex library sections: %s", self._sections)


def parse_sections(body: bytes) -> list[tuple[str, str]]:
    """(location path, section key) of every library, from JSON or XML."""
    text = body.strip()
    if text.startswith(b"{"):
        directories = json.loads(text).get("MediaContainer", {}).get("Directory", [])
        return [(loc["path"], str(d["key"])) for d in directories
                for loc in d.get("Location", []) if "path" in loc and "key" in d]
    root = ET.fromstring(text)
    return [(loc.get("path"), d.get("key")) for d in root.iter("Directory")
            for loc in d.iter("Location") if loc.get("path") and d.get("key")]


def _holder(sections: list[tuple[str, str]], folder: str) -> str | None:
    for location, key in sections:      # longest first
        sep = "\\" if "\\" in location and "/" not in location else "/"
        if folder == location or folder.startswith(location.rstrip(sep) + sep):
            return key
    return None
