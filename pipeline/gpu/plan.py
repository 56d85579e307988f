"""Plan how the daemon uses the GPUs it sees: workers and batch size per GPU, with reasons.

A pure function of what NVML reports and the configuration, so it is tested without a GPU
(`read_gpus` is the only part that talks to NVML). Rules:

* CPU: unchanged defaults — 1 worker, no batching — unless configured.
* One model per GPU; every GPU (`devices: auto`) or the listed ones; a GPU that cannot hold even
  one worker is left out with a reason.
* Per GPU, as many workers as its free memory holds after a safety margin (other programs — a
  Plex transcode — allocate after we plan), at most `MAX_WORKERS_PER_GPU` (the H200 run measured
  4: 118 audio s/s against 64 for one; more was not measured).
* Batched inference for long files, batch size from what memory is left, at most
  `MAX_BATCH_SIZE` (16 measured on the H200: +0.67 WER points against sequential, inside the
  1-point budget; 342 audio s/s with 4 workers).
* A value the user set always wins (with a warning reason when it will not fit).
* `shrink` is what to do after CUDA runs out of memory: smaller batch, then fewer workers, then
  without that GPU, then CPU (only with `gpu_fallback_to_cpu`) or "wait": never crash, never
  fail the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from .footprint import GIB, MIB, Footprint, footprint
from .views import GpuMemory

MAX_WORKERS_PER_GPU = 4
MAX_BATCH_SIZE = 16
MIN_USEFUL_BATCH = 4          # below this, batching gains little (NOTES: 1.13x at 4 on CPU)
MARGIN_MIN_BYTES = 512 * MIB
MARGIN_SHARE = 0.05           # of the GPU's total memory


@dataclass(frozen=True)
class PlanRequest:
    """The configuration's say: None means "choose"."""
    model: str
    compute_type: str = "float16"
    device: str = "auto"                     # auto | cuda | cpu
    workers: int | None = None
    batch_size: int | None = None
    devices: tuple[int, ...] | None = None
    gpu_fallback_to_cpu: bool = False


@dataclass(frozen=True)
class GpuSlot:
    index: int
    uuid: str
    name: str
    workers: int
    batch_size: int          # 0: sequential
    need_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class Plan:
    mode: str                                # "cuda" | "cpu" | "wait"
    gpus: tuple[GpuSlot, ...] = ()
    cpu_workers: int = 0
    cpu_batch_size: int = 0
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def workers(self) -> int:
        return sum(g.workers for g in self.gpus) if self.mode == "cuda" else self.cpu_workers


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def margin(gpu: GpuMemory) -> int:
    return max(MARGIN_MIN_BYTES, int(gpu.total_bytes * MARGIN_SHARE))


def cpu_plan(request: PlanRequest, why: str) -> Plan:
    workers = request.workers or 1
    batch = request.batch_size or 0
    return Plan("cpu", cpu_workers=workers, cpu_batch_size=batch,
                reasons=(f"{why}: CPU, {workers} worker(s), "
                         + (f"batch {batch}" if batch > 1 else "no batching"),))


def _fit(fp: Footprint, usable: int, workers: int | None, batch: int | None) -> tuple[int, int]:
    """(workers, batch) for `usable` bytes; (0, 0) when not even one sequential worker fits."""
    if fp.need(1, 1) > usable and workers is None:
        return 0, 0
    if batch is None:
        # Batch from what one worker can have, then as many such workers as fit.
        batch = 1
        while batch < MAX_BATCH_SIZE and fp.need(1, batch * 2) <= usable:
            batch *= 2
        if batch < MIN_USEFUL_BATCH:
            batch = 1
    if workers is None:
        workers = 1
        while workers < MAX_WORKERS_PER_GPU and fp.need(workers + 1, batch) <= usable:
            workers += 1
    return workers, (batch if batch > 1 else 0)


def _slot(gpu: GpuMemory, fp: Footprint, request: PlanRequest) -> tuple[GpuSlot | None, str]:
    usable = gpu.free_bytes - margin(gpu)
    head = (f"GPU {gpu.index} ({gpu.name}): {_gib(gpu.free_bytes)} free of "
            f"{_gib(gpu.total_bytes)}, {_gib(margin(gpu))} kept free")
    workers, batch = _fit(fp, usable, request.workers, request.batch_size)
    if not workers:
        return None, (f"{head}; needs {_gib(fp.need(1, 1))} for one worker: not used")
    need = fp.need(workers, batch)
    set_by = [name for name, v in (("workers", request.workers),
                                   ("batch_size", request.batch_size)) if v is not None]
    text = f"{head} → {workers} worker(s), " + (f"batch {batch}" if batch else "no batching")
    if set_by:
        text += f" ({' and '.join(set_by)} as configured)"
        if need > usable:
            text += f"; WARNING: needs {_gib(need)}, more than the {_gib(max(usable, 0))} usable"
    # A cubin runs on later GPUs of its major version only (sm_86 code runs on Ada's sm_89).
    if gpu.compute_capability and gpu.compute_capability[0] > 8:
        major, minor = gpu.compute_capability
        text += (f"; sm_{major}{minor} has no prebuilt kernels in the CTranslate2 wheel (up to "
                 "sm_86): the first run JIT-compiles PTX (warm-up at load, CUDA_CACHE_PATH)")
    return GpuSlot(gpu.index, gpu.uuid, gpu.name, workers, batch, need, gpu.free_bytes), text


def _chosen(gpus: Sequence[GpuMemory],
            devices: tuple[int, ...] | None) -> tuple[list[GpuMemory], list[str]]:
    if devices is None:
        return list(gpus), []
    by_index = {g.index: g for g in gpus}
    missing = [f"GPU {i} is configured in `devices` but NVML does not see it"
               for i in devices if i not in by_index]
    return [by_index[i] for i in devices if i in by_index], missing


def _no_gpu(request: PlanRequest, why: str, reasons: list[str], seen: bool = True) -> Plan:
    if (request.device == "auto" and not seen) or request.gpu_fallback_to_cpu:
        # auto on a machine without a GPU is a CPU machine; otherwise only if the user allows it
        cpu = cpu_plan(request, why if not seen else f"{why}; gpu_fallback_to_cpu is on")
        return replace(cpu, reasons=tuple(reasons) + cpu.reasons)
    return Plan("wait", reasons=tuple(reasons) + (
        f"{why}: waiting for GPU memory (gpu_fallback_to_cpu is off); files stay queued",))


def plan(gpus: Sequence[GpuMemory], request: PlanRequest) -> Plan:
    """The plan for these GPUs and this configuration. Never raises for lack of memory."""
    if request.device == "cpu":
        return cpu_plan(request, "device: cpu")
    if not gpus:
        return _no_gpu(request, "no GPU seen", [], seen=False)
    fp = footprint(request.model, request.compute_type)
    reasons = [f"{request.model} {request.compute_type} (table: {fp.model}) needs ~"
               f"{_gib(fp.fixed)} per GPU + {fp.per_worker / MIB:.0f} MiB per worker + "
               f"{fp.per_batch_item / MIB:.0f} MiB per batch item"]
    chosen, missing = _chosen(gpus, request.devices)
    reasons += missing
    slots = []
    for gpu in chosen:
        slot, why = _slot(gpu, fp, request)
        reasons.append(why)
        if slot:
            slots.append(slot)
    if not slots:
        return _no_gpu(request, "no GPU has room for one worker", reasons)
    return Plan("cuda", gpus=tuple(slots), reasons=tuple(reasons))


def shrink(current: Plan, gpu_index: int, request: PlanRequest) -> Plan:
    """The next plan after CUDA ran out of memory on `gpu_index`: half the batch (below
    MIN_USEFUL_BATCH: off), else one worker fewer, else without that GPU; with no GPU left, CPU
    where `gpu_fallback_to_cpu` allows it, else "wait" (retry when memory frees up)."""
    if current.mode != "cuda":
        return current
    slots = list(current.gpus)
    fp = footprint(request.model, request.compute_type)
    for i, slot in enumerate(slots):
        if slot.index != gpu_index:
            continue
        if slot.batch_size:
            batch = slot.batch_size // 2
            batch = batch if batch >= MIN_USEFUL_BATCH else 0
            slots[i] = replace(slot, batch_size=batch)
            step = f"batch {slot.batch_size} → " + (str(batch) if batch else "off")
        elif slot.workers > 1:
            slots[i] = replace(slot, workers=slot.workers - 1)
            step = f"workers {slot.workers} → {slot.workers - 1}"
        else:
            del slots[i]
            step = "GPU left out"
        if i < len(slots) and slots[i].index == gpu_index:
            slots[i] = replace(slots[i], need_bytes=fp.need(slots[i].workers, slots[i].batch_size))
        why = f"GPU {gpu_index} ran out of memory: {step}"
        if not slots:
            return _no_gpu(request, why, list(current.reasons))
        return replace(current, gpus=tuple(slots), reasons=current.reasons + (why,))
    return current


def read_gpus(nvml) -> list[GpuMemory]:
    """The GPUs NVML reports (`nvml`: the pynvml module); [] when NVML is unusable."""
    try:
        nvml.nvmlInit()
    except Exception:          # no driver, no library: a CPU machine
        return []
    try:
        out = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                cc = tuple(nvml.nvmlDeviceGetCudaComputeCapability(handle))
            except Exception:  # older nvidia-ml-py, or not supported
                cc = None
            name = nvml.nvmlDeviceGetName(handle)
            uuid = nvml.nvmlDeviceGetUUID(handle)
            out.append(GpuMemory(i, uuid if isinstance(uuid, str) else uuid.decode(),
                               name if isinstance(name, str) else name.decode(),
                               int(mem.total), int(mem.free), cc))
        return out
    except Exception:
        return []
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
