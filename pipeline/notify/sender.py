"""The sender: one background thread that delivers the notification outbox's rows.

What a finished job notifies is decided by `announce(job)` (the targets' items: no I/O), which
the job store calls inside the transaction that finishes the job (store/outbox.py): the rows
are in the store before anyone could lose them, and a kill -9 at any moment loses none. The
sender claims the due rows of one target at a time (a claim with an expiry: several nodes on
one PostgreSQL store never send one row at once), sends them (a refresh row waits
`batch_seconds` first, so a season finishing together is one request per folder or one
Jellyfin request), and settles them: `sent`, again after `backoff_seconds` (doubling), or
`failed` after `max_attempts` claims or an answer that will not change — logged, counted and
kept in the row. A crash during a request counts as an attempt: the row is sent again after
the restart (at least once; at most `max_attempts` times).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Sequence

from ..contract import NullReporter, Reporter
from ..job import Job
from ..store import JobStore, StoreUnavailable
from .http import DeliveryError
from .targets import Target

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0            # the outbox is looked at this often (rows of other nodes, too)
CLAIM_LIMIT = 100             # rows one claim takes (one Jellyfin request names at most these)
CLAIM_SECONDS = 60.0          # a claim's lease: longer than a request's timeout, with margin
PURGE_EVERY_SECONDS = 600.0
KEEP_SENT_SECONDS = 86400.0           # delivered rows are kept a day (what was sent, when)
KEEP_FAILED_SECONDS = 7 * 86400.0     # given-up rows a week (what was not, and why)


class Sender:
    def __init__(self, targets: Sequence[Target], *, reporter: Reporter | None = None,
                 batch_seconds: float = 5.0, max_attempts: int = 5,
                 backoff_seconds: float = 2.0):
        self.targets = {t.key: t for t in targets}
        self.reporter: Reporter = reporter or NullReporter()
        self.batch_seconds, self.max_attempts = batch_seconds, max_attempts
        self.backoff_seconds = backoff_seconds
        self.store: JobStore | None = None
        self.node = ""
        self._wake = threading.Condition()
        self._woken = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._purged_at = 0.0

    # -- the store's side (inside the transaction that finishes a job) --------------------------
    def announce(self, job: Job) -> list[tuple[str, str, float]]:
        """The outbox rows of a finished job: (target key, item, seconds until due). Never
        raises: a bug in one target must not undo the job's end. An API request's job notifies
        nothing: it wrote no file a library could pick up, and its client has the answer."""
        if job.source == "api":
            return []
        rows = []
        for target in self.targets.values():
            try:
                items = target.items(job)
            except Exception:
                log.exception("%s: cannot make a notification of job %d", target.name, job.id)
                continue
            delay = self.batch_seconds if target.batch else 0.0
            rows += [(target.key, item, delay) for item in items]
        return rows

    # -- lifecycle ---------------------------------------------------------------------------
    def attach(self, store: JobStore, node: str) -> None:
        """The store whose outbox this sender empties, and this node's name (its claims)."""
        self.store, self.node = store, node
        store.announce = self.announce

    def wake(self, _job: object = None) -> None:
        """A job finished: look at the outbox now (a webhook is due at once)."""
        with self._wake:
            self._woken = True
            self._wake.notify()

    def start(self) -> None:
        """After the daemon's recovery: this node's claims left by its death are free again."""
        assert self.store is not None, "attach() first"
        try:
            released = self.store.outbox_release(self.node)
            if released:
                log.warning("%d notification(s) were being sent when the daemon died: sending "
                            "them again", released)
        except StoreUnavailable as e:
            log.warning("notifications: job store unreachable at start (%s); trying again", e)
        self._thread = threading.Thread(target=self._run, name="notify-sender", daemon=True)
        self._thread.start()

    def stop(self, grace: float = 5.0) -> None:
        """Let a request in flight finish for up to `grace` seconds. What still waits stays in
        the store: the next start (or another node) sends it."""
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(grace)
        try:
            left = self.store.outbox_pending() if self.store is not None else 0
        except StoreUnavailable:
            return
        if left:
            log.info("stopping: %d notification(s) wait in the job store for the next start",
                     left)

    # -- the sender's thread -------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if not self._send_once():
                    self._idle()
            except StoreUnavailable as e:
                log.debug("notifications: job store unreachable: %s", e)
                self._stopping.wait(POLL_SECONDS)
            except Exception:   # a bug must not end the thread: the outbox would only grow
                log.exception("notifications: unexpected error")
                self._stopping.wait(POLL_SECONDS)

    def _idle(self) -> None:
        wait = self.store.outbox_wait(self.targets)
        self.reporter.notification_queue(self.store.outbox_pending())
        self._maybe_purge()
        timeout = POLL_SECONDS if wait is None else min(POLL_SECONDS, wait)
        with self._wake:
            if not self._woken:
                self._wake.wait(timeout)
            self._woken = False

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now - self._purged_at >= PURGE_EVERY_SECONDS:
            self._purged_at = now
            gone = self.store.outbox_purge(KEEP_SENT_SECONDS, KEEP_FAILED_SECONDS)
            if gone:
                log.debug("notifications: %d finished row(s) past their retention deleted", gone)

    def _send_once(self) -> bool:
        """Claim and send one target's due rows. False: nothing was due."""
        claim = self.store.outbox_claim(self.targets, self.node, ahead=self.batch_seconds,
                                        limit=CLAIM_LIMIT, lease_seconds=CLAIM_SECONDS)
        if claim is None:
            return False
        target = self.targets[claim.target]
        rows_of: dict[str, list] = {}
        for row in claim.rows:                      # the same video or folder twice: once
            rows_of.setdefault(row.item, []).append(row)
        requests = target.requests(list(rows_of))
        for n, (payload, items) in enumerate(requests):
            if n:
                self.store.outbox_extend(claim.token, CLAIM_SECONDS)
            self._attempt(target, claim.token, payload, [r for i in items for r in rows_of[i]])
        self.reporter.notification_queue(self.store.outbox_pending())
        return True

    def _attempt(self, target: Target, token: str, payload: object, rows: list) -> None:
        started = time.perf_counter()
        try:
            target.send(payload)
        except DeliveryError as e:
            error, retry = str(e), e.retry
        except Exception as e:    # a bug, not the server: once, loudly
            log.exception("%s: unexpected error sending a notification", target.name)
            error, retry = f"{type(e).__name__}: {e}", False
        else:
            error, retry = None, False
        self.reporter.notification_request(target.name, time.perf_counter() - started)
        if error is None:
            self.store.outbox_sent(token, [r.id for r in rows])
            log.debug("%s: notification sent (%d row(s))", target.name, len(rows))
            for _ in rows:
                self.reporter.notification_finished(target.name, "sent")
            return
        again = [r for r in rows if retry and r.attempts < self.max_attempts]
        given_up = [r for r in rows if r not in again]
        for attempts in sorted({r.attempts for r in again}):
            delay = self.backoff_seconds * 2 ** (attempts - 1)
            self.store.outbox_retry(token, [r.id for r in again if r.attempts == attempts],
                                    delay, error)
            log.warning("%s: %s; trying again in %.1fs (attempt %d of %d)", target.name, error,
                        delay, attempts, self.max_attempts)
        if given_up:
            self.store.outbox_failed(token, [r.id for r in given_up], error)
            log.error("%s: %d notification(s) given up after %d attempt(s): %s", target.name,
                      len(given_up), max(r.attempts for r in given_up), error)
            for _ in given_up:
                self.reporter.notification_finished(target.name, "failed")
