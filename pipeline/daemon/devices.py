"""Where the daemon's workers run: `gpu/plan.py`'s plan put to work.

One `Slot` per device: each GPU the plan uses (its own `ModelManager` and `Runner`, so its own
batch size), and the CPU (the CPU plan, or the `gpu_fallback_to_cpu` fallback). Worker threads
are made once, at start, for the most the plan allows; a slot says how many of its workers may
take a job now. What changes it:

* before a GPU model is (re)loaded, free VRAM is read again (NVML, through the contract's
  `GpuInventory`) and the slot re-planned to fit — or it waits, if not even one worker fits;
* CUDA out of memory mid-job: `gpu_plan.shrink` — half the batch, then one worker fewer, then
  the GPU waits (its model freed) and is looked at again every `vram_retry_seconds`;
* with no GPU able to run, the CPU slot runs only when `gpu_fallback_to_cpu` is on; otherwise
  the queued jobs wait, with the reason in /api/status and `scribewatch_jobs_waiting_for_vram`.

Nothing here fails a file or stops the daemon for lack of memory.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable

from ..contract import WAITING_FOR_VRAM, DevicePlanView, GpuInventory, GpuMemory, GpuSlotView
from ..gpu import plan as gpu_plan
from ..gpu.footprint import GIB
from ..model import ModelManager
from ..packaged_models import locate
from .runner import Runner, options_from_config

log = logging.getLogger(__name__)

MAX_CHANGES = 20   # plan changes kept for /api/status (the log has them all)


@dataclasses.dataclass(eq=False)
class Slot:
    """One device and what runs on it."""
    key: str                        # "cuda:0" | "cpu"
    gpu: GpuMemory | None           # None: the CPU
    manager: ModelManager
    runner: Runner
    workers: list[str]              # its worker names, in rank order
    active: int                     # how many of them may take a job now
    batch_size: int
    enabled: bool = True            # the CPU fallback slot is off while a GPU can run
    wait_reason: str | None = None  # set while waiting for VRAM
    retry_at: float = 0.0           # monotonic time of the next look at free VRAM

    @property
    def index(self) -> int | None:
        return None if self.gpu is None else self.gpu.index

    @property
    def running(self) -> bool:
        return self.enabled and self.wait_reason is None and self.active > 0


def _line_of(plan: gpu_plan.Plan, index: int) -> str:
    """The plan's reason about GPU `index` (why it got no worker)."""
    return next((r for r in plan.reasons if r.startswith(f"GPU {index} ")), plan.reasons[-1])


def _cuda_device_count() -> int:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count()
    except Exception:   # a broken CUDA install must not stop a CPU box
        return 0


class DevicePool:
    def __init__(self, cfg, output_dir, *, inventory: GpuInventory | None = None,
                 model: ModelManager | None = None, clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.output_dir = output_dir
        self.inventory = inventory
        self.clock = clock
        self.lock = threading.RLock()
        self.slots: list[Slot] = []
        self.changes: list[str] = []   # what happened to the plan since start (for status)
        # The `api_workers` run on the first device: its model gets their replicas too.
        self._api_replicas = getattr(cfg, "api_workers", 0)
        self.model_name = model.name if model else locate(cfg.model, cfg.models_dir).name
        self.request = gpu_plan.PlanRequest(
            model=self.model_name,
            compute_type="float16" if cfg.compute_type == "auto" else cfg.compute_type,
            device=cfg.device, workers=cfg.workers, batch_size=cfg.batch_size,
            devices=tuple(int(d) for d in cfg.devices) or None,
            gpu_fallback_to_cpu=cfg.gpu_fallback_to_cpu)
        if model is not None:   # a model handed in (tests, benchmarks): one slot, as configured
            self.plan = gpu_plan.cpu_plan(self.request, f"model given ({model.where})")
            self._add_slot(model.where, None, model, self.plan.workers, self.plan.cpu_batch_size)
        else:
            self.plan = self._first_plan()
            self._build()
        self._log_plan()

    # -- planning ----------------------------------------------------------------------------
    def _gpus(self) -> list[GpuMemory] | None:
        try:
            return self.inventory() if self.inventory else None
        except Exception as e:   # NVML trouble must not stop the daemon
            log.warning("cannot read GPU memory: %s: %s", type(e).__name__, e)
            return None

    def _first_plan(self) -> gpu_plan.Plan:
        req = self.request
        self._seen: list[GpuMemory] = []
        if req.device == "cpu":
            return gpu_plan.cpu_plan(req, "device: cpu")
        cuda = _cuda_device_count()
        if req.device == "auto" and cuda == 0:
            return gpu_plan.cpu_plan(req, "device: auto, no CUDA device usable by CTranslate2")
        gpus = self._gpus()
        if not gpus:
            # CUDA without NVML (no nvidia-ml-py, or NVML broken): no memory figures to plan
            # with, so the cautious plan: one sequential worker per GPU unless configured.
            indexes = list(req.devices or range(max(cuda, 1)))
            slots = tuple(gpu_plan.GpuSlot(i, "", f"cuda:{i}", req.workers or 1,
                                           req.batch_size or 0, 0, 0) for i in indexes)
            return gpu_plan.Plan("cuda", gpus=slots, reasons=(
                "NVML unavailable: GPU memory unknown; " + ", ".join(
                    f"GPU {s.index}: {s.workers} worker(s), "
                    + (f"batch {s.batch_size}" if s.batch_size else "no batching")
                    for s in slots),))
        self._seen = [g for g in gpus if req.devices is None or g.index in req.devices]
        # The CPU fallback is a slot of its own (below): the plan itself waits.
        return gpu_plan.plan(gpus, dataclasses.replace(req, device="cuda",
                                                       gpu_fallback_to_cpu=False))

    def _manager(self, device: str, index: int, workers: int) -> ModelManager:
        cfg = self.cfg
        extra, self._api_replicas = self._api_replicas, 0   # the first model built
        return ModelManager(
            cfg.model, models_dir=cfg.models_dir, device=device, compute_type=cfg.compute_type,
            cpu_threads=cfg.cpu_threads, workers=workers + extra, device_index=index,
            idle_unload_minutes=cfg.model_idle_unload_minutes, nice=cfg.transcribe_nice,
            idle_class=cfg.transcribe_idle_class)

    def _add_slot(self, key, gpu, manager, workers: int, batch: int, enabled=True) -> Slot:
        options = dataclasses.replace(options_from_config(self.cfg), batch_size=batch)
        slot = Slot(key, gpu, manager, Runner(self.cfg, manager, options, self.output_dir),
                    [], workers, batch, enabled=enabled)
        slot.workers = [""] * workers
        self.slots.append(slot)
        return slot

    def _build(self) -> None:
        plan, req = self.plan, self.request
        if plan.mode in ("cuda", "wait"):
            planned = {s.index: s for s in plan.gpus}
            gpus = self._seen or [GpuMemory(s.index, s.uuid, s.name, 0, s.free_bytes)
                                  for s in plan.gpus]
            for gpu in gpus:
                s = planned.get(gpu.index)
                if s is not None:
                    self._add_slot(f"cuda:{gpu.index}", gpu,
                                   self._manager("cuda", gpu.index, s.workers),
                                   s.workers, s.batch_size)
                    continue
                # No room on this GPU now: its workers wait for memory to free up.
                n = req.workers or gpu_plan.MAX_WORKERS_PER_GPU
                slot = self._add_slot(f"cuda:{gpu.index}", gpu,
                                      self._manager("cuda", gpu.index, n), n,
                                      req.batch_size or 0)
                self._wait(slot, _line_of(plan, gpu.index))
        if plan.mode == "cpu" or req.gpu_fallback_to_cpu:
            workers, batch = req.workers or 1, req.batch_size or 0
            self._add_slot("cpu", None, self._manager("cpu", 0, workers), workers, batch,
                           enabled=plan.mode == "cpu")
            self._update_fallback()
        if not self.slots:   # `devices` names no GPU NVML sees: nothing can run; say so
            self._add_slot("cpu", None, self._manager("cpu", 0, 1), 1, 0, enabled=False)
        self._name_workers()

    def _name_workers(self) -> None:
        """Worker names 0, 1, … dealt round-robin over the slots (GPU 0, GPU 1, GPU 0, …), so
        the first free workers are on different GPUs."""
        n = 0
        for rank in range(max(len(s.workers) for s in self.slots)):
            for slot in self.slots:
                if rank < len(slot.workers):
                    slot.workers[rank] = str(n)
                    n += 1

    def _log_plan(self) -> None:
        for reason in self.plan.reasons:
            log.info("device plan: %s", reason)
        log.info("device plan: %s", "; ".join(
            f"{s.key}: workers {','.join(s.workers)}"
            + (f", batch {s.batch_size}" if s.batch_size else ", no batching")
            + ("" if s.enabled else " (only when no GPU can run: gpu_fallback_to_cpu)")
            + (f" — waiting for VRAM: {s.wait_reason}" if s.wait_reason else "")
            for s in self.slots))

    # -- workers ---------------------------------------------------------------------------
    @property
    def workers(self) -> list[tuple[str, Slot]]:
        return sorted(((w, s) for s in self.slots for w in s.workers), key=lambda p: int(p[0]))

    @property
    def primary(self) -> Slot:
        return self.slots[0]

    def may_claim(self, worker: str, slot: Slot) -> bool:
        """May this worker take a job now? Before a GPU model is (re)loaded, free VRAM is read
        again and the slot fitted to it."""
        with self.lock:
            if not slot.running or slot.workers.index(worker) >= slot.active:
                return False
            if slot.gpu is not None and not slot.manager.loaded and slot.manager.loaded_once:
                self._fit(slot, "before reloading the model")
                if not slot.running or slot.workers.index(worker) >= slot.active:
                    return False
            return slot.manager.ready

    def _fit(self, slot: Slot, why: str) -> None:
        """Re-plan one GPU from its free memory now: fewer workers or a smaller batch if that
        is what fits, else wait."""
        gpus = self._gpus()
        now = next((g for g in gpus or () if g.index == slot.index), None)
        if now is None:
            return   # no figures (NVML down): try as planned; an OOM still shrinks
        # What fits now, then no more than configured (a value the user set caps, but never
        # forces a load that cannot fit).
        fresh = gpu_plan.plan([now], dataclasses.replace(
            self.request, device="cuda", devices=None, workers=None, batch_size=None,
            gpu_fallback_to_cpu=False))
        if fresh.mode != "cuda":
            self._wait(slot, f"{why}: {_line_of(fresh, now.index)}")
            return
        new = fresh.gpus[0]
        cap_w, cap_b = self.request.workers, self.request.batch_size
        active = min(new.workers, len(slot.workers), cap_w or len(slot.workers))
        batch = new.batch_size if cap_b is None else min(new.batch_size, cap_b)
        if (active, batch) != (slot.active, slot.batch_size) or slot.wait_reason:
            text = (f"GPU {slot.index} {why}: {now.free_bytes / GIB:.1f} GiB free → "
                    f"{active} worker(s), " + (f"batch {batch}" if batch else "no batching"))
            log.info("%s", text)
            self._changed(text)
        self._set(slot, active, batch)
        slot.wait_reason = None
        self._update_fallback()

    def _changed(self, text: str) -> None:
        self.changes = (self.changes + [time.strftime("%H:%M:%S ") + text])[-MAX_CHANGES:]

    def _set(self, slot: Slot, active: int, batch: int) -> None:
        slot.active, slot.batch_size = active, batch
        slot.runner.options = dataclasses.replace(slot.runner.options, batch_size=batch)

    def _wait(self, slot: Slot, reason: str) -> None:
        if slot.wait_reason is None:
            log.warning("%s: waiting for GPU memory (%s); looking again every %.0f s%s",
                        slot.key, reason, self.cfg.vram_retry_seconds,
                        "" if self.request.gpu_fallback_to_cpu else
                        "; its files stay queued (gpu_fallback_to_cpu is off)")
            self._changed(f"GPU {slot.index}: waiting for memory ({reason})")
        slot.wait_reason = reason
        slot.retry_at = self.clock() + self.cfg.vram_retry_seconds
        # Give the memory back for whoever needs it now (a transcode, a game).
        slot.manager.unload_if_unused()
        self._update_fallback()

    def _update_fallback(self) -> None:
        cpu = next((s for s in self.slots if s.gpu is None), None)
        if cpu is None or not self.request.gpu_fallback_to_cpu or self.plan.mode == "cpu":
            return
        gpu_running = any(s.running for s in self.slots if s.gpu is not None)
        if cpu.enabled == gpu_running:
            cpu.enabled = not gpu_running
            log.warning("%s", "no GPU can run: transcribing on the CPU (gpu_fallback_to_cpu)"
                        if cpu.enabled else "a GPU can run again: the CPU fallback stops")

    def out_of_memory(self, slot: Slot, message: str) -> None:
        """CUDA ran out of memory in a job on this slot: shrink it (`gpu_plan.shrink`)."""
        with self.lock:
            if slot.gpu is None:
                return
            current = gpu_plan.Plan("cuda", gpus=(gpu_plan.GpuSlot(
                slot.index, slot.gpu.uuid, slot.gpu.name, slot.active, slot.batch_size, 0, 0),),
                reasons=())
            shrunk = gpu_plan.shrink(current, slot.index,
                                     dataclasses.replace(self.request, gpu_fallback_to_cpu=False))
            step = shrunk.reasons[-1] if shrunk.reasons else "out of memory"
            if shrunk.mode == "cuda":
                new = shrunk.gpus[0]
                log.warning("%s: %s (%s)", slot.key, step, message)
                self._changed(step)
                self._set(slot, new.workers, new.batch_size)
            else:
                self._wait(slot, f"CUDA out of memory with 1 worker, no batching ({message})")

    def tick(self) -> None:
        """Housekeeping: look again at the GPUs waiting for memory whose time has come."""
        with self.lock:
            for slot in self.slots:
                if slot.wait_reason and self.clock() >= slot.retry_at:
                    reason = slot.wait_reason
                    slot.wait_reason = None
                    self._fit(slot, "looked at again")
                    if slot.wait_reason is None and slot.running:
                        log.info("%s has room again after waiting (%s)", slot.key, reason)
                    elif slot.wait_reason is None:
                        self._wait(slot, reason)

    # -- state -----------------------------------------------------------------------------
    def model_state(self) -> tuple[ModelManager, bool, bool, str | None]:
        """(the model in use, loaded, ready, why not): over the devices that may run; while
        none may, not ready, and why is the wait for memory."""
        with self.lock:
            running = [s for s in self.slots if s.running]
            main = running[0].manager if running else self.primary.manager
            loaded = any(s.manager.loaded for s in self.slots)
            ready = any(s.manager.ready for s in running)
            errors = [s.manager.error for s in running if s.manager.error]
            if not running:
                waiting = [s.wait_reason for s in self.slots if s.wait_reason]
                errors = [f"waiting for GPU memory: {waiting[0]}" if waiting
                          else "no device to run on"]
            return main, loaded, ready, errors[0] if errors and not ready else None

    def claimable(self) -> int:
        """How many workers may take a job now."""
        return sum(s.active for s in self.slots if s.running)

    def all_waiting(self) -> bool:
        """No slot can run: every queued job waits for GPU memory."""
        return not any(s.running for s in self.slots)

    def view(self) -> DevicePlanView:
        with self.lock:
            gpus = tuple(GpuSlotView(
                s.index, s.gpu.uuid, s.gpu.name, tuple(s.workers),
                0 if s.wait_reason else s.active, s.batch_size,
                WAITING_FOR_VRAM if s.wait_reason else "active", s.wait_reason)
                for s in self.slots if s.gpu is not None)
            cpu = next((s for s in self.slots if s.gpu is None), None)
            running = [s for s in self.slots if s.running]
            mode = ("wait" if not running else "cuda" if any(s.gpu for s in running) else "cpu")
            return DevicePlanView(mode, tuple(self.plan.reasons) + tuple(self.changes), gpus,
                                  tuple(cpu.workers) if cpu else (),
                                  cpu.batch_size if cpu else 0, bool(cpu and cpu.running))
