"""The 100,000-file library of the scan and overhead benchmarks, and a job store as a
previous run over it leaves it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path


def make_library(root: Path, files: int = 100_000, per_folder: int = 100,
                 with_subtitles: float = 0.99) -> dict:
    """`files` tiny placeholder .mp3 files (a few bytes each) in folders of `per_folder`, a
    `<stem>.en.srt` beside `with_subtitles` of them. Idempotent: a marker file records the
    layout; mtimes are an hour old, so the watcher's startup scan takes them at once."""
    marker = root / ".library.json"
    spec = {"files": files, "per_folder": per_folder, "with_subtitles": with_subtitles, "v": 2}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return spec | {"root": str(root), "reused": True}
    if root.exists():
        shutil.rmtree(root)
    old = time.time() - 3600
    every = round(1 / (1 - with_subtitles)) if with_subtitles < 1 else 0
    without = 0
    for i in range(files):
        folder = root / f"show-{i // per_folder:04d}"
        if i % per_folder == 0:
            folder.mkdir(parents=True)
        media = folder / f"episode-{i:06d}.mp3"
        media.write_bytes(b"placeholder %d\n" % i)
        os.utime(media, (old, old))
        if every and i % every == every - 1:
            without += 1
            continue
        srt = folder / f"episode-{i:06d}.en.srt"
        srt.write_bytes(b"1\n00:00:00,000 --> 00:00:01,000\nplaceholder\n")
        os.utime(srt, (old, old))
    marker.write_text(json.dumps(spec))
    return spec | {"root": str(root), "reused": False, "without_subtitles": without}


def populate_store(db: Path, root: Path, *, include_without_subtitles: bool) -> dict:
    """A job store as a previous run left it: every media file with a subtitle beside it is a
    finished job (`succeeded`, its SRT recorded as ours) with the file's real size, mtime and
    fingerprint; files without one are recorded as failed `not_media` only when
    `include_without_subtitles` (otherwise they are new to the daemon). One transaction."""
    from scribewatch.pipeline.fingerprint import content_hash
    from scribewatch.pipeline.store.sqlite import SqliteStore

    if db.exists():
        db.unlink()
    SqliteStore(db).close()
    rows = []
    now = time.time() - 1800
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        names = set(os.listdir(folder))
        for name in sorted(names):
            if not name.endswith(".mp3"):
                continue
            path = folder / name
            st = path.stat()
            srt = name[:-4] + ".en.srt"
            if srt in names:
                rows.append((str(path), str(root), st.st_size, st.st_mtime_ns,
                             content_hash(path, st.st_size), "succeeded", now, now, now,
                             json.dumps([str(folder / srt)]), None))
            elif include_without_subtitles:
                rows.append((str(path), str(root), st.st_size, st.st_mtime_ns,
                             content_hash(path, st.st_size), "failed", now, now, now, "[]",
                             "not_media"))
    con = sqlite3.connect(db)
    with con:
        con.executemany(
            "INSERT INTO jobs (path, root, size, mtime_ns, fingerprint, status, detected_at, "
            "started_at, finished_at, outputs, reason, attempts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)", rows)
    con.close()
    return {"rows": len(rows)}
