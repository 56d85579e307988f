"""The daemon: workers running the stages, retries, recovery, shutdown (intake: `intake.py`).

It owns the job store, the model and the watcher, reports events through a `Reporter` and
answers `snapshot()` for whoever observes it (the exporter). It knows nothing about HTTP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from pathlib import Path

from .. import __version__

from . import stages
from .config import Config
from .errors import SkipJob, StageError
from .events import NullReporter, Reporter, RunningJob, StatusSnapshot
from .guards import check_transcript
from .intake import Intake
from .model import ModelManager
from .output import find_sidecar, output_paths, remove_stale_temps
from .resources import GpuProbe, ResourceSampler
from .job import Job
from .store import SUSPECT_STRIKES, JobStore
from .watcher import FileFilter, Watcher

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 1.0
MODEL_RETRY_SECONDS = 60.0
SNAPSHOT_CACHE_SECONDS = 1.0   # scrapes are frequent and concurrent; the store need not be asked each time
# Transcription progress is checkpointed in the store at fixed positions in the audio, not on a
# timer: a file that kills the daemon at one spot then dies at the same recorded checkpoint every
# time, which is what tells it apart from a kill from outside. Whisper works in 30 s windows, so
# finer is pointless; at most ~100 per pass keeps a long film's writes negligible.
CHECKPOINT_MIN_AUDIO_SECONDS = 30.0
CHECKPOINTS_PER_PASS = 100


@dataclasses.dataclass
class _Running:
    job_id: int
    worker: str
    started_at: float
    path: str = ""           # the file and its watch folder: /api/status and `scribewatch status`
    root: str = ""
    progress: float = 0.0
    audio_seconds: float | None = None
    cancel: bool = False
    # Whoever settles the job first (the worker finishing it, or shutdown giving up on it and
    # re-queueing it) writes its final state; the other one then leaves it alone.
    settled: bool = False
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def settle(self, action) -> bool:
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            action()
            return True


class Daemon:
    def __init__(self, cfg: Config, *, reporter: Reporter | None = None,
                 gpu_probe: GpuProbe | None = None, model: ModelManager | None = None):
        self.cfg = cfg
        self.reporter: Reporter = reporter or NullReporter()
        self.gpu_probe = gpu_probe
        self.started_at = time.time()
        self.store = JobStore(cfg.db)
        self.model = model or ModelManager(
            cfg.model, models_dir=cfg.models_dir, device=cfg.device,
            compute_type=cfg.compute_type, cpu_threads=cfg.cpu_threads, workers=cfg.workers,
            idle_unload_minutes=cfg.model_idle_unload_minutes, nice=cfg.transcribe_nice,
            idle_class=cfg.transcribe_idle_class)
        self.output_dir = Path(cfg.output_dir).resolve() if cfg.output_mode == "output_dir" else None
        self.intake = Intake(self.store, skip_existing_subtitles=cfg.skip_existing_subtitles,
                             target_language=lambda: self.target_language,
                             subtitle_folders=self._subtitle_folders, on_queued=self._notify)
        self.watcher = Watcher(
            cfg.watch_dirs, file_filter=FileFilter(cfg.include_extensions, cfg.ignore_globs),
            stability_seconds=cfg.stability_seconds, on_ready=self.intake.take,
            is_known=self.intake.is_known,
            recursive=cfg.recursive, polling=cfg.polling, poll_interval=cfg.poll_interval_seconds,
            rescan_interval=cfg.rescan_interval_seconds, scan_batch=self.store.batch)
        self.options = stages.TranscribeOptions(
            language=None if cfg.language == "auto" else cfg.language, beam_size=cfg.beam_size,
            vad=cfg.vad, batch_size=cfg.batch_size,
            batch_min_audio_seconds=cfg.batch_min_audio_seconds)
        self._running: dict[str, _Running] = {}
        self._wake = threading.Condition()
        self._wake_generation = 0
        self._stopping = threading.Event()
        self._stop_now = False
        self._threads: list[threading.Thread] = []
        self._store_writable = True
        self._snapshot_cache: tuple[float, dict] | None = None
        self._snapshot_lock = threading.Lock()
        self._last_model_attempt = 0.0

    # -- the language we write -------------------------------------------------------------
    @property
    def target_language(self) -> str | None:
        """Known before transcription when forced, or when the model only speaks English."""
        if self.options.language:
            return self.options.language
        if self.model.name.endswith(".en"):
            return "en"
        return None

    def _subtitle_folders(self, source: Path, root: Path) -> list[Path]:
        folders = [source.parent]
        if self.output_dir is not None:
            folders.append(self.output_dir / source.parent.relative_to(root))
        return folders

    def _notify(self) -> None:
        with self._wake:
            self._wake_generation += 1   # a notify between a worker's claim and its wait is not lost
            self._wake.notify_all()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        # The exporter may have been attached after __init__.
        self.model.reporter = self.intake.reporter = self.reporter
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
        folders = list(self.cfg.watch_dirs) + ([str(self.output_dir)] if self.output_dir else [])
        for stale in remove_stale_temps([f for f in folders if os.path.isdir(f)]):
            log.info("removed temporary file left by a crash: %s", stale)
        self._spawn(self._load_model, "model-load")
        self.watcher.start()
        for i in range(self.cfg.workers):
            self._spawn(self._worker, f"worker-{i}", str(i))
        self._spawn(self._housekeeping, "housekeeping")

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
            if r.settle(lambda: self.store.requeue(r.job_id, refund_attempt=True)):
                log.warning("job %d %s: queued again", r.job_id,
                            "stopped at once" if self._stop_now
                            else "did not finish within the grace period")
        log.info("stopped")

    def stop_now(self) -> None:
        """During stop(): re-queue the running jobs now instead of waiting for them."""
        self._stop_now = True

    # -- workers ---------------------------------------------------------------------------
    def _worker(self, worker: str) -> None:
        while not self._stopping.is_set():
            generation = self._wake_generation
            job = None
            if self.model.ready:
                job = self.store.claim_next(worker, self.watcher.available_roots)
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
        wakeup = self.store.next_wakeup()
        if wakeup is None:
            return 1.0
        return max(0.05, min(1.0, wakeup - time.time()))

    def _run(self, job: Job, worker: str) -> None:
        path, root = Path(job.path), Path(job.root)
        running = _Running(job.id, worker, job.started_at, job.path, job.root)
        self._running[worker] = running
        self.reporter.job_started(max(0.0, job.started_at - job.detected_at))
        log.info("started %s (job %d, attempt %d)", path, job.id, job.attempts)
        stage_seconds: dict[str, float] = {}
        current = {"stage": "probe"}

        def timed(stage: str, fn, *args, **kwargs):
            if running.settled:
                raise stages.Cancelled()   # shutdown already gave up on this job
            current["stage"] = stage
            self.store.set_stage(job.id, stage, stage_seconds)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + dt
                self.reporter.stage_observed(stage, dt)

        # GPU figures belong in the summary only when this job uses the GPU: on a CPU job they
        # would show someone else's load (a Plex transcode).
        sampler = ResourceSampler(self.gpu_probe if self.model.device == "cuda" else None)
        try:
            with sampler:
                self._stages(job, path, root, running, timed, stage_seconds)
        except stages.Cancelled:
            if running.settle(lambda: self.store.requeue(job.id, refund_attempt=True)):
                log.warning("job %d (%s) interrupted by shutdown: queued again", job.id, path)
        except SkipJob as s:
            def skipped():
                self.store.finish(job.id, "skipped", reason=s.reason, message=s.message,
                                  stage_seconds=stage_seconds, **sampler.summary())
                log.info("skipped %s: %s [%s]", path, s.message, s.reason)
                self.reporter.job_finished("skipped", reason=s.reason, audio_seconds=0.0)
            running.settle(skipped)
        except StageError as e:
            running.settle(lambda: self._failed(job, e, stage_seconds, sampler.summary()))
        except Exception as e:   # a bug or something unforeseen: recorded, counted, the daemon goes on
            log.exception("job %d (%s): unexpected error in %s", job.id, path, current["stage"])
            err = StageError("internal_error", f"{path}: {type(e).__name__}: {e}", current["stage"])
            running.settle(lambda: self._failed(job, err, stage_seconds, sampler.summary()))
        else:
            self.store.update(job.id, **sampler.summary())
        finally:
            self._running.pop(worker, None)

    def _stages(self, job, path: Path, root: Path, running: _Running, timed,
                stage_seconds: dict) -> None:
        probe = timed("probe", stages.probe, path)
        self.store.update(job.id, audio_seconds=probe.duration)
        language = self.target_language
        if (self.cfg.skip_embedded_subtitles and language
                and language in probe.subtitle_languages):
            raise SkipJob("embedded_subtitle",
                          f"{path}: the container already has a '{language}' subtitle stream")
        audio = timed("decode", stages.decode, path)
        running.audio_seconds = len(audio) / stages.SAMPLE_RATE
        self.store.update(job.id, audio_seconds=running.audio_seconds)
        transcript = timed("transcribe", self._transcribe, audio, running)
        del audio
        self.store.update(job.id, language=transcript.language,
                          language_probability=transcript.language_probability,
                          model=self.model.name, device=self.model.device,
                          compute_type=self.model.compute_type,
                          suspect=list(transcript.suspect) or None)
        stages.require_speech(transcript, path)
        if self.cfg.skip_existing_subtitles and language is None:
            # Language detected only now: a subtitle in that language may already be there.
            sidecar = find_sidecar(path, transcript.language, self._subtitle_folders(path, root))
            # One this job wrote before is no reason to skip (`scribewatch retry --path`).
            if sidecar is not None and str(sidecar) not in job.outputs:
                raise SkipJob("subtitle_exists", f"{path}: {sidecar.name} already exists")
        if not path.exists():
            raise StageError("vanished", f"{path}: the file was removed during the job", "write")
        targets = output_paths(path, root, transcript.language, self.cfg.output_formats,
                               self.output_dir)
        outputs = timed("write", stages.write, transcript, targets)
        finished = time.time()
        processing = finished - job.started_at

        def succeeded():
            self.store.finish(job.id, "succeeded", outputs=outputs, stage_seconds=stage_seconds,
                              audio_seconds=transcript.duration)
            self.reporter.job_finished("succeeded", job_seconds=finished - job.detected_at,
                                       audio_seconds=transcript.duration,
                                       processing_seconds=processing)
        if not running.settle(succeeded):
            return   # shutdown re-queued it meanwhile: the next start writes it again, atomically
        log.info("done %s: %.1fs of %s audio in %.1fs (%s)", path, transcript.duration,
                 transcript.language, processing, ", ".join(Path(o).name for o in outputs))

    def _transcribe(self, audio, running: _Running):
        try:
            use = self.model.use()
            model = use.__enter__()   # entered here so a load failure is the job's reason code
        except Exception as e:
            raise StageError("model_load_failed", f"model {self.model.name} failed to load: {e}") from None
        with contextlib.ExitStack() as held:
            held.push(use)
            batched = (self.model.batched(model)
                       if self.options.batch_size and len(audio) / stages.SAMPLE_RATE
                       >= self.options.batch_min_audio_seconds else None)

            duration = len(audio) / stages.SAMPLE_RATE
            step = max(CHECKPOINT_MIN_AUDIO_SECONDS, duration / CHECKPOINTS_PER_PASS)
            recorded = [0.0]

            def progressed(ratio: float, passes_before: int) -> None:
                running.progress = ratio
                # Seconds of audio transcribed in this stage (a re-run counts on from the first).
                line = (passes_before * duration + ratio * duration) // step * step
                if line > recorded[0]:
                    recorded[0] = line
                    self.store.set_checkpoint(running.job_id, line)

            def run(safer: bool):
                return stages.transcribe(
                    model, audio, self.options, batched_pipeline=batched,
                    model_name=self.model.name, safer=safer,
                    on_progress=lambda p: progressed(p, int(safer)),
                    should_stop=lambda: running.cancel)

            transcript = run(False)
            findings = check_transcript(transcript)
            if not findings:
                return transcript
            # Whisper loops and invents text on music and silence; one re-run with safer
            # settings usually fixes it. Either way the job record says what was seen.
            self.reporter.suspect_transcript()
            log.warning("suspect transcript (%s): re-running with safer settings",
                        "; ".join(findings))
            running.progress = 0.0
            transcript = run(True)
            after = check_transcript(transcript)
            flagged = [f"first run: {f}" for f in findings] + [f"after re-run: {f}" for f in after]
            return dataclasses.replace(transcript, suspect=tuple(flagged))

    def _failed(self, job: Job, err: StageError, stage_seconds: dict, resources: dict) -> None:
        path, root = job.path, job.root
        if err.reason in ("vanished", "unreadable") and not Watcher._root_ok(root):
            # The whole watch folder is gone: a dropped mount, not a deleted file. Wait for it.
            self.store.requeue(job.id, refund_attempt=True, reason=err.reason,
                               stage=err.stage, message="paused: watch folder unavailable")
            log.warning("paused %s: watch folder %s is unavailable", path, root)
            return
        if err.transient and job.attempts < self.cfg.max_attempts:
            delay = self.cfg.retry_backoff_seconds * 2 ** (job.attempts - 1)
            self.store.requeue(job.id, not_before=time.time() + delay, reason=err.reason,
                               stage=err.stage, message=err.message)
            log.warning("retrying %s in %.1fs (attempt %d of %d): %s [%s/%s]", path, delay,
                        job.attempts, self.cfg.max_attempts, err.message, err.stage, err.reason)
            self.reporter.job_retried(err.stage, err.reason)
            return
        self.store.finish(job.id, "failed", reason=err.reason, stage=err.stage,
                          message=err.message, stage_seconds=stage_seconds, **resources)
        log.error("failed %s: %s [%s/%s]", path, err.message, err.stage, err.reason)
        self.reporter.job_finished("failed", reason=err.reason, stage=err.stage)

    # -- housekeeping ----------------------------------------------------------------------
    def _housekeeping(self) -> None:
        while not self._stopping.wait(HOUSEKEEPING_SECONDS):
            self._store_writable = self.store.check_writable()
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
        counts = self.store.counts()
        figures = {"queue": counts["queued"], "counts": {k: counts[k] for k in
                                                         ("succeeded", "failed", "skipped")},
                   "last_success": self.store.last_success_at()}
        self._snapshot_cache = (now, figures)
        return figures

    def snapshot(self) -> StatusSnapshot:
        figures = self._store_figures()
        output_dirs = [str(self.output_dir)] if self.output_dir else list(self.cfg.watch_dirs)
        return StatusSnapshot(
            version=__version__, started_at=self.started_at, model_name=self.model.name,
            device=self.model.device, compute_type=self.model.compute_type,
            model_loaded=self.model.loaded, model_ready=self.model.ready,
            model_error=self.model.error, watcher_up=self.watcher.alive(),
            watch_dirs_unavailable=self.watcher.unavailable_count,
            store_writable=self._store_writable, queue_jobs=figures["queue"],
            running=tuple(RunningJob(r.job_id, r.worker, r.started_at, r.progress, r.audio_seconds,
                                     path=r.path, watch_dir=r.root)
                          for r in list(self._running.values())),
            workers=self.cfg.workers, counts=figures["counts"],
            last_success_at=figures["last_success"],
            dirs={"watch": list(self.cfg.watch_dirs), "output": output_dirs,
                  "store": [str(Path(self.cfg.db).resolve().parent)]},
            startup_scan_seconds=self.watcher.scan_seconds,
            startup_scan_files=self.watcher.scan_files,
        )
