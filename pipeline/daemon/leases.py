"""The daemon's side of a shared store: heartbeats that renew the leases of running jobs,
taking over jobs whose lease ran out, and settling a job while the store comes and goes.

A mixin of `Daemon` (it uses the daemon's store, config, reporter, running jobs and flags).
"""

from __future__ import annotations

import contextlib
import logging
import time

from ..store import StoreUnavailable
from ..store.sqlite_schema import SUSPECT_STRIKES

log = logging.getLogger("scribewatch.pipeline.daemon")

STORE_RETRY_SECONDS = 1.0   # a result waiting for the store to come back asks again this often


class LeaseKeeping:
    def _store_down(self, e: Exception) -> None:
        if self._store_error is None:
            log.error("job store %s unreachable: %s; no new jobs until it is back (running jobs "
                      "go on under their leases)", self.store_kind, e)
        self._store_error = str(e) or type(e).__name__

    def _keep_node_name(self) -> None:
        """The shared store's lock on this node's name, taken again after a PostgreSQL restart.
        Taken by another daemon meanwhile: no claims (as if the store were away) until it is
        this node's again — two daemons under one name would take each other's jobs."""
        keep = getattr(self.store, "keep_node_name", None)
        if keep is not None and not keep():
            raise StoreUnavailable(f"another daemon took node name {self.node!r} while the "
                                   "store was away: give each daemon its own node_name")

    def _store_back(self) -> None:
        log.warning("job store %s is reachable again: claiming jobs again", self.store_kind)
        self._store_error = None
        # What arrived meanwhile: the files intake deferred, and a rescan for any scan batch
        # whose commit was lost with the connection.
        retried = self.intake.retry_deferred()
        for root in self.watcher.available_roots:
            self.watcher.scan_later(root, root)
        if retried:
            log.info("took %d file(s) that arrived while the store was away", retried)
        self._notify()

    @contextlib.contextmanager
    def _scan_batch(self):
        """The watcher's scan batch: one transaction, or none while the store is away (intake
        defers the files then; the rescan when it is back finds a batch lost at commit)."""
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(self.store.batch())
        except StoreUnavailable as e:
            self._store_down(e)
        try:
            with stack:
                yield
        except StoreUnavailable as e:
            self._store_down(e)

    def _store_call(self, method, *args, patient: bool = True, **kwargs) -> bool:
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
                self._store_down(e)
                if not patient or self._stop_now:
                    log.warning("job %d: result not recorded (store unreachable); it will be "
                                "run again", args[0])
                    return False
                time.sleep(STORE_RETRY_SECONDS)

    def _heartbeat(self) -> None:
        """Renew the lease of every running job. A lease renewed by no one runs out and another
        node takes the job over; so a job whose renewals keep failing longer than a lease is
        given up here too (the other node may already be running it)."""
        while not self._stopping.wait(self.cfg.heartbeat_seconds):
            for r in list(self._running.values()):
                if r.settled or r.lost:
                    continue
                try:
                    held = self.store.renew(r.job.id, r.token)
                except StoreUnavailable as e:
                    self._store_down(e)
                    self.reporter.lease_renewal_failed()
                    if r.lease_left() <= 0:
                        r.lose("renewals failed for a whole lease: the store is unreachable")
                    continue
                if held:
                    r.renewed_at = time.monotonic()
                else:
                    self.reporter.lease_renewal_failed()
                    r.lose("the store gave the job to another node")

    def _take_over_expired(self) -> None:
        requeued, failed = self.store.take_over_expired(self.cfg.max_attempts)
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
            self._notify()

    def _recover_after_death(self) -> None:
        """At start: our own jobs left running by a death of this node, at once (not after their
        leases): queued again, or failed when they keep killing it (the store's accounting)."""
        requeued, failed = self.store.recover_after_crash(self.cfg.max_attempts)
        for job in requeued:
            if job.strikes == 1:
                log.warning("job %d (%s) was interrupted by a restart in %s while progressing "
                            "(the daemon's death %d during it): queued again", job.id,
                            job.path, job.crash_point, job.crashes)
            else:
                log.warning("job %d (%s): the daemon died again at the same point (%s) with no "
                            "progress since its previous death (%d of %d in a row): queued "
                            "again%s", job.id, job.path, job.crash_point,
                            job.strikes, self.cfg.max_attempts,
                            ", behind the other jobs" if job.strikes >= SUSPECT_STRIKES else "")
        for job in failed:
            log.error("failed %s: the daemon died at the same point (%s) %d times in a row "
                      "[%s/crashed_repeatedly]", job.path, job.crash_point, job.strikes,
                      job.error_stage)
            self.reporter.job_finished("failed", reason="crashed_repeatedly", stage=job.error_stage)
            self._announce(job.id)
