"""Watching folders: inotify (or polling) events, a startup scan and periodic rescans.

A file is handed on only when it is *finished* arriving: when inotify saw it being written, it
must have been closed after the last write, and in every case its size and mtime must stay the
same for the stability window. Watch roots are checked every second: a root that disappears or
becomes unreadable (an NFS/SMB mount dropped) is an outage — the watcher reports itself down
and its jobs wait — and when it comes back it is watched again and rescanned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, ContextManager

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from .subtitles.output import is_temp_file

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1
ROOT_CHECK_SECONDS = 1.0
# Files of one scanned folder handed over per job-store transaction: large enough that a first
# start over a big library is not one commit per file, small enough that a worker or a status
# request never waits long for the store.
SCAN_BATCH_FILES = 100
# The events we act on. Without a filter inotify also reports every open and every close
# without a write: each read of a file (a Plex stream, our own fingerprinting during a scan of
# 100,000 files) would be a Python event to discard.
EVENTS = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent,
          FileDeletedEvent, DirCreatedEvent, DirMovedEvent]


@dataclasses.dataclass
class _Pending:
    root: str
    size: int
    mtime_ns: int
    stable_since: float
    writing: bool        # a write was seen and no close after it yet
    created_only: bool   # only a create/move-in event: no write seen (a file moved into place)


class FileFilter:
    def __init__(self, extensions, ignore_globs):
        self.extensions = {"." + e.lower() for e in extensions}
        # One compiled regex for all globs: a rescan of a big library tests every name.
        self._ignored = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in ignore_globs)
                                   or "(?!)")

    def wanted_name(self, name: str) -> bool:
        return (os.path.splitext(name)[1].lower() in self.extensions
                and not is_temp_file(name) and not self._ignored.match(name))

    def wanted(self, path: str, root: str) -> bool:
        """For event paths. A glob applies to the file and every folder on the way (".*" hides
        hidden folders); scans skip ignored folders themselves and test names only."""
        if not self.wanted_name(os.path.basename(path)):
            return False
        folders = Path(os.path.relpath(path, root)).parts[:-1]
        return not any(self._ignored.match(part) for part in folders)

    def wanted_folder(self, path: str, root: str | None = None) -> bool:
        """A folder's own name, or with `root` every folder from there down to it."""
        if root is None:
            return not self._ignored.match(os.path.basename(path))
        return not any(self._ignored.match(p) for p in Path(os.path.relpath(path, root)).parts
                       if p != ".")


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "Watcher", root: str):
        self.watcher, self.root = watcher, root

    def dispatch(self, event):
        if event.is_directory:
            if event.event_type in ("created", "moved"):   # a folder moved in: its files too
                target = getattr(event, "dest_path", "") or event.src_path
                self.watcher.scan_later(target, self.root)
            return
        kind = event.event_type
        path = getattr(event, "dest_path", "") if kind == "moved" else event.src_path
        if path:
            self.watcher.note(os.fsdecode(path), self.root, kind)


class Watcher:
    def __init__(self, roots, *, file_filter: FileFilter, stability_seconds: float,
                 on_ready: Callable[[str, str], None],
                 is_known: Callable[[str, os.stat_result], bool],
                 recursive: bool = True, polling: bool = False, poll_interval: float = 5.0,
                 rescan_interval: float = 300.0,
                 scan_batch: Callable[[], ContextManager] = contextlib.nullcontext):
        self.roots = [str(Path(r).resolve()) for r in roots]
        self.filter = file_filter
        self.window = stability_seconds
        self.on_ready = on_ready
        self.is_known = is_known
        self.recursive = recursive
        self.polling = polling
        self.poll_interval = poll_interval
        self.rescan_interval = rescan_interval
        # Wraps the hand-over of each SCAN_BATCH_FILES scanned files (the job store's `batch`:
        # a first start over a large library writes a row per file, and one commit per batch
        # is several times faster than one per row).
        self.scan_batch = scan_batch
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer = None
        self._watches: dict[str, object] = {}
        self._available = {r: False for r in self.roots}
        self._threads: list[threading.Thread] = []
        self._scan_requests: list[tuple[str, str]] = []
        self.scan_done = threading.Event()
        self.scan_seconds: float | None = None   # the startup scan, once done
        self.scan_files: int | None = None

    # -- health ----------------------------------------------------------------------------
    @property
    def available_roots(self) -> list[str]:
        return [r for r, ok in self._available.items() if ok]

    @property
    def unavailable_count(self) -> int:
        return sum(1 for ok in self._available.values() if not ok)

    def alive(self) -> bool:
        return (self._observer is not None and self._observer.is_alive()
                and all(t.is_alive() for t in self._threads) and self.unavailable_count == 0)

    @staticmethod
    def root_ok(root: str) -> bool:
        """Is this watch root there and readable (the daemon asks too: a vanished file, or its
        whole folder gone)?"""
        try:
            os.listdir(root)   # an unreadable or stale mount fails here
            return os.path.isdir(root)
        except OSError:
            return False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        observer_cls = PollingObserver if self.polling else Observer
        self._observer = (observer_cls(timeout=self.poll_interval) if self.polling
                          else observer_cls())
        for root in self.roots:
            self._available[root] = self.root_ok(root)
            if self._available[root]:
                self._schedule(root)
            else:
                log.warning("watch folder %s is unavailable: waiting for it", root)
        self._observer.start()
        for target, name in ((self._tick_loop, "watch-tick"), (self._scan_loop, "watch-scan"),
                             (self._root_loop, "watch-roots")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)
        for t in self._threads:
            t.join(5)

    def _schedule(self, root: str) -> None:
        try:
            self._watches[root] = self._observer.schedule(_Handler(self, root), root,
                                                          recursive=self.recursive,
                                                          event_filter=EVENTS)
        except OSError as e:
            log.warning("cannot watch %s: %s", root, e)
            self._available[root] = False

    # -- events ----------------------------------------------------------------------------
    def note(self, path: str, root: str, kind: str, filtered: bool = False) -> None:
        """An event (or a scan) mentions `path`. Only wanted, not-yet-known files are tracked."""
        if kind == "deleted":
            with self._lock:
                self._pending.pop(path, None)
            return
        if kind in ("opened", "closed_no_write"):
            return
        if not filtered and not self.filter.wanted(path, root):
            return
        try:
            st = os.stat(path)
        except OSError:
            return
        if kind == "scan":
            # The job store is asked outside our lock: the scan holds the store (its batch)
            # while it takes our lock, so the other order here could deadlock with it.
            with self._lock:
                tracked = path in self._pending
            if not tracked and self.is_known(path, st):
                return
        now = time.monotonic()
        ready_now = False
        with self._lock:
            p = self._pending.get(path)
            if p is None and kind == "scan":
                # Untouched for longer than the window before we looked: complete. Handing it
                # on at once keeps a 100,000-file library out of the pending table.
                ready_now = (time.time() - st.st_mtime > self.window + 1
                             and self._available.get(root, False))
            if not ready_now:
                if p is None:
                    p = _Pending(root, st.st_size, st.st_mtime_ns, now, writing=False,
                                 created_only=kind == "created")
                    self._pending[path] = p
                if kind == "modified" and not self.polling:
                    p.writing, p.created_only = True, False   # inotify will tell us the close
                elif kind in ("closed", "moved"):
                    p.writing, p.created_only = False, False  # closed after writing / renamed in
                if (st.st_size, st.st_mtime_ns) != (p.size, p.mtime_ns):
                    p.size, p.mtime_ns, p.stable_since = st.st_size, st.st_mtime_ns, now
        if ready_now:
            self.on_ready(path, root)

    def _due(self) -> list[tuple[str, str]]:
        now = time.monotonic()
        ready = []
        with self._lock:
            items = list(self._pending.items())
        for path, p in items:
            try:
                st = os.stat(path)
            except OSError:
                with self._lock:
                    self._pending.pop(path, None)
                continue
            with self._lock:
                if (st.st_size, st.st_mtime_ns) != (p.size, p.mtime_ns):
                    p.size, p.mtime_ns, p.stable_since = st.st_size, st.st_mtime_ns, now
                    continue
                # A bare "created" with nothing written may be a writer that has not started
                # yet: an empty one waits longer before it is judged (and fails as empty).
                window = self.window * (3 if p.created_only and p.size == 0 else 1)
                if p.writing or now - p.stable_since < window:
                    continue
                if not self._available.get(p.root, False):
                    continue
                del self._pending[path]
            ready.append((path, p.root))
        return ready

    def _tick_loop(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            for path, root in self._due():
                try:
                    self.on_ready(path, root)
                except Exception:
                    log.exception("could not take %s", path)

    # -- scanning --------------------------------------------------------------------------
    def scan_later(self, folder: str, root: str) -> None:
        if not self.filter.wanted_folder(folder, root):
            return
        with self._lock:
            self._scan_requests.append((folder, root))

    def scan(self, folder: str, root: str) -> int:
        """Walk a folder; files that are new or changed are tracked like events."""
        seen = 0
        stack = [folder]
        while stack and not self._stop.is_set():
            current = stack.pop()
            files = []
            try:
                with os.scandir(current) as it:
                    for entry in it:
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                if self.recursive and self.filter.wanted_folder(entry.path):
                                    stack.append(entry.path)
                            elif entry.is_file() and self.filter.wanted_name(entry.name):
                                files.append(entry.path)
                        except OSError:
                            continue
            except OSError as e:
                log.debug("cannot scan %s: %s", current, e)
            for first in range(0, len(files), SCAN_BATCH_FILES):
                with self.scan_batch():
                    for path in files[first:first + SCAN_BATCH_FILES]:
                        try:
                            self.note(path, root, "scan", filtered=True)
                        except Exception:   # one file's bug must not undo its batch-mates
                            log.exception("could not take %s", path)
            seen += len(files)
        return seen

    def _scan_loop(self) -> None:
        scan_started, files = time.monotonic(), 0
        for root in self.roots:
            if self._available[root]:
                started = time.monotonic()
                n = self.scan(root, root)
                files += n
                log.info("scanned %s: %d media files in %.1fs", root, n,
                         time.monotonic() - started)
        self.scan_files, self.scan_seconds = files, time.monotonic() - scan_started
        self.scan_done.set()
        next_rescan = time.monotonic() + (self.rescan_interval or float("inf"))
        while not self._stop.wait(0.2):
            with self._lock:
                requests, self._scan_requests = self._scan_requests, []
            for folder, root in requests:
                self.scan(folder, root)
            if time.monotonic() >= next_rescan:
                for root in self.available_roots:
                    self.scan(root, root)
                next_rescan = time.monotonic() + self.rescan_interval

    def _root_loop(self) -> None:
        while not self._stop.wait(ROOT_CHECK_SECONDS):
            for root in self.roots:
                ok = self.root_ok(root)
                if ok == self._available[root]:
                    continue
                if not ok:
                    log.error("watch folder %s is unavailable (mount dropped?): pausing its jobs",
                              root)
                    watch = self._watches.pop(root, None)
                    if watch is not None:
                        try:
                            self._observer.unschedule(watch)
                        except Exception:
                            pass
                    self._available[root] = False
                else:
                    log.info("watch folder %s is back: watching and rescanning it", root)
                    self._available[root] = True
                    self._schedule(root)
                    self.scan_later(root, root)
