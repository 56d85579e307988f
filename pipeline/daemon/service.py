"""The daemon: workers running the stages, retries, recovery, shutdown (intake: `intake.py`).

It owns the job store, the model and the watcher, and its collaborators as objects, each handed
what it needs: the store's health and the lease keeping (`leases.py`), the claimed jobs
(`claimed_job.py`), the prefetch (`prefetch_policy.py`), the status (`status.py`). It reports
events through a `Reporter`, answers `snapshot()` for whoever observes it (the exporter) and
`retry_failed_job()` for the status page. It knows nothing about HTTP.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

from ..api.queue import AnswerBounds, ApiJobs
from ..arr.webhooks import ArrWebhooks
from ..config import Config
from ..contract import WAITING_FOR_VRAM, GpuInventory, NullReporter, Reporter, StatusSnapshot
from ..errors import GpuOutOfMemory, SkipJob, StageError
from ..intake import Intake
from ..job import Job
from ..language.decision import Hint
from ..libraries import Libraries
from ..model import ModelManager
from ..notify.paths import PathMap
from ..stages import Cancelled
from ..store import LeaseSettings, StoreUnavailable, is_postgres_url, open_store
from ..subtitles.output import remove_stale_temps
from ..watcher import FileFilter, Watcher
from .claimed_job import ClaimedJobs, LeaseLost, Running
from .devices import DevicePool, Slot
from .leases import LeaseKeeper, StoreHealth
from .prefetch_policy import PrefetchPolicy
from .resources import GpuProbe, ResourceSampler
from .runner import RunResult
from .status import StatusReport, StoreStatus

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 1.0
MODEL_RETRY_SECONDS = 60.0
SUSPECT_UPTIME_SECONDS = 10.0   # see _up_long_enough


class Notifier(Protocol):
    """What the daemon asks of pipeline/notify's sender (the daemon does not import it)."""

    def attach(self, store, node: str) -> None: ...
    def start(self) -> None: ...
    def wake(self) -> None: ...
    def stop(self, grace: float) -> None: ...


class NodeNameInUse(RuntimeError):
    """Another live daemon uses this node name on the shared store."""


class Daemon:
    def __init__(self, cfg: Config, *, reporter: Reporter | None = None,
                 gpu_probe: GpuProbe | None = None, model: ModelManager | None = None,
                 on_finished: Callable[[Job], None] | None = None,
                 gpu_inventory: GpuInventory | None = None, notifier: Notifier | None = None):
        self.cfg = cfg
        self.on_finished = on_finished   # each job a worker ended, as stored
        self.notifier = notifier         # pipeline/notify's sender: empties the store's outbox
        self.reporter: Reporter = reporter or NullReporter()
        self.gpu_probe = gpu_probe
        self.started_at = time.time()
        self.node = cfg.node_name or socket.gethostname()
        self.store_url = cfg.store_url or cfg.db
        self.store_kind = "postgresql" if is_postgres_url(self.store_url) else "sqlite"
        self.store = open_store(self.store_url, LeaseSettings(
            self.node, cfg.lease_seconds, cfg.takeover_delay_seconds))
        self.libraries = Libraries.from_config(cfg)
        if notifier is not None:
            # From now on every finish() writes the job's notifications in its transaction.
            notifier.attach(self.store, self.node)
        if hasattr(self.store, "hold_node_name") and not self.store.hold_node_name():
            self.store.close()
            raise NodeNameInUse(f"another scribewatch daemon runs as node {self.node!r} on this "
                                "store: give each daemon its own node_name")
        self.output_dir = (Path(cfg.output_dir).resolve() if cfg.output_mode == "output_dir"
                           else None)
        # Which workers run where (the GPU plan): one model and runner per device.
        self.devices = DevicePool(cfg, self.output_dir, inventory=gpu_inventory, model=model)
        self.model = self.devices.primary.manager
        self.runner = self.devices.primary.runner
        # The HTTP API's requests (contract.ApiQueue): the first device's workers (and the
        # `api_workers`, which have replicas of their own there) take them first.
        # Kept in the store, their uploads spooled beside it (api/queue.py).
        self.api = ApiJobs(self.model, self.runner.options, store=self.store,
                           spool_dir=f"{Path(cfg.db).resolve()}.api-spool",
                           notify=self._notify, max_wait_seconds=cfg.api_max_wait_seconds,
                           bounds=AnswerBounds(cfg.api_answers_max_bytes,
                                               cfg.api_answers_max_age_seconds),
                           heartbeat_seconds=cfg.heartbeat_seconds)
        self.health = StoreHealth(self.store_kind)
        self.jobs = ClaimedJobs()              # the jobs the workers hold now
        self._stopping = threading.Event()
        self._stop_now = False
        self.leases = LeaseKeeper(
            self.store, self.health, self.jobs, node=self.node, max_attempts=cfg.max_attempts,
            heartbeat_seconds=cfg.heartbeat_seconds, stopping=self._stopping,
            stopping_now=lambda: self._stop_now, on_requeued=self._notify,
            on_finished=self._announce)
        self.prefetch = PrefetchPolicy(
            cfg, self.store, self.health, self.jobs, self.devices, self.libraries,
            available_libraries=self._available_libraries, suspects=self._up_long_enough)
        self.prefetcher = self.prefetch.prefetcher
        self.intake = Intake(self.store, settings=cfg,
                             target_language=self.runner.target_language,
                             output_dir=self.output_dir, on_queued=self._notify,
                             libraries=self.libraries)
        # Sonarr and Radarr webhooks (contract.ArrHooks): imports through intake, ahead of the
        # folder backlog; their paths through the notifications' `path_map`, the other way.
        self.arr = ArrWebhooks(self.store, self.intake, self.libraries, PathMap(cfg.path_map),
                               self.output_dir)
        self.watcher = Watcher(
            self.libraries.roots, file_filter=FileFilter(cfg.include_extensions, cfg.ignore_globs),
            stability_seconds=cfg.stability_seconds, on_ready=self.intake.take,
            is_known=self.intake.is_known,
            recursive=cfg.recursive, polling=cfg.polling, poll_interval=cfg.poll_interval_seconds,
            rescan_interval=cfg.rescan_interval_seconds, scan_batch=self.leases.scan_batch)
        self._wake = threading.Condition()
        self._wake_generation = 0
        self._threads: list[threading.Thread] = []
        self.status = StoreStatus(self.store, on_unavailable=self.health.down)
        self.report = StatusReport(
            figures=self.status, health=self.health, jobs=self.jobs, devices=self.devices,
            watcher=self.watcher, libraries=self.libraries, api=self.api, node=self.node,
            store_folder=(None if self.store_kind == "postgresql"
                          else str(Path(cfg.db).resolve().parent)),
            output_dir=self.output_dir, started_at=self.started_at)
        self._last_model_attempt: dict[str, float] = {}
        self._loading: set[str] = set()

    def _available_libraries(self) -> list[str]:
        """The libraries whose watch roots are mounted now: the only ones a job is claimed from."""
        return self.libraries.names_of(self.watcher.available_roots)

    def _notify(self) -> None:
        self.prefetch.transcribing()   # a file queued while every worker is busy: prepare it
        with self._wake:
            # a notify between a worker's claim and its wait is not lost
            self._wake_generation += 1
            self._wake.notify_all()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._started_monotonic = time.monotonic()
        # The exporter may have been attached after __init__.
        self.intake.reporter = self.api.reporter = self.leases.reporter = self.reporter
        for slot in self.devices.slots:
            slot.manager.reporter = self.reporter
        self.reporter.languages_expected(self.runner.chain.certain_decisions())
        self.leases.recover_after_death()
        for orphan in self.api.remove_orphans():
            log.info("removed an API upload no job needs (left by a kill): %s", orphan)
        if self.notifier is not None:
            self.notifier.start()
        folders = self.libraries.roots + ([str(self.output_dir)] if self.output_dir else [])
        for stale in remove_stale_temps([f for f in folders if os.path.isdir(f)]):
            log.info("removed temporary file left by a crash: %s", stale)
        self._load_models()
        self.prefetcher.start()
        self.watcher.start()
        for worker, slot in self.devices.workers:
            self._spawn(self._worker, f"worker-{worker}", worker, slot)
        for i in range(self.cfg.api_workers):   # never claim a folder job
            self._spawn(self._worker, f"api-worker-{i}", f"api{i}", self.devices.primary, False)
        self._spawn(self._housekeeping, "housekeeping")
        self._spawn(self.leases.heartbeat, "heartbeat")

    def _spawn(self, target, name, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _load_models(self) -> None:
        """Load, on a thread each, the models of the devices that may run and have none yet:
        at start, after a load failed (every MODEL_RETRY_SECONDS) and when a device comes
        into use (a GPU that had no memory, the CPU fallback)."""
        now = time.monotonic()
        for slot in self.devices.slots:
            m = slot.manager
            if (not slot.running or slot.key in self._loading or m.loaded
                    or (m.loaded_once and not m.error)
                    or (m.error and now - self._last_model_attempt.get(slot.key, 0.0)
                        < MODEL_RETRY_SECONDS)):
                continue
            self._loading.add(slot.key)
            self._last_model_attempt[slot.key] = now
            self._spawn(self._load_model, f"model-load-{slot.key}", slot)

    def _load_model(self, slot: Slot) -> bool:
        try:
            slot.manager.load()
        except GpuOutOfMemory as e:
            self.reporter.gpu_out_of_memory(slot.index)
            self.devices.out_of_memory(slot, str(e))
            return False
        except Exception:
            return False   # logged and reported by the manager; housekeeping retries
        finally:
            self._loading.discard(slot.key)
        self._notify()
        return True

    def stop(self, grace: float | None = None, hint: str = "") -> None:
        """Stop intake, let running jobs finish within the grace period, else re-queue them.
        `stop_now()` (a second Ctrl-C) cuts the wait short. `hint`: how to do that, logged."""
        grace = self.cfg.shutdown_grace_seconds if grace is None else grace
        running = len(self.jobs)
        log.info("stopping: no new jobs; waiting up to %.0fs for %d running job(s)%s",
                 grace, running, f"; {hint}" if hint and running else "")
        self._stopping.set()
        self.api.close()
        self.prefetcher.stop()
        self.watcher.stop()
        self._notify()
        # Plain sleeps, polling a flag: stop_now() is called from a signal handler in this
        # thread, where taking a lock (an Event's) could deadlock.
        deadline = time.monotonic() + grace
        while self.jobs and time.monotonic() < deadline and not self._stop_now:
            time.sleep(0.1)
        if self.jobs:
            for r in self.jobs.all():
                r.cancel = True   # transcription checks this between segments
            deadline = time.monotonic() + 5
            while self.jobs and time.monotonic() < deadline and not self._stop_now:
                time.sleep(0.1)
        for r in self.jobs.all():
            # Still inside a long native call: put it back ourselves; the process exits next.
            if r.settle(lambda: self.leases.record(self.store.requeue, r.job.id, token=r.token,
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

    def _worker(self, worker: str, slot: Slot, folder: bool = True) -> None:
        while not self._stopping.is_set():
            try:
                self._work_once(worker, slot, folder)
            except Exception:   # a dead worker thread would leave the daemon up but idle
                log.exception("worker %s: unexpected error; going on in 1 s", worker)
                self._stopping.wait(1.0)

    def _work_once(self, worker: str, slot: Slot, folder: bool) -> None:
        """One turn of a worker: an API request, or a claimed job, or a wait for work."""
        generation = self._wake_generation
        job = None
        # An API request first: a client waits for it, a queued file waits anyway.
        if (slot is self.devices.primary and slot.manager.ready
                and self.api.run_next(worker)):
            return
        if folder and self.health.up and self.devices.may_claim(worker, slot):
            try:
                job = self.store.claim_next(worker, self._available_libraries(),
                                            suspects=self._up_long_enough())
            except StoreUnavailable as e:
                self.health.down(e)   # no claims until housekeeping reaches it again
        if job is None:
            timeout = self._idle_wait()
            with self._wake:
                self._wake.wait_for(lambda: self._wake_generation != generation, timeout)
            return
        try:
            self._run(job, worker, slot)
        except Exception:   # never let a bug kill the worker thread
            log.exception("worker %s: unexpected error around job %d", worker, job.id)

    def _idle_wait(self) -> float:
        try:
            wakeup = self.store.next_wakeup()
        except StoreUnavailable:
            return 1.0
        return 1.0 if wakeup is None else max(0.05, min(1.0, wakeup - time.time()))

    def _run(self, job: Job, worker: str, slot: Slot) -> None:
        job = self.libraries.localize(job)   # another node may have queued it at its own path
        path = Path(job.path)
        running = Running(job, worker, slot, self.store, self.reporter,
                          lease_seconds=self.cfg.lease_seconds,
                          heartbeat_seconds=self.cfg.heartbeat_seconds,
                          on_transcribing=self.prefetch.transcribing)
        self.jobs.add(running)
        self.reporter.job_started(max(0.0, job.started_at - job.detected_at))
        log.info("started %s (job %d, attempt %d%s)", path, job.id, job.attempts,
                 f", taken over {job.takeovers}x" if job.takeovers else "")
        stage_seconds = running.stage_seconds
        # GPU figures belong in the summary only when this job uses the GPU: on a CPU job they
        # would show someone else's load (a Plex transcode).
        sampler = ResourceSampler(self.gpu_probe if slot.manager.device == "cuda" else None)

        def summary() -> dict:   # what the job's row keeps besides its outcome
            return {**sampler.summary(), "stage_spans": running.stage_spans}
        try:
            with sampler:
                # The job's own earlier subtitles are no reason to skip it (`retry --path`).
                result = slot.runner.run(path, Path(job.root), running, own_outputs=job.outputs,
                                         prefetched=self.prefetcher.take(job),
                                         hint=Hint.from_dict(job.language_hint))
                self._succeeded(running, result)
        except LeaseLost:
            running.settle(lambda: None)   # the job is another node's now: nothing to write
        except Cancelled:
            if running.settle(lambda: self.leases.record(self.store.requeue, job.id,
                                                       token=running.token,
                                                       refund_attempt=True)):
                log.warning("job %d (%s) interrupted by shutdown: queued again", job.id, path)
        except GpuOutOfMemory as oom:
            # Not the file's fault: back to the queue (the attempt refunded, no failure, no
            # retry counted) while the device shrinks what it runs, or waits for memory.
            message = f"CUDA out of memory on GPU {slot.index}: {oom}"
            if running.settle(functools.partial(
                    self.store.requeue, job.id, refund_attempt=True, reason=WAITING_FOR_VRAM,
                    stage=running.stage, message=message)):
                log.warning("job %d (%s): %s: queued again [%s]", job.id, path, message,
                            WAITING_FOR_VRAM)
                self.reporter.gpu_out_of_memory(slot.index)
                self.devices.out_of_memory(slot, str(oom))
                self._notify()
        # settle() runs the action at once, but binding the exception now (partial) keeps the
        # action correct even if that ever changed: Python unbinds `as` names after the block.
        except SkipJob as skip:
            running.settle(functools.partial(self._skipped, job, skip, stage_seconds,
                                             summary()))
        except StageError as err:
            running.settle(functools.partial(self._failed, job, err, stage_seconds,
                                             summary()))
        # a bug or something unforeseen: recorded, counted, the daemon goes on
        except Exception as e:
            log.exception("job %d (%s): unexpected error in %s", job.id, path, running.stage)
            err = StageError("internal_error", f"{path}: {type(e).__name__}: {e}", running.stage)
            running.settle(functools.partial(self._failed, job, err, stage_seconds,
                                             summary()))
        else:
            self.leases.record(self.store.update, job.id, running.token, **summary())
        finally:
            self.jobs.remove(worker)

    def _skipped(self, job: Job, skip: SkipJob, stage_seconds: dict, resources: dict) -> None:
        if not self.leases.record(self.store.finish, job.id, "skipped", reason=skip.reason,
                                message=skip.message, token=job.lease_token,
                                stage_seconds=stage_seconds, **resources):
            return
        log.info("skipped %s: %s [%s]", job.path, skip.message, skip.reason)
        self.reporter.job_finished("skipped", reason=skip.reason, audio_seconds=0.0)
        self._announce(job.id)

    def _succeeded(self, running: Running, result: RunResult) -> None:
        job, transcript = running.job, result.transcript
        outputs = result.outputs + result.translation
        finished = time.time()
        processing = finished - job.started_at

        def succeeded():
            if not self.leases.record(self.store.finish, job.id, "succeeded", outputs=outputs,
                                    token=running.token, stage_seconds=running.stage_seconds,
                                    audio_seconds=transcript.duration):
                return
            self.reporter.job_finished("succeeded", job_seconds=finished - job.detected_at,
                                       audio_seconds=transcript.duration,
                                       processing_seconds=processing)
            if result.outputs:
                self.reporter.subtitles_written("transcription")
            if result.translation:
                self.reporter.subtitles_written("translation")
            self._announce(job.id)
        if not running.settle(succeeded):
            return   # shutdown re-queued it meanwhile: the next start writes it again, atomically
        log.info("done %s: %.1fs of %s audio in %.1fs (%s)", job.path, transcript.duration,
                 transcript.language, processing, ", ".join(Path(o).name for o in outputs))

    def _failed(self, job: Job, err: StageError, stage_seconds: dict, resources: dict) -> None:
        path, root = job.path, job.root
        if err.reason in ("vanished", "unreadable") and not Watcher.root_ok(root):
            # The whole watch folder is gone: a dropped mount, not a deleted file. Wait for it.
            self.leases.record(self.store.requeue, job.id, refund_attempt=True, reason=err.reason,
                             stage=err.stage, message="paused: watch folder unavailable",
                             token=job.lease_token)
            log.warning("paused %s: watch folder %s is unavailable", path, root)
            return
        if err.transient and job.attempts < self.cfg.max_attempts:
            delay = self.cfg.retry_backoff_seconds * 2 ** (job.attempts - 1)
            self.leases.record(self.store.requeue, job.id, not_before=time.time() + delay,
                             reason=err.reason, stage=err.stage, message=err.message,
                             token=job.lease_token)
            log.warning("retrying %s in %.1fs (attempt %d of %d): %s [%s/%s]", path, delay,
                        job.attempts, self.cfg.max_attempts, err.message, err.stage, err.reason)
            self.reporter.job_retried(err.stage, err.reason)
            return
        if not self.leases.record(self.store.finish, job.id, "failed", reason=err.reason,
                                stage=err.stage, message=err.message, token=job.lease_token,
                                stage_seconds=stage_seconds, **resources):
            return
        log.error("failed %s: %s [%s/%s]", path, err.message, err.stage, err.reason)
        self.reporter.job_finished("failed", reason=err.reason, stage=err.stage)
        self._announce(job.id)

    def _announce(self, job_id: int) -> None:
        if self.notifier is not None:
            self.notifier.wake()   # its rows are in the outbox already (finish wrote them)
        if self.on_finished is not None:
            try:
                self.on_finished(self.store.get(job_id))
            except Exception:   # an observer's bug must not fail the job it observes
                log.exception("job %d: on_finished failed", job_id)

    # -- housekeeping ----------------------------------------------------------------------
    def _housekeeping(self) -> None:
        while not self._stopping.wait(HOUSEKEEPING_SECONDS):
            try:
                self.health.writable = self.store.check_writable()
                self.leases.keep_node_name()
                self.leases.take_over_expired()
                if not self.health.up:
                    self._store_back()
            except StoreUnavailable as e:
                self.health.down(e)
            except Exception:   # the leases, unloads and retries must go on after a bug
                log.exception("housekeeping: unexpected error")
            for slot in self.devices.slots:
                slot.manager.unload_if_idle()
            self.devices.tick()
            self._load_models()

    # -- status (StatusSource) and control (JobControl) ------------------------------------
    def _store_back(self) -> None:
        self.health.back()
        # What arrived meanwhile: the files intake deferred, and a rescan for any scan batch
        # whose commit was lost with the connection.
        retried = self.intake.retry_deferred()
        for root in self.watcher.available_roots:
            self.watcher.scan_later(root, root)
        if retried:
            log.info("took %d file(s) that arrived while the store was away", retried)
        self._notify()

    def snapshot(self, details: bool = False) -> StatusSnapshot:
        return self.report.snapshot(details)

    def retry_failed_job(self, job_id: int) -> str:
        """The status page's retry button: `scribewatch retry --job ID` in this process."""
        if self.store.retry_failed([job_id]):
            log.info("job %d queued again on request (status page)", job_id)
            self.status.invalidate()
            self._notify()
            return "queued"
        return "not_found" if self.store.get(job_id) is None else "not_failed"
