"""Libraries: the watched roots by name, and a file's key in the store.

A job is keyed by (library, path below the library's folder). Each node maps the name to its own
mount (`libraries: {movies: /mnt/nas/movies}` on one, `/data/movies` on another), so both see one
job per file and each runs it at its own path. A plain `watch_dirs` folder is a library named by
its resolved path: on one machine that keys a file by its path, as before libraries existed.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .job import Job


@dataclasses.dataclass(frozen=True)
class Libraries:
    folders: dict[str, str]   # library name -> this node's resolved folder

    @classmethod
    def from_config(cls, cfg) -> "Libraries":
        folders = {str(Path(d).resolve()): str(Path(d).resolve()) for d in cfg.watch_dirs}
        folders.update({name: str(Path(folder).resolve())
                        for name, folder in cfg.libraries.items()})
        return cls(folders)

    @property
    def roots(self) -> list[str]:
        """The folders to watch, each once."""
        return list(dict.fromkeys(self.folders.values()))

    def names_of(self, roots) -> list[str]:
        """The libraries whose folder is among `roots` (the available ones)."""
        roots = set(roots)
        return [name for name, folder in self.folders.items() if folder in roots]

    def name_of_root(self, root: str) -> str:
        for name, folder in self.folders.items():
            if folder == root and name != folder:
                return name   # a named library wins over the same folder in watch_dirs
        return root

    def root_of(self, path: str) -> str | None:
        """The deepest watch root holding `path`; None when it is under none."""
        return max((r for r in self.roots if path.startswith(r.rstrip("/") + "/")),
                   key=len, default=None)

    def key(self, path: str, root: str | None = None) -> tuple[str, str]:
        """(library, relative path) of a file under one of the roots."""
        if root is None:
            root = max((r for r in self.roots if path.startswith(r.rstrip("/") + "/")),
                       key=len, default=os.path.dirname(path))
        return self.name_of_root(root), os.path.relpath(path, root)

    def localize(self, job: Job) -> Job:
        """The job with this node's path and root (another node may have queued it)."""
        folder = self.folders.get(job.library or "")
        if folder is None or not job.rel_path:
            return job
        return dataclasses.replace(job, path=os.path.join(folder, job.rel_path), root=folder)
