"""Dockerfiles and .dockerignore read the way `docker build` reads them, for static checks."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from tests.harness import REPO


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def dockerignored(rel: str) -> bool:
    """Docker's .dockerignore semantics, simplified: the last matching pattern wins."""
    ignored = False
    ignore_file = REPO / ".dockerignore"
    if not ignore_file.exists():
        return False
    for raw in ignore_file.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [rel] + [str(Path(*Path(rel).parts[:i]))
                              for i in range(1, len(Path(rel).parts))]
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.replace("**/", ""))
               for c in candidates):
            ignored = not negate
    return ignored
