"""Where subtitles go, what counts as an existing subtitle, and how files are written atomically."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from .languages import codes_for

SUBTITLE_EXTENSIONS = ("srt", "vtt", "ass", "ssa", "sub", "idx")
# Our temporary files: hidden (so watchers and media servers ignore them) and recognisable
# (so a restart can delete the ones a crash left behind).
TMP_MARK = ".scribewatch-tmp-"


def output_paths(source: Path, root: Path, language: str, formats, output_dir: Path | None) -> dict[str, Path]:
    """`<stem>.<lang>.<fmt>` beside the source, or mirrored under output_dir (Plex/Jellyfin naming)."""
    folder = source.parent
    if output_dir is not None:
        folder = output_dir / source.parent.relative_to(root)
    return {fmt: folder / f"{source.stem}.{language}.{fmt}" for fmt in formats}


def find_sidecar(source: Path, language: str, folders: list[Path]) -> Path | None:
    """An existing subtitle for `language`: Movie.en.srt, Movie.eng.srt, Movie.en.forced.srt, …"""
    codes = codes_for(language)
    stem = source.stem.lower()
    for folder in folders:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for name in entries:
            lower = name.lower()
            if not lower.startswith(stem + ".") or TMP_MARK in lower:
                continue
            parts = lower[len(stem) + 1:].split(".")
            if len(parts) >= 2 and parts[-1] in SUBTITLE_EXTENSIONS and parts[0] in codes:
                return folder / name
    return None


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder: all or nothing on disk."""
    tmp = path.parent / f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def is_temp_file(name: str) -> bool:
    return TMP_MARK in name


def remove_stale_temps(folders) -> list[Path]:
    """Delete temp files a crash left behind (ours only, recognised by TMP_MARK)."""
    removed = []
    for folder in folders:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                if TMP_MARK in name:
                    p = Path(dirpath) / name
                    try:
                        p.unlink()
                        removed.append(p)
                    except OSError:
                        pass
    return removed


def write_error_reason(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR):
        return "output_not_writable"
    return "write_error"
