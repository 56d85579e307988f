"""pipeline.daemon.devices: the GPU plan put to work — slots per GPU, the shrink sequence after CUDA
runs out of memory, the wait and the look again, the CPU fallback. No model is loaded here: the
pool is driven with a GPU list the test controls (what NVML would say) and a fake clock."""

from __future__ import annotations

import pytest

from scribewatch.pipeline import config
from scribewatch.pipeline.contract import GpuMemory
from scribewatch.pipeline.daemon.devices import DevicePool
from scribewatch.pipeline.gpu.footprint import GIB


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def pool(tmp_path, gpus: list, clock=None, **settings) -> DevicePool:
    cfg = config.load(None, environ={}, flags={
        "watch_dirs": [str(tmp_path)], "model": "tiny.en", "device": "cuda",
        "vram_retry_seconds": 30, **settings})
    return DevicePool(cfg, None, inventory=lambda: gpus, clock=clock or Clock())


def card(i: int, free_gib: float, total_gib: float = 24) -> GpuMemory:
    return GpuMemory(i, f"GPU-{i:08d}-0000-4000-8000-000000000000", f"Card {i}",
                     int(total_gib * GIB), int(free_gib * GIB))


def state(p: DevicePool) -> list:
    return [(s.key, s.active, s.batch_size, s.wait_reason is not None, s.enabled)
            for s in p.slots]


def test_out_of_memory_halves_the_batch_then_drops_workers_then_waits(tmp_path):
    clock = Clock()
    gpus = [card(0, 23)]
    p = pool(tmp_path, gpus, clock)
    [slot] = p.slots
    assert (slot.active, slot.batch_size, len(slot.workers)) == (4, 16, 4)
    seen = []
    for _ in range(8):
        p.out_of_memory(slot, "CUDA failed with error out of memory")
        seen.append((slot.active, slot.batch_size, slot.wait_reason is not None))
    assert seen[:6] == [(4, 8, False), (4, 4, False), (4, 0, False), (3, 0, False),
                        (2, 0, False), (1, 0, False)]
    assert seen[6] == (1, 0, True) and p.all_waiting() and p.claimable() == 0
    assert slot.runner.options.batch_size == 0            # what the next job runs with
    view = p.view()
    assert view.mode == "wait" and view.gpus[0].state == "waiting_for_vram"
    assert any("batch 16 → 8" in r for r in view.reasons)
    _, _, ready, why = p.model_state()
    assert not ready and why.startswith("waiting for GPU memory")
    # Not before vram_retry_seconds; then re-planned from the memory free now.
    p.tick()
    assert slot.wait_reason is not None
    clock.now += 31
    p.tick()
    assert (slot.active, slot.batch_size, slot.wait_reason) == (4, 16, None)
    assert p.view().mode == "cuda"


def test_still_no_memory_when_looked_at_again_keeps_waiting(tmp_path):
    clock = Clock()
    gpus = [card(0, 0.2)]
    p = pool(tmp_path, gpus, clock)
    [slot] = p.slots
    assert slot.wait_reason and "needs" in slot.wait_reason and p.view().mode == "wait"
    clock.now += 31
    p.tick()
    assert slot.wait_reason is not None and slot.retry_at > clock.now
    gpus[0] = card(0, 3)                                   # the game ended
    clock.now += 31
    p.tick()
    assert slot.running and slot.active == 4


def test_the_cpu_fallback_runs_only_while_no_gpu_can(tmp_path):
    clock = Clock()
    gpus = [card(0, 23)]
    p = pool(tmp_path, gpus, clock, gpu_fallback_to_cpu=True, workers=1, batch_size=0)
    gpu, cpu = p.slots
    assert [s.key for s in p.slots] == ["cuda:0", "cpu"] and not cpu.enabled
    p.out_of_memory(gpu, "CUDA failed with error out of memory")   # 1 worker, sequential: wait
    assert cpu.running and p.view().mode == "cpu" and p.view().cpu_running
    clock.now += 31
    p.tick()
    assert gpu.running and not cpu.enabled


def test_configured_values_cap_what_is_refitted_after_an_unload(tmp_path):
    gpus = [card(0, 23)]
    p = pool(tmp_path, gpus, workers=2, batch_size=8)
    [slot] = p.slots
    assert (slot.active, slot.batch_size) == (2, 8)
    gpus[0] = card(0, 2.0)          # a transcode took most of it meanwhile
    p._fit(slot, "before reloading the model")
    assert (slot.active, slot.batch_size) == (1, 8)


@pytest.mark.parametrize("devices, expect", [([], ["cuda:0", "cuda:1"]), (["1"], ["cuda:1"])])
def test_devices_and_round_robin_worker_names(tmp_path, devices, expect):
    p = pool(tmp_path, [card(0, 23), card(1, 23)], devices=devices)
    assert [s.key for s in p.slots] == expect
    if len(expect) == 2:
        assert p.slots[0].workers == ["0", "2", "4", "6"]
        assert p.slots[1].workers == ["1", "3", "5", "7"]


def test_cpu_stays_as_before(tmp_path):
    p = pool(tmp_path, [card(0, 23)], device="cpu")
    assert state(p) == [("cpu", 1, 0, False, True)]
    assert p.view().mode == "cpu" and p.view().gpus == ()
