"""Finding, loading, keeping warm and idle-unloading the Whisper model.

The model is loaded once and shared by the workers. With `model_idle_unload_minutes` it is freed
after that much idle time (homelab GPUs are shared with Plex transcoding and games) and loaded
again by the next job.

The model is always built on a short-lived thread of its own, in the SCHED_IDLE class
(`transcribe_idle_class`) or at the priority set by `transcribe_nice`. CTranslate2 starts its
compute threads (and they their OpenMP teams) while it is built, and Linux threads inherit the
scheduling class and nice value of the thread that starts them: so the inference runs below the
daemon's other threads (the /metrics server answers a scrape at once) and below whatever else
the box runs, a Plex transcode first of all. SCHED_IDLE, which the kernel preempts at once, is
the user's choice, not the default: it did not make a burst of scrapes measurably faster while
transcribing, and a transcode that takes every core would stop transcription altogether
(docs/performance.md, "Scrape"). Building the model off the main
thread also makes the daemon and `scribewatch transcribe` behave alike: libgomp spins for work
much longer when the thread that first used it is gone, which GOMP_SPINCOUNT below now bounds
(docs/performance.md, "Which thread builds the model").
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time

from .contract import NullReporter, Reporter
from .errors import GpuOutOfMemory, is_cuda_out_of_memory
from .packaged_models import locate

log = logging.getLogger(__name__)

# How long an idle OpenMP thread of CTranslate2's bundled libgomp spins before it sleeps. Read
# once, when the library loads (the first `import ctranslate2`, below this module), so it is set
# here. libgomp's default (300,000 spins) keeps a core busy while a sibling thread waits for
# CPU: next to one busy process (a Plex transcode), with the inference at a lower priority, a
# 0.3-s transcription took 35 s. 1,000 spins is as fast as the default on an idle machine and
# keeps the contended case near a plain script's (docs/performance.md). A value the user set
# wins.
GOMP_SPINCOUNT = "1000"
os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)

DEFAULT_MODEL = "tiny.en"


def resolve_model(model: str, models_dir: str | None = None) -> tuple[str, str]:
    """(what to hand WhisperModel, a short name for logs and labels — never a path).

    Local copies win over hub downloads, so the default works on a machine without internet;
    `base` is assembled from the `multilingual` extra's packages when they are installed
    (packaged_models.py). Which source was used is always logged.
    """
    source = locate(model, models_dir)
    log.info("model %s: %s (%s)", source.name, source.path, source.origin)
    return source.path, source.name


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """`auto` picks CUDA + float16 where a GPU is usable, else CPU + int8."""
    if device == "auto":
        try:
            import ctranslate2

            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        except Exception:  # a broken CUDA install must not stop a CPU box
            device = "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


class ModelManager:
    def __init__(self, model: str, *, models_dir: str | None = None, device: str = "auto",
                 compute_type: str = "auto", cpu_threads: int = 0, idle_unload_minutes: float = 0,
                 workers: int = 1, nice: int = 0, idle_class: bool = False,
                 reporter: Reporter | None = None, warmup: bool | None = None,
                 device_index: int = 0):
        self.source, self.name = resolve_model(model, models_dir)
        self.device, self.compute_type = resolve_device(device, compute_type)
        self.device_index = device_index   # the CUDA device (one manager per GPU)
        self.cpu_threads = cpu_threads or (os.cpu_count() or 1)
        self.workers = workers
        self.nice = nice
        self.idle_class = idle_class
        self.idle_unload_seconds = idle_unload_minutes * 60
        self.reporter = reporter or NullReporter()
        self._lock = threading.RLock()
        self._model = None
        self._batched = None
        self._users = 0
        self._last_used = time.monotonic()
        self.loaded_once = False
        self.error: str | None = None
        self.load_seconds: float | None = None
        # Default: on a GPU only. There the first call JIT-compiles PTX (12.3 s on an H200); on
        # CPU bench/diagnostics/warmup.py found no first-call cost worth the load-time seconds.
        self.warmup = self.device == "cuda" if warmup is None else warmup
        self.warmup_seconds: float | None = None   # of the latest load; None: not warmed
        self.warmups = 0                            # warm-ups run, one per load

    @property
    def where(self) -> str:
        """`cpu` or `cuda:N`, for logs."""
        return f"cuda:{self.device_index}" if self.device == "cuda" else self.device

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def ready(self) -> bool:
        """Loaded, or unloaded for idleness after loading fine (it will load again on demand)."""
        return self.loaded or (self.loaded_once and self.error is None)

    def load(self):
        with self._lock:
            if self._model is not None:
                return self._model
            from faster_whisper import WhisperModel

            started = time.perf_counter()
            timings: dict = {}

            def build():
                model = WhisperModel(self.source, device=self.device,
                                     device_index=self.device_index,
                                     compute_type=self.compute_type,
                                     cpu_threads=self.cpu_threads,
                                     # one CTranslate2 replica per worker, or they queue
                                     num_workers=self.workers)
                timings["built"] = time.perf_counter()
                if self.warmup:
                    timings["warmup"] = warm_up(model)
                return model

            try:
                self._model = _on_builder_thread(build, self.nice, self.idle_class)
            except Exception as e:
                if is_cuda_out_of_memory(e):
                    # Not broken: the GPU is full now. The daemon shrinks or waits; no error
                    # that would keep the workers off this model until the next load retry.
                    log.warning("model %s: no GPU memory to load on %s: %s", self.name,
                                self.where, e)
                    raise GpuOutOfMemory(str(e)) from None
                self.error = f"{type(e).__name__}: {e}"
                log.error("model %s failed to load on %s/%s: %s", self.name, self.where,
                          self.compute_type, self.error)
                self.reporter.model_load_failed()
                raise
            # Load seconds stay the build alone, comparable with earlier releases.
            self.load_seconds = timings["built"] - started
            self.warmup_seconds = timings.get("warmup")
            if self.warmup_seconds is not None:
                self.warmups += 1
                log.info("model %s warmed up in %.2fs", self.name, self.warmup_seconds)
            self.error = None
            self.loaded_once = True
            self._last_used = time.monotonic()
            log.info("model %s loaded on %s/%s in %.2fs", self.name, self.where,
                     self.compute_type, self.load_seconds)
            self.reporter.model_loaded(self.name, self.device, self.compute_type, self.load_seconds)
            return self._model

    @contextlib.contextmanager
    def use(self):
        """Hold the model for one job; it is never unloaded while held."""
        with self._lock:
            model = self.load()
            self._users += 1
        try:
            yield model
        finally:
            with self._lock:
                self._users -= 1
                self._last_used = time.monotonic()

    def batched(self, model):
        from faster_whisper import BatchedInferencePipeline

        with self._lock:
            if self._batched is None or self._batched.model is not model:
                self._batched = BatchedInferencePipeline(model=model)
            return self._batched

    def unload_if_unused(self) -> bool:
        """Free the model now unless a job holds it (its GPU memory is wanted elsewhere)."""
        with self._lock:
            if self._model is None or self._users:
                return False
            self._model = None
            self._batched = None
        gc.collect()
        log.info("model %s unloaded from %s to free its memory", self.name, self.where)
        self.reporter.model_unloaded()
        return True

    def unload_if_idle(self) -> bool:
        if not self.idle_unload_seconds:
            return False
        with self._lock:
            idle = time.monotonic() - self._last_used
            if self._model is None or self._users or idle < self.idle_unload_seconds:
                return False
            self._model = None
            self._batched = None
        gc.collect()  # CTranslate2 frees GPU memory when the Python object goes away
        log.info("model %s unloaded after %.0f idle minutes", self.name, idle / 60)
        self.reporter.model_unloaded()
        return True


WARMUP_SECONDS = 2.0


def warm_up(model) -> float:
    """One short transcription of quiet noise, so the first real job does not pay for what the
    first call does once per process: on a GPU whose kernels the wheel has no cubin for (Hopper,
    Blackwell) CUDA JIT-compiles PTX (12.3 s on an H200, NOTES.md), cuBLAS picks its kernels;
    on CPU, the OpenMP teams start and the memory pools grow. Seconds it took."""
    import numpy as np

    started = time.perf_counter()
    # Low-level noise, not silence: an all-zero input can take shortcuts a real one does not.
    audio = np.random.default_rng(0).normal(0, 0.01, int(16000 * WARMUP_SECONDS)).astype(np.float32)
    segments, _ = model.transcribe(audio, language="en", beam_size=1, vad_filter=False,
                                   without_timestamps=True, condition_on_previous_text=False)
    for _ in segments:   # the generator does the work
        pass
    return time.perf_counter() - started


def _on_builder_thread(build, nice: int, idle_class: bool = False):
    """build() on a new thread in the SCHED_IDLE class (`idle_class`, where possible) or `nice`
    steps below the caller's priority; its result or its exception."""
    box: dict = {}

    def run():
        try:
            if not (idle_class and enter_idle_class()) and nice:
                lower_thread_priority(nice)
            box["result"] = build()
        except BaseException as e:   # handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, name="model-build", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def enter_idle_class() -> bool:
    """Put the calling thread in Linux's SCHED_IDLE class (threads it starts inherit it). False
    where that is not possible."""
    if not hasattr(os, "SCHED_IDLE"):
        log.debug("transcribe_idle_class: SCHED_IDLE is Linux-only; using transcribe_nice")
        return False
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
    except OSError as e:
        log.warning("transcribe_idle_class: cannot use SCHED_IDLE (%s); using transcribe_nice", e)
        return False
    return True


def lower_thread_priority(increment: int) -> bool:
    """Lower the calling thread's CPU priority by `increment` nice steps (Linux, where nice is
    per thread and inherited by threads it starts). False where that is not possible."""
    import sys

    if not sys.platform.startswith("linux"):
        log.debug("transcribe_nice: per-thread priority is Linux-only; left unchanged")
        return False
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + increment))
    except OSError as e:
        log.warning("transcribe_nice: cannot lower the inference threads' priority: %s", e)
        return False
    return True
