"""Path mapping: where a file the daemon sees is for the media server (their mounts differ)."""

from __future__ import annotations

import posixpath
from typing import Mapping


class PathMap:
    """`{"/data/movies": "/mnt/movies"}`: the longest daemon-side prefix that holds the path
    (whole folder names only: `/data/movies` does not hold `/data/movies2`) is replaced. A
    server-side folder written with backslashes (Plex on Windows, `D:\\Movies`) gets the rest
    of the path with backslashes too. A path under no prefix is left as it is."""

    def __init__(self, mapping: Mapping[str, str] | None = None):
        pairs = [(posixpath.normpath(src), dst) for src, dst in (mapping or {}).items()]
        self._pairs = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)

    def __call__(self, path: str) -> str:
        path = posixpath.normpath(path)
        for src, dst in self._pairs:
            if path == src:
                return dst
            prefix = src if src.endswith("/") else src + "/"
            if path.startswith(prefix):
                rest = path[len(prefix):]
                sep = "\\" if "\\" in dst and "/" not in dst else "/"
                return dst.rstrip(sep) + sep + rest.replace("/", sep)
        return path

    def local(self, path: str) -> str:
        """The other way: a path as the server (or Sonarr, Radarr) gives it, on this node. The
        longest server-side folder that holds it is replaced (a Windows one, `D:\\TV`, matched
        without regard to case or slash direction). A path under none is left as it is."""
        posix = path.replace("\\", "/")
        windows = "\\" in path or (len(path) > 1 and path[1] == ":")
        for src, dst in sorted(self._pairs, key=lambda pair: len(pair[1]), reverse=True):
            folder = dst.replace("\\", "/").rstrip("/")
            here, there = (posix.lower(), folder.lower()) if windows else (posix, folder)
            if here == there:
                return src
            if here.startswith(there + "/"):
                return posixpath.join(src, posixpath.normpath(posix[len(folder) + 1:]))
        return posixpath.normpath(path)

    def folder(self, path: str) -> str:
        """The mapped folder a file is in."""
        return self(posixpath.dirname(posixpath.normpath(path)))
