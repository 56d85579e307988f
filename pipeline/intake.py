"""Intake: what a finished file becomes — a queued job, a skip with its reason, or nothing
(already done, already queued, only touched).

The watcher asks `is_known(path, stat)` while it scans (cheap: size and mtime against the job
store, so a restart over a large library queues nothing) and calls `take(path, root)` once a file
has stopped changing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from . import skip_policy
from .contract import NullReporter, Reporter
from .errors import SkipJob
from .fingerprint import content_hash
from .job import Job
from .libraries import Libraries
from .store import JobStore, StoreUnavailable
from .store.sqlite_schema import FOLDER_PRIORITY, IMPORT_PRIORITY

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, store: JobStore, *, settings, target_language: Callable[[Path], str | None],
                 output_dir: Path | None, on_queued: Callable[[], None],
                 reporter: Reporter | None = None, libraries: Libraries | None = None):
        self.store = store
        # A file's key in the store; without libraries, its watch root and the path below.
        self.libraries = libraries or Libraries({})
        self.settings = settings   # the Config: the skip rules read their settings from it
        self.target_language = target_language
        self.output_dir = output_dir
        self.on_queued = on_queued
        self.reporter: Reporter = reporter or NullReporter()
        # Files that finished arriving while the store was unreachable: taken once it is back.
        self._deferred: dict[str, str] = {}

    def retry_deferred(self) -> int:
        """Take the files deferred while the store was away (the daemon calls this when it is
        back). Returns how many were retried."""
        deferred, self._deferred = self._deferred, {}
        for path, root in deferred.items():
            self.take(path, root)
        return len(deferred)

    def is_known(self, path: str, st: os.stat_result) -> bool:
        try:
            latest = self.store.latest_stat_for_key(*self.libraries.key(path))
        except StoreUnavailable:
            return False   # tracked, then deferred by take() until the store is back
        if not (latest and latest["size"] == st.st_size and latest["mtime_ns"] == st.st_mtime_ns):
            return False
        if latest["status"] == "skipped" and latest["reason"] == "same_stem":
            # The file chosen for the stem may have failed or gone since: asked at each scan,
            # so this one is taken again then (the rule decides from names and the store).
            return self._stem_claimed(path, None)
        if latest["status"] == "failed" and latest["reason"] == "unreadable":
            # A chmod does not change the mtime: retry once the file can be read.
            try:
                with open(path, "rb"):
                    return False
            except OSError:
                return True
        return True

    def take(self, path: str, root: str) -> None:
        """A finished file: queue it, skip it with a reason, or recognise it as already done."""
        try:
            self._take(path, root)
        except StoreUnavailable as e:
            self._deferred[path] = root
            log.debug("%s: deferred until the job store is back (%s)", path, e)

    def take_import(self, path: str, root: str, *, language_hint: dict | None,
                    carried: tuple[str, ...] = ()) -> str:
        """A file Sonarr or Radarr just imported (pipeline/arr/): queued ahead of the folder
        backlog (a waiting job promoted), with its language hint. `carried`: subtitles of the
        file it replaced, this job's own to replace. Returns what became of it: `queued`,
        `promoted`, `done` (this content has its job already), `skipped` (the skip policy,
        recorded) or `missing` (no such file here). Raises StoreUnavailable."""
        return self._take(path, root, priority=IMPORT_PRIORITY, language_hint=language_hint,
                          carried=carried)

    def _take(self, path: str, root: str, *, priority: int = FOLDER_PRIORITY,
              language_hint: dict | None = None, carried: tuple[str, ...] = ()) -> str:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return "missing"   # gone before it became a job: nothing to do
        except OSError:
            st = None   # not even its size can be read: the probe stage records why
        size, mtime_ns = (st.st_size, st.st_mtime_ns) if st else (None, None)
        library, rel_path = key = self.libraries.key(path, root)
        latest = self.store.latest_for_key(*key)
        # A file never seen before whose subtitle is already there is not read at all: a first
        # start over a subtitled library then costs a stat per file, not a disk read per file.
        if latest is None and self._subtitle_exists(path, root, size, mtime_ns, "", None, key,
                                                    carried):
            return "skipped"
        try:
            fingerprint = content_hash(path, st.st_size) if st else ""
        except OSError:
            fingerprint = ""   # unreadable: the probe stage records why
        if latest is not None and latest.fingerprint == fingerprint:
            if latest.status in ("queued", "running"):
                if priority == FOLDER_PRIORITY or latest.status == "running":
                    return "promoted" if latest.status == "running" else "queued"
                self.store.enqueue(path, root, size, mtime_ns, fingerprint, library=library,
                                   rel_path=rel_path, priority=priority,
                                   language_hint=language_hint, outputs=carried or None)
                self.on_queued()
                return "promoted"   # already waiting: now ahead of the backlog
            if fingerprint and latest.size == size and latest.reason != "same_stem":
                self.store.update_stat(latest.id, size, mtime_ns)   # touched only
                return "done"
        if latest is not None and self._subtitle_exists(path, root, size, mtime_ns, fingerprint,
                                                        latest, key, carried):
            return "skipped"
        # Another node may have queued it meanwhile: the store answers with that job.
        job_id = self.store.enqueue(path, root, size, mtime_ns, fingerprint, library=library,
                                    rel_path=rel_path, priority=priority,
                                    language_hint=language_hint, outputs=carried or None)
        log.info("queued %s (job %d%s)", path, job_id,
                 ", imported: ahead of the folder backlog" if priority > FOLDER_PRIORITY else "")
        self.on_queued()
        return "queued"

    def _subtitle_exists(self, path: str, root: str, size, mtime_ns, fingerprint: str,
                         latest: Job | None, key: tuple[str, str],
                         carried: tuple[str, ...] = ()) -> bool:
        """Skip (recorded and counted) a file the skip policy rules out before reading it."""
        own = (tuple(latest.outputs) if latest else ()) + tuple(carried)
        facts = skip_policy.Facts(Path(path), Path(root), self.target_language(Path(path)),
                                  self.output_dir, own_outputs=own,
                                  set_aside=self._set_aside(root))
        try:
            skip_policy.check(skip_policy.BEFORE_READING, self.settings, facts)
        except SkipJob as s:
            self.store.record_skipped(path, root, size, mtime_ns, fingerprint, s.reason, s.message,
                                      library=key[0], rel_path=key[1])
            # A first scan of a subtitled library would log one line per file: debug. A skip for
            # a sibling of the same name is rare and otherwise a mystery: info.
            log.log(logging.INFO if s.reason == "same_stem" else logging.DEBUG,
                    "skipped %s: %s [%s]", path, s.message.removeprefix(f"{path}: "), s.reason)
            self.reporter.job_finished("skipped", reason=s.reason)
            return True
        return False

    def _set_aside(self, root: str | None):
        """Whether a media file sharing a stem no longer claims it: its newest job failed, or
        was skipped for a reason of its own (a subtitle it carries, no speech)."""
        def set_aside(sibling: Path) -> bool:
            latest = self.store.latest_stat_for_key(*self.libraries.key(str(sibling), root))
            return latest is not None and (
                latest["status"] == "failed"
                or (latest["status"] == "skipped" and latest["reason"] != "same_stem"))
        return set_aside

    def _stem_claimed(self, path: str, root: str | None) -> bool:
        """Another media file with this one's stem still gets the subtitle (the skip policy's
        `same_stem` rule, asked without recording anything)."""
        facts = skip_policy.Facts(Path(path), Path(root or os.path.dirname(path)), None,
                                  self.output_dir, set_aside=self._set_aside(root))
        return skip_policy.stem_claimed_by(self.settings, facts) is not None
