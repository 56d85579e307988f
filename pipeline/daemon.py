"""The daemon: workers running the stages, retries, recovery, shutdown (intake: `intake.py`).

It owns the job store, the model and the watcher, reports events through a `Reporter` and
answers `snapshot()` for whoever observes it (the exporter). It knows nothing about HTTP.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from pathlib import Path

from .. import __version__
from .config import Config
from .contract import NullReporter, Reporter, StatusSnapshot
from .errors import SkipJob, StageError
from .intake import Intake
from .job import Job
from .leases import LeaseKeeping
from .libraries import Libraries
from .model import ModelManager
from .output import remove_stale_temps
from .resources import GpuProbe, ResourceSampler
from .runner import Runner, RunResult, model_from_config, options_from_config
from .running import LeaseLost, Running
from .stages import Cancelled
from .store_api import LeaseSettings, StoreUnavailable, is_postgres_url, open_store
from .store_sql import SUSPECT_STRIKES
from .watcher import FileFilter, Watcher

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 1.0
MODEL_RETRY_SECONDS = 60.0
# scrapes are frequent and concurrent; the store need not be asked each time
SUSPECT_UPTIME_SECONDS = 10.0   # see _up_long_enough
SNAPSHOT_CACHE_SECONDS = 1.0


class NodeNameInUse(RuntimeError):
    """Another live daemon uses this node name on the shared store."""


class Daemon(LeaseKeeping):
    def __init__(self, cfg: Config, *, reporter: Reporter | None = None,
                 gpu_probe: GpuProbe | None = None, model: ModelManager | None = None):
        self.cfg = cfg
        self.reporter: Reporter = reporter or NullReporter()
        self.gpu_probe = gpu_probe
        self.started_at = time.time()
        self.node = cfg.node_name or socket.gethostname()
        self.store_url = cfg.store_url or cfg.db
        self.store_kind = "postgresql" if is_postgres_url(self.store_url) else "sqlite"
        self.store = open_store(self.store_url, LeaseSettings(
            self.node, cfg.lease_seconds, cfg.takeover_delay_seconds))
        self.libraries = Libraries.from_config(cfg)
        if hasattr(self.store, "hold_node_name") and not self.store.hold_node_name():
            self.store.close()
            raise NodeNameInUse(f"another scribewatch daemon runs as node {self.node!r} on this "
                                "store: give each daemon its own node_name")
        self.model = model or model_from_config(cfg, workers=cfg.workers)
        self.output_dir = (Path(cfg.output_dir).resolve() if cfg.output_mode == "output_dir"
                           else None)
        self.runner = Runner(cfg, self.model, options_from_config(cfg), self.output_dir)
        self.intake = Intake(self.store, settings=cfg,
                             target_language=lambda: self.runner.target_language,
                             output_dir=self.output_dir, on_queued=self._notify,
                             libraries=self.libraries)
        self.watcher = Watcher(
            self.libraries.roots, file_filter=FileFilter(cfg.include_extensions, cfg.ignore_globs),
            stability_seconds=cfg.stability_seconds, on_ready=self.intake.take,
            is_known=self.intake.is_known,
            recursive=cfg.recursive, polling=cfg.polling, poll_interval=cfg.poll_interval_seconds,
            rescan_interval=cfg.rescan_interval_seconds, scan_batch=self._scan_batch)
        self._running: dict[str, Running] = {}
        self._wake = threading.Condition()
        self._wake_generation = 0
        self._stopping = threading.Event()
        self._stop_now = False
        self._threads: list[threading.Thread] = []
        self._store_writable = True
        self._store_error: str | None = None   # why the store is unreachable, or None
        self._snapshot_cache: tuple[float, dict] | None = None
        self._snapshot_lock = threading.Lock()
        self._last_model_attempt = 0.0

    def _notify(self) -> None:
        with self._wake:
            # a notify between a worker's claim and its wait is not lost
            self._wake_generation += 1
            self._wake.notify_all()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._started_monotonic = time.monotonic()
        # The exporter may have been attached after __init__.
        self.model.reporter = self.intake.reporter = self.reporter
        # Our own jobs left running by a death of this node: at once, not after their leases.
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
        folders = self.libraries.roots + ([str(self.output_dir)] if self.output_dir else [])
        for stale in remove_stale_temps([f for f in folders if os.path.isdir(f)]):
            log.info("removed temporary file left by a crash: %s", stale)
        self._spawn(self._load_model, "model-load")
        self.watcher.start()
        for i in range(self.cfg.workers):
            self._spawn(self._worker, f"worker-{i}", str(i))
        self._spawn(self._housekeeping, "housekeeping")
        self._spawn(self._heartbeat, "heartbeat")

    def _spawn(self, target, name, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _load_model(self) -> bool:
        self._last_model_attempt = time.monotonic()
        try:
            self.model.load()
        except Exception:
            return False   # logged and reported by the manager; housekeeping retries
        self._notify()
        return True

    def stop(self, grace: float | None = None, hint: str = "") -> None:
        """Stop intake, let running jobs finish within the grace period, else re-queue them.
        `stop_now()` (a second Ctrl-C) cuts the wait short. `hint`: how to do that, logged."""
        grace = self.cfg.shutdown_grace_seconds if grace is None else grace
        running = len(self._running)
        log.info("stopping: no new jobs; waiting up to %.0fs for %d running job(s)%s",
                 grace, running, f"; {hint}" if hint and running else "")
        self._stopping.set()
        self.watcher.stop()
        self._notify()
        # Plain sleeps, polling a flag: stop_now() is called from a signal handler in this
        # thread, where taking a lock (an Event's) could deadlock.
        deadline = time.monotonic() + grace
        while self._running and time.monotonic() < deadline and not self._stop_now:
            time.sleep(0.1)
        if self._running:
            for r in list(self._running.values()):
                r.cancel = True   # transcription checks this between segments
            deadline = time.monotonic() + 5
            while self._running and time.monotonic() < deadline and not self._stop_now:
                time.sleep(0.1)
        for r in list(self._running.values()):
            # Still inside a long native call: put it back ourselves; the process exits next.
            if r.settle(lambda: self._store_call(self.store.requeue, r.job.id, token=r.token,
                                                 refund_attempt=True, patient=False)):
                log.warning("job %d %s: queued again", r.job.id,
                            "stopped at once" if self._stop_now
                            else "did not finish within the grace period")
        log.info("stopped")

    def stop_now(self) -> None:
        """During stop(): re-queue the running jobs now instead of waiting for them."""
        self._stop_now = True

    # -- workers ---------------------------------------------------------------------------
    def _up_long_enough(self) -> bool:
        """May a job the daemon died during be tried again? Only once this process has stayed
        up SUSPECT_UPTIME_SECONDS. Kills from outside (a restart loop, the OOM killer, a storm
        of SIGKILLs) end the daemon whatever it runs, so the job waits them out and they are
        not held against it; a file that kills the daemon does so whenever it is tried, and
        still reaches `crashed_repeatedly`. Short files need this most: they have one
        progress point, so "died again at the same point" alone cannot tell the two apart."""
        return time.monotonic() - self._started_monotonic >= SUSPECT_UPTIME_SECONDS

    def _worker(self, worker: str) -> None:
        while not self._stopping.is_set():
            generation = self._wake_generation
            job = None
            if self.model.ready and self._store_error is None:
                try:
                    job = self.store.claim_next(
                        worker, self.libraries.names_of(self.watcher.available_roots),
                        suspects=self._up_long_enough())
                except StoreUnavailable as e:
                    self._store_down(e)   # no claims until housekeeping reaches it again
            if job is None:
                timeout = self._idle_wait()
                with self._wake:
                    self._wake.wait_for(lambda: self._wake_generation != generation, timeout)
                continue
            try:
                self._run(job, worker)
            except Exception:   # never let a bug kill the worker thread
                log.exception("worker %s: unexpected error around job %d", worker, job.id)

    def _idle_wait(self) -> float:
        try:
            wakeup = self.store.next_wakeup()
        except StoreUnavailable:
            return 1.0
        if wakeup is None:
            return 1.0
        return max(0.05, min(1.0, wakeup - time.time()))

    def _run(self, job: Job, worker: str) -> None:
        job = self.libraries.localize(job)   # another node may have queued it at its own path
        path = Path(job.path)
        running = Running(job, worker, self)
        self._running[worker] = running
        self.reporter.job_started(max(0.0, job.started_at - job.detected_at))
        log.info("started %s (job %d, attempt %d%s)", path, job.id, job.attempts,
                 f", taken over {job.takeovers}x" if job.takeovers else "")
        stage_seconds = running.stage_seconds
        # GPU figures belong in the summary only when this job uses the GPU: on a CPU job they
        # would show someone else's load (a Plex transcode).
        sampler = ResourceSampler(self.gpu_probe if self.model.device == "cuda" else None)
        try:
            with sampler:
                # The job's own earlier subtitles are no reason to skip it (`retry --path`).
                result = self.runner.run(path, Path(job.root), running, own_outputs=job.outputs)
                self._succeeded(running, result)
        except LeaseLost:
            running.settle(lambda: None)   # the job is another node's now: nothing to write
        except Cancelled:
            if running.settle(lambda: self._store_call(self.store.requeue, job.id,
                                                       token=running.token,
                                                       refund_attempt=True)):
                log.warning("job %d (%s) interrupted by shutdown: queued again", job.id, path)
        # settle() runs the action at once, but binding the exception now (partial) keeps the
        # action correct even if that ever changed: Python unbinds `as` names after the block.
        except SkipJob as skip:
            running.settle(functools.partial(self._skipped, job, skip, stage_seconds,
                                             sampler.summary()))
        except StageError as err:
            running.settle(functools.partial(self._failed, job, err, stage_seconds,
                                             sampler.summary()))
        # a bug or something unforeseen: recorded, counted, the daemon goes on
        except Exception as e:
            log.exception("job %d (%s): unexpected error in %s", job.id, path, running.stage)
            err = StageError("internal_error", f"{path}: {type(e).__name__}: {e}", running.stage)
            running.settle(functools.partial(self._failed, job, err, stage_seconds,
                                             sampler.summary()))
        else:
            self._store_call(self.store.update, job.id, running.token, **sampler.summary())
        finally:
            self._running.pop(worker, None)

    def _skipped(self, job: Job, skip: SkipJob, stage_seconds: dict, resources: dict) -> None:
        if not self._store_call(self.store.finish, job.id, "skipped", reason=skip.reason,
                                message=skip.message, token=job.lease_token,
                                stage_seconds=stage_seconds, **resources):
            return
        log.info("skipped %s: %s [%s]", job.path, skip.message, skip.reason)
        self.reporter.job_finished("skipped", reason=skip.reason, audio_seconds=0.0)

    def _succeeded(self, running: Running, result: RunResult) -> None:
        job, transcript, outputs = running.job, result.transcript, result.outputs
        finished = time.time()
        processing = finished - job.started_at

        def succeeded():
            if not self._store_call(self.store.finish, job.id, "succeeded", outputs=outputs,
                                    token=running.token, stage_seconds=running.stage_seconds,
                                    audio_seconds=transcript.duration):
                return
            self.reporter.job_finished("succeeded", job_seconds=finished - job.detected_at,
                                       audio_seconds=transcript.duration,
                                       processing_seconds=processing)
        if not running.settle(succeeded):
            return   # shutdown re-queued it meanwhile: the next start writes it again, atomically
        log.info("done %s: %.1fs of %s audio in %.1fs (%s)", job.path, transcript.duration,
                 transcript.language, processing, ", ".join(Path(o).name for o in outputs))

    def _failed(self, job: Job, err: StageError, stage_seconds: dict, resources: dict) -> None:
        path, root = job.path, job.root
        if err.reason in ("vanished", "unreadable") and not Watcher._root_ok(root):
            # The whole watch folder is gone: a dropped mount, not a deleted file. Wait for it.
            self._store_call(self.store.requeue, job.id, refund_attempt=True, reason=err.reason,
                             stage=err.stage, message="paused: watch folder unavailable",
                             token=job.lease_token)
            log.warning("paused %s: watch folder %s is unavailable", path, root)
            return
        if err.transient and job.attempts < self.cfg.max_attempts:
            delay = self.cfg.retry_backoff_seconds * 2 ** (job.attempts - 1)
            self._store_call(self.store.requeue, job.id, not_before=time.time() + delay,
                             reason=err.reason, stage=err.stage, message=err.message,
                             token=job.lease_token)
            log.warning("retrying %s in %.1fs (attempt %d of %d): %s [%s/%s]", path, delay,
                        job.attempts, self.cfg.max_attempts, err.message, err.stage, err.reason)
            self.reporter.job_retried(err.stage, err.reason)
            return
        if not self._store_call(self.store.finish, job.id, "failed", reason=err.reason,
                                stage=err.stage, message=err.message, token=job.lease_token,
                                stage_seconds=stage_seconds, **resources):
            return
        log.error("failed %s: %s [%s/%s]", path, err.message, err.stage, err.reason)
        self.reporter.job_finished("failed", reason=err.reason, stage=err.stage)

    # -- housekeeping ----------------------------------------------------------------------
    def _housekeeping(self) -> None:
        while not self._stopping.wait(HOUSEKEEPING_SECONDS):
            try:
                self._store_writable = self.store.check_writable()
                self._take_over_expired()
                if self._store_error is not None:
                    self._store_back()
            except StoreUnavailable as e:
                self._store_down(e)
            self.model.unload_if_idle()
            if (self.model.error and not self.model.loaded
                    and time.monotonic() - self._last_model_attempt > MODEL_RETRY_SECONDS):
                self._load_model()

    # -- status (StatusSource) -------------------------------------------------------------
    def _store_figures(self) -> dict:
        with self._snapshot_lock:   # concurrent scrapes: one of them asks the store, the rest reuse
            now = time.monotonic()
            if self._snapshot_cache and now - self._snapshot_cache[0] < SNAPSHOT_CACHE_SECONDS:
                return self._snapshot_cache[1]
            return self._refresh_store_figures(now)

    def _refresh_store_figures(self, now: float) -> dict:
        try:
            counts = self.store.counts()
            figures = {"queue": counts["queued"], "counts": {k: counts[k] for k in
                                                             ("succeeded", "failed", "skipped")},
                       "last_success": self.store.last_success_at(),
                       "oldest_queued": self.store.oldest_queued_at()}
        except StoreUnavailable as e:
            self._store_down(e)
            # The last figures known (or none): the store's own series say it is down.
            old = self._snapshot_cache[1] if self._snapshot_cache else None
            return old or {"queue": 0, "counts": {}, "last_success": None,
                           "oldest_queued": None}
        self._snapshot_cache = (now, figures)
        return figures

    def snapshot(self) -> StatusSnapshot:
        figures = self._store_figures()
        output_dirs = [str(self.output_dir)] if self.output_dir else self.libraries.roots
        return StatusSnapshot(
            version=__version__, started_at=self.started_at, model_name=self.model.name,
            device=self.model.device, compute_type=self.model.compute_type,
            model_loaded=self.model.loaded, model_ready=self.model.ready,
            model_error=self.model.error, watcher_up=self.watcher.alive(),
            watch_dirs_unavailable=self.watcher.unavailable_count,
            store_writable=self._store_writable, queue_jobs=figures["queue"],
            running=tuple(r.view() for r in list(self._running.values())),
            workers=self.cfg.workers, counts=figures["counts"],
            last_success_at=figures["last_success"],
            dirs={"watch": self.libraries.roots, "output": output_dirs,
                  "store": ([] if self.store_kind == "postgresql"
                            else [str(Path(self.cfg.db).resolve().parent)])},
            startup_scan_seconds=self.watcher.scan_seconds,
            startup_scan_files=self.watcher.scan_files,
            node=self.node, store_kind=self.store_kind, store_up=self._store_error is None,
            store_error=self._store_error,
            leases_held=sum(1 for r in list(self._running.values()) if not r.lost),
            oldest_queued_at=figures["oldest_queued"],
        )
