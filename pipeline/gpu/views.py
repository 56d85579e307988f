"""The GPUs as the pipeline and the exporter share them (re-exported by `contract`): what NVML
sees (`GpuMemory`, read by the exporter's NVML session and handed to the daemon as a
`GpuInventory`), and what the daemon plans on them (`DevicePlanView`, for /api/status and the
worker → GPU series)."""

from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class GpuMemory:
    """One GPU as NVML reports it now: the planner's input (gpu/plan.py), the exporter's NVML
    session's output, the device pool's memory checks. The one class for a GPU's memory."""
    index: int
    uuid: str
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int] | None = None


# The GPUs and their free memory now, or None when NVML is unavailable. The exporter's NVML
# session implements it; the composition root hands it to the daemon.
GpuInventory = Callable[[], "list[GpuMemory] | None"]


@dataclasses.dataclass(frozen=True)
class GpuSlotView:
    """What the daemon runs on one GPU now (for /api/status and the worker → GPU series)."""
    index: int
    uuid: str
    name: str
    workers: tuple[str, ...]   # the worker names on this GPU (all of them, waiting or not)
    active_workers: int        # how many may take a job now (fewer after an out-of-memory)
    batch_size: int            # 0: sequential
    state: str                 # "active" | WAITING_FOR_VRAM
    wait_reason: str | None = None


@dataclasses.dataclass(frozen=True)
class DevicePlanView:
    """The daemon's device plan: what it chose and why (logged once at start, then on change)."""
    mode: str                                  # "cuda" | "cpu" | "wait"
    reasons: tuple[str, ...]
    gpus: tuple[GpuSlotView, ...] = ()
    cpu_workers: tuple[str, ...] = ()          # the worker names on the CPU (fallback included)
    cpu_batch_size: int = 0
    cpu_running: bool = False                  # the CPU slot takes jobs (a fallback may not)
