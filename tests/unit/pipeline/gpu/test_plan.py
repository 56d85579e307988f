"""pipeline.gpu.plan: workers and batch size per GPU from what NVML reports, read through the fake
pynvml (tests/harness/fake_nvml, configured by a FAKE_NVML_CONFIG file): one big GPU, several,
a small one nearly full, one too small for a worker, overrides, and shrinking after an OOM."""

from __future__ import annotations

import importlib.util
import json

import pytest

from scribewatch.pipeline.gpu import plan as gpu_plan
from scribewatch.pipeline.gpu.footprint import GIB, footprint, size_key
from scribewatch.pipeline.gpu.plan import PlanRequest, plan, read_gpus, shrink
from scribewatch.pipeline.gpu.views import GpuMemory
from tests.harness import FAKE_NVML_DIR

H200 = {"name": "NVIDIA H200", "uuid": "GPU-h200-0", "memory_total": 141 * GIB,
        "memory_used": 1 * GIB, "processes": []}
RTX3060 = {"name": "NVIDIA GeForce RTX 3060", "uuid": "GPU-3060-0", "memory_total": 12 * GIB,
           "memory_used": int(0.5 * GIB), "processes": []}


@pytest.fixture
def nvml(monkeypatch, tmp_path):
    """The fake pynvml module and a function that sets the GPUs it reports."""
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_NVML_DIR / "pynvml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for var in ("FAKE_NVML_FAIL", "FAKE_NVML_UNSUPPORTED", "FAKE_NVML_GPUS"):
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "nvml.json"
    monkeypatch.setenv("FAKE_NVML_CONFIG", str(config))

    def gpus(*cards, fail=""):
        config.write_text(json.dumps({"gpus": list(cards), "fail": fail}))
        return read_gpus(module)
    return gpus


def test_one_big_gpu_gets_several_workers_and_batching(nvml):
    gpus = nvml(H200)
    assert [(g.name, g.free_bytes) for g in gpus] == [("NVIDIA H200", 140 * GIB)]
    p = plan(gpus, PlanRequest("tiny.en", "float16"))
    assert p.mode == "cuda" and len(p.gpus) == 1
    slot = p.gpus[0]
    assert (slot.workers == gpu_plan.MAX_WORKERS_PER_GPU
            and slot.batch_size == gpu_plan.MAX_BATCH_SIZE)
    assert slot.need_bytes < slot.free_bytes
    assert any("140.0 GiB free" in r and "4 worker(s), batch 16" in r for r in p.reasons), p.reasons


def test_several_gpus_one_model_each(nvml):
    gpus = nvml(H200, {**H200, "uuid": "GPU-h200-1"}, RTX3060)
    p = plan(gpus, PlanRequest("large-v3", "float16"))
    assert [s.index for s in p.gpus] == [0, 1, 2]
    assert [s.uuid for s in p.gpus] == ["GPU-h200-0", "GPU-h200-1", "GPU-3060-0"]
    # The 12 GiB card cannot take as much as the 141 GiB ones.
    assert (p.gpus[2].workers * max(p.gpus[2].batch_size, 1)
            < p.gpus[0].workers * p.gpus[0].batch_size)
    assert p.workers == sum(s.workers for s in p.gpus)
    # `devices` picks, in the configured order; one NVML does not see is named in the reasons.
    p = plan(gpus, PlanRequest("large-v3", "float16", devices=(2, 0, 7)))
    assert [s.index for s in p.gpus] == [2, 0]
    assert any("GPU 7" in r for r in p.reasons)


def test_small_gpu_nearly_full_gets_less(nvml):
    """A Plex transcode holds most of a 12 GiB card: fewer workers and a smaller batch, and the
    safety margin stays free."""
    idle = plan(nvml(RTX3060), PlanRequest("small", "float16")).gpus[0]
    busy_gpus = nvml({**RTX3060, "memory_used": int(9.5 * GIB)})
    busy = plan(busy_gpus, PlanRequest("small", "float16")).gpus[0]
    assert ((busy.workers, busy.batch_size) < (idle.workers, idle.batch_size)
            or busy.workers < idle.workers)
    assert busy.workers >= 1
    assert busy.need_bytes <= busy_gpus[0].free_bytes - gpu_plan.margin(busy_gpus[0])


def test_too_little_memory_waits_or_uses_cpu_when_allowed(nvml):
    gpus = nvml({**RTX3060, "memory_used": int(11 * GIB)})
    waiting = plan(gpus, PlanRequest("large-v3", "float16"))
    assert waiting.mode == "wait" and waiting.gpus == () and waiting.workers == 0
    assert "gpu_fallback_to_cpu is off" in waiting.reasons[-1]
    assert any("not used" in r for r in waiting.reasons)
    cpu = plan(gpus, PlanRequest("large-v3", "float16", gpu_fallback_to_cpu=True))
    assert (cpu.mode, cpu.cpu_workers, cpu.cpu_batch_size) == ("cpu", 1, 0)


def test_no_gpu_or_no_driver_is_a_cpu_machine_with_unchanged_defaults(nvml):
    for gpus in (nvml(), nvml(H200, fail="driver"), nvml(H200, fail="library")):
        assert gpus == []
        p = plan(gpus, PlanRequest("tiny.en", "int8"))
        assert (p.mode, p.workers, p.cpu_batch_size) == ("cpu", 1, 0)
    # device: cuda with no GPU is not silently CPU.
    assert plan([], PlanRequest("tiny.en", device="cuda")).mode == "wait"
    assert plan(nvml(H200), PlanRequest("tiny.en", device="cpu")).mode == "cpu"


def test_explicit_settings_always_win(nvml):
    gpus = nvml(H200)
    p = plan(gpus, PlanRequest("tiny.en", workers=2, batch_size=0))
    assert (p.gpus[0].workers, p.gpus[0].batch_size) == (2, 0)
    assert "as configured" in p.reasons[-1]
    # Even when it will not fit: the user's call, with a warning.
    small = nvml({**RTX3060, "memory_used": int(6 * GIB)})
    p = plan(small, PlanRequest("large-v3", workers=3, batch_size=16))
    assert (p.gpus[0].workers, p.gpus[0].batch_size) == (3, 16)
    assert "WARNING" in p.reasons[-1]
    cpu = plan([], PlanRequest("tiny.en", workers=2, batch_size=8))
    assert (cpu.cpu_workers, cpu.cpu_batch_size) == (2, 8)


def test_shrink_batch_then_workers_then_wait_or_cpu(nvml):
    gpus = nvml(H200)
    request = PlanRequest("tiny.en")
    p = plan(gpus, request)
    steps = []
    while p.mode == "cuda":
        before = p.gpus[0]
        p = shrink(p, 0, request)
        if p.mode == "cuda":
            after = p.gpus[0]
            assert after.need_bytes < before.need_bytes
            steps.append((after.workers, after.batch_size))
    assert steps == [(4, 8), (4, 4), (4, 0), (3, 0), (2, 0), (1, 0)]
    assert p.mode == "wait" and "ran out of memory" in p.reasons[-1]
    fallback = PlanRequest("tiny.en", gpu_fallback_to_cpu=True)
    last = plan(gpus, PlanRequest("tiny.en", workers=1, batch_size=0))
    assert shrink(last, 0, fallback).mode == "cpu"
    # With two GPUs, losing one keeps the other.
    two = plan(nvml(H200, {**H200, "uuid": "GPU-h200-1"}),
               PlanRequest("tiny.en", workers=1, batch_size=0))
    assert [s.index for s in shrink(two, 0, request).gpus] == [1]


@pytest.mark.parametrize("name, key", [("tiny.en", "tiny"), ("large-v3", "large-v3"),
                                       ("Systran/faster-whisper-large-v3", "large-v3"),
                                       ("distil-large-v3", "distil-large-v3"),
                                       ("medium.en", "medium"),
                                       ("my-own-finetune", "large-v3")])
def test_model_names_map_to_the_table(name, key):
    assert size_key(name) == key


def test_the_table_orders_sizes_and_types():
    order = ["tiny", "base", "small", "medium", "large-v3"]
    for ct in ("float16", "int8_float16", "int8"):
        needs = [footprint(m, ct).need(1, 1) for m in order]
        assert needs == sorted(needs), ct
    assert footprint("large-v3", "int8_float16").fixed < footprint("large-v3", "float16").fixed


def test_gpus_without_a_prebuilt_kernel_are_told_about_the_jit():
    """The wheel's cubins stop at sm_86: Ada (8.9) runs them, Hopper (9.0) JIT-compiles PTX."""
    def reason(cc):
        return plan([GpuMemory(0, "u", "card", 24 * GIB, 20 * GIB, cc)],
                    PlanRequest("tiny.en")).reasons[-1]
    assert "JIT" in reason((9, 0)) and "sm_90" in reason((9, 0))
    assert "JIT" not in reason((8, 9)) and "JIT" not in reason(None)
