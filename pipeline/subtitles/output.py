"""Where subtitles go, what counts as an existing subtitle, and how files are written atomically."""

from __future__ import annotations

import errno
import os
import secrets
import time
from pathlib import Path
from typing import Callable

from ..language.codes import codes_for

SUBTITLE_EXTENSIONS = ("srt", "vtt", "ass", "ssa", "sub", "idx")
# Our temporary files: hidden (so watchers and media servers ignore them) and recognisable
# (so a restart can delete the ones a crash left behind).
TMP_MARK = ".scribewatch-tmp-"


def output_paths(source: Path, root: Path, language: str, formats,
                 output_dir: Path | None) -> dict[str, Path]:
    """`<stem>.<lang>.<fmt>` beside the source, or mirrored under output_dir
    (Plex/Jellyfin naming)."""
    folder = source.parent
    if output_dir is not None:
        folder = output_dir / source.parent.relative_to(root)
    return {fmt: folder / f"{source.stem}.{language}.{fmt}" for fmt in formats}


def find_sidecar(source: Path, language: str, folders: list[Path]) -> Path | None:
    """An existing full subtitle for `language`: Movie.en.srt, Movie.eng.srt, Movie.German.srt,
    Movie.en.sdh.srt, … — not a forced-only one (Movie.en.forced.srt: signs and foreign lines)."""
    codes = codes_for(language)
    stem = source.stem.lower()
    for folder in folders:
        for code, name in _listing(folder).subtitles.get(stem, ()):
            if code in codes and not _forced_only(name, stem):
                return folder / name
    return None


# Media files sharing a stem in one folder (Movie.mkv, Movie.mp4) share `<stem>.<lang>.srt`,
# and media servers show that one subtitle with each of them: one gets it. Which one is fixed
# by the names alone: never by size (a copy still arriving is small) nor by what was seen
# first, so every scan, restart and node sharing a store chooses the same. Video before audio,
# the container that carries most (several audio and subtitle tracks) first; then by name.
SAME_STEM_PREFERENCE = ("mkv", "mp4", "m4v", "webm", "mov", "m2ts", "ts", "avi", "wmv")


def _same_stem_rank(name: str) -> tuple[int, str]:
    ext = name.rsplit(".", 1)[-1].lower()
    rank = SAME_STEM_PREFERENCE.index(ext) if ext in SAME_STEM_PREFERENCE else len(
        SAME_STEM_PREFERENCE)
    return rank, name


def same_stem_media(source: Path, wanted_name: Callable[[str], bool]) -> list[Path]:
    """The files `wanted_name` takes (the watcher's filter: media, not ignored) in `source`'s
    folder with its stem, compared without case as subtitles are, `source` included: the one
    to subtitle first."""
    names = _listing(source.parent).stems.get(source.stem.lower(), ())
    found = {n for n in names if wanted_name(n)} | {source.name}
    return [source.parent / n for n in sorted(found, key=_same_stem_rank)]


def _forced_only(name: str, stem: str) -> bool:
    """`forced` among the name's parts after the stem (Movie.de.forced.srt)."""
    return "forced" in name.lower()[len(stem):].split(".")


class _Listing:
    """One folder's file names, indexed: subtitles by every stem they may belong to, and
    every file by its stem (the part before its last dot, lower-case)."""

    def __init__(self, names):
        self.subtitles: dict[str, list] = {}   # stem -> [(language code, file name)]
        self.stems: dict[str, list] = {}       # stem -> [file name]
        for name in names:
            if TMP_MARK in name:
                continue
            if "." in name.strip("."):
                self.stems.setdefault(name.rsplit(".", 1)[0].lower(), []).append(name)
            parts = name.lower().split(".")
            if len(parts) < 3 or parts[-1] not in SUBTITLE_EXTENSIONS:
                continue
            # "movie.en.forced.srt" may belong to "movie" (code en) or "movie.en" (code
            # forced): record every split; the caller keeps the codes of its language only.
            for k in range(1, len(parts) - 1):
                self.subtitles.setdefault(".".join(parts[:k]), []).append((parts[k], name))


_EMPTY = _Listing(())
# folder -> (its mtime, its _Listing). A startup scan asks about every file of a folder: one
# listing per folder (until it changes), not one per file.
_INDEX_CACHE: dict[Path, tuple[int, _Listing]] = {}
_INDEX_CACHE_MAX = 1024
# A listing is remembered only once the folder's mtime is this old. A change in the same
# timestamp tick as the listing leaves the mtime as it was (ticks are 2 s on FAT and some SMB
# shares, milliseconds on ext4): a listing taken in that tick could miss a subtitle for good.
_SETTLED_NS = 2_000_000_000


def _listing(folder: Path) -> _Listing:
    try:
        mtime = os.stat(folder).st_mtime_ns
        cached = _INDEX_CACHE.get(folder)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        listing = _Listing(os.listdir(folder))
    except OSError:
        return _EMPTY
    if time.time_ns() - mtime < _SETTLED_NS:
        _INDEX_CACHE.pop(folder, None)
        return listing
    if len(_INDEX_CACHE) >= _INDEX_CACHE_MAX:
        _INDEX_CACHE.clear()
    _INDEX_CACHE[folder] = (mtime, listing)
    return listing


def write_atomic(path: Path, text: str, before_replace=None) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder: all or nothing on disk.
    `before_replace()` may raise to leave the target as it is (a lost lease)."""
    tmp = path.parent / f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(path.parent)


def move_atomic(src: Path, dst: Path) -> bool:
    """Rename `src` to `dst` (one `rename`, then the folders fsync-ed), never over a file that
    is there: False when `dst` exists (someone else's subtitle stays). Creates `dst`'s folder
    (output_dir mode mirrors the library's folders)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)          # fails if dst exists: no window in which it is replaced
    except FileExistsError:
        return False
    except OSError:                # a filesystem without hard links (some SMB shares)
        if dst.exists():
            return False
        os.replace(src, dst)
    else:
        os.unlink(src)
    for folder in {src.parent, dst.parent}:
        _fsync_folder(folder)
    return True


def _fsync_folder(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
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
