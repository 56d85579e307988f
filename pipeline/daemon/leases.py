"""The daemon's side of a shared store: whether the store answers (`StoreHealth`), and the lease
keeping (`LeaseKeeper`): heartbeats that renew the leases of running jobs, taking over jobs whose
lease ran out, recovering this node's own jobs after a death, and settling a job while the store
comes and goes.

Both are objects the daemon owns and hands what they need; neither knows the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable

from ..contract import NullReporter, Reporter
from ..store import JobStore, StoreUnavailable
from ..store.sqlite_schema import SUSPECT_STRIKES
from .claimed_job import ClaimedJobs

log = logging.getLogger("scribewatch.pipeline.daemon")

STORE_RETRY_SECONDS = 1.0   # a result waiting for the store to come back asks again this often


class StoreHealth:
    """Is the job store reachable and writable now, and if not, why: what the workers (no claims
    while it is away), the lease keeper, the status (/readyz, `scribewatch_store_up`) read."""

    def __init__(self, kind: str):
        self.kind = kind                   # "sqlite" | "postgresql", for the log
        self.error: str | None = None      # why the store is unreachable, or None
        self.writable = True               # the last housekeeping's check

    @property
    def up(self) -> bool:
        return self.error is None

    def down(self, e: Exception) -> None:
        if self.error is None:
            log.error("job store %s unreachable: %s; no new jobs until it is back (running jobs "
                      "go on under their leases)", self.kind, e)
        self.error = str(e) or type(e).__name__

    def back(self) -> None:
        log.warning("job store %s is reachable again: claiming jobs again", self.kind)
        self.error = None


class LeaseKeeper:
    def __init__(self, store: JobStore, health: StoreHealth, jobs: ClaimedJobs, *, node: str,
                 max_attempts: int, heartbeat_seconds: float, stopping: threading.Event,
                 stopping_now: Callable[[], bool], on_requeued: Callable[[], None],
                 on_finished: Callable[[int], None]):
        self.store, self.health, self.jobs = store, health, jobs
        self.node, self.max_attempts = node, max_attempts
        self.heartbeat_seconds = heartbeat_seconds
        self._stopping, self._stopping_now = stopping, stopping_now
        self._on_requeued = on_requeued       # a job is queued again: wake the workers
        self._on_finished = on_finished       # a job ended here (its id): the daemon announces it
        self.reporter: Reporter = NullReporter()

    def keep_node_name(self) -> None:
        """The shared store's lock on this node's name, taken again after a PostgreSQL restart.
        Taken by another daemon meanwhile: no claims (as if the store were away) until it is
        this node's again — two daemons under one name would take each other's jobs."""
        keep = getattr(self.store, "keep_node_name", None)
        if keep is not None and not keep():
            raise StoreUnavailable(f"another daemon took node name {self.node!r} while the "
                                   "store was away: give each daemon its own node_name")

    @contextlib.contextmanager
    def scan_batch(self):
        """The watcher's scan batch: one transaction, or none while the store is away (intake
        defers the files then; the rescan when it is back finds a batch lost at commit)."""
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(self.store.batch())
        except StoreUnavailable as e:
            self.health.down(e)
        try:
            with stack:
                yield
        except StoreUnavailable as e:
            self.health.down(e)

    def record(self, method, *args, patient: bool = True, **kwargs) -> bool:
        """A write that settles a job (a result, a requeue). With the store away it is tried
        again until the store returns, unless shutting down at once (then the next start, or
        another node after the lease, settles the job). False: the lease token is no longer
        this job's (another node took it over), so nothing was written."""
        while True:
            try:
                if method(*args, **kwargs) is False:
                    log.warning("job %d: not recorded: its lease is another node's now", args[0])
                    return False
                return True
            except StoreUnavailable as e:
                self.health.down(e)
                if not patient or self._stopping_now():
                    log.warning("job %d: result not recorded (store unreachable); it will be "
                                "run again", args[0])
                    return False
                time.sleep(STORE_RETRY_SECONDS)

    def heartbeat(self) -> None:
        """Renew the lease of every running job. A lease renewed by no one runs out and another
        node takes the job over; so a job whose renewals keep failing longer than a lease is
        given up here too (the other node may already be running it)."""
        while not self._stopping.wait(self.heartbeat_seconds):
            for r in self.jobs.all():
                if r.settled or r.lost:
                    continue
                try:
                    held = self.store.renew(r.job.id, r.token)
                except StoreUnavailable as e:
                    self.health.down(e)
                    self.reporter.lease_renewal_failed()
                    if r.lease_left() <= 0:
                        r.lose("renewals failed for a whole lease: the store is unreachable")
                    continue
                if held:
                    r.renewed_at = time.monotonic()
                else:
                    self.reporter.lease_renewal_failed()
                    r.lose("the store gave the job to another node")

    def take_over_expired(self) -> None:
        requeued, failed = self.store.take_over_expired(self.max_attempts)
        for job in requeued:
            self.reporter.job_taken_over()
            log.warning("job %d (%s): the lease of node %s ran out in %s: taken over, queued "
                        "again (death %d of the job, %d in a row at that point)", job.id,
                        job.rel_path, job.node, job.crash_point, job.crashes, job.strikes)
        for job in failed:
            self.reporter.job_taken_over()
            log.error("failed %s: nodes died at the same point (%s) %d times in a row "
                      "[%s/crashed_repeatedly]", job.rel_path, job.crash_point, job.strikes,
                      job.error_stage)
            self.reporter.job_finished("failed", reason="crashed_repeatedly", stage=job.error_stage)
        if requeued:
            self._on_requeued()

    def recover_after_death(self) -> None:
        """At start: our own jobs left running by a death of this node, at once (not after their
        leases): queued again, or failed when they keep killing it (the store's accounting)."""
        requeued, failed = self.store.recover_after_crash(self.max_attempts)
        for job in requeued:
            if job.strikes == 1:
                log.warning("job %d (%s) was interrupted by a restart in %s while progressing "
                            "(the daemon's death %d during it): queued again", job.id,
                            job.path, job.crash_point, job.crashes)
            else:
                log.warning("job %d (%s): the daemon died again at the same point (%s) with no "
                            "progress since its previous death (%d of %d in a row): queued "
                            "again%s", job.id, job.path, job.crash_point,
                            job.strikes, self.max_attempts,
                            ", behind the other jobs" if job.strikes >= SUSPECT_STRIKES else "")
        for job in failed:
            log.error("failed %s: the daemon died at the same point (%s) %d times in a row "
                      "[%s/crashed_repeatedly]", job.path, job.crash_point, job.strikes,
                      job.error_stage)
            self.reporter.job_finished("failed", reason="crashed_repeatedly", stage=job.error_stage)
            self._on_finished(job.id)
