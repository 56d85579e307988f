"""The GPU plan in a real daemon: several GPUs with little memory (the fake NVML), CUDA faked at
the model boundary (tests/harness/fake_cuda: a "cuda" model is the real tiny.en on the CPU, and
CTranslate2's out-of-memory error is injected on demand).

What is real: the daemon process, its planner, store, workers, /api/status and /metrics, the
model and the speech. What is fake: what NVML reports, and that "cuda:N" runs on the CPU.
"""

from __future__ import annotations

import json
import shutil

import pytest

from scribewatch.pipeline.contract import GpuMemory
from scribewatch.pipeline.gpu import plan as gpu_plan
from tests.harness import wait_for
from tests.harness.fake_nvml.pynvml import GIB, MIB

# Real daemons with the real model: the whole suites run them (3.11 and 3.13), the smoke run
# on the Pythons between does not.
pytestmark = pytest.mark.slow

UUIDS = ["GPU-00000000-0000-4000-8000-00000000000%d" % i for i in range(3)]


def gpu(i: int, total_gib: float, used_gib: float) -> dict:
    return {"name": f"NVIDIA Test {i}", "uuid": UUIDS[i], "memory_total": int(total_gib * GIB),
            "memory_used": int(used_gib * GIB), "processes": []}


def fake(tmp_path, daemon_factory, gpus: list[dict], overrides: dict, *, oom: int = 0,
         sub: str = "d"):
    """A daemon (not started) on these fake GPUs; its NVML config, OOM and load-log files."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    nvml = tmp_path / f"{sub}-nvml.json"
    nvml.write_text(json.dumps({"gpus": gpus}))
    oom_file, load_log = tmp_path / f"{sub}-oom", tmp_path / f"{sub}-cuda.log"
    oom_file.write_text(str(oom))
    d = daemon_factory({"model": "tiny.en", "device": "cuda", "cpu_threads": 1,
                        "vram_retry_seconds": 1, **overrides}, sub=sub, fake_cuda=True,
                       env={"FAKE_NVML_CONFIG": str(nvml), "FAKE_CUDA_DEVICES": str(len(gpus)),
                            "FAKE_CUDA_OOM": str(oom_file), "FAKE_CUDA_LOG": str(load_log)})
    return d, nvml, load_log


def samples(d, name: str) -> dict:
    """{labels tuple: value} of one family in a scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(d.metrics()):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_the_plan_spreads_workers_over_the_gpus_that_have_room(tmp_path, daemon_factory, media):
    # GPU 0: 1.2 GiB free (room for one worker, batch 8); GPU 1: 23 GiB free (the most the
    # planner gives: 4 workers, batch 16); GPU 2: 0.1 GiB free (none: it waits for memory).
    gpus = [gpu(0, 8, 6.8), gpu(1, 24, 1), gpu(2, 4, 3.9)]
    d, nvml, load_log = fake(tmp_path, daemon_factory, gpus, {})
    d.start()
    doc = d.status()["devices"]
    assert doc["mode"] == "cuda"
    by_index = {g["index"]: g for g in doc["gpus"]}
    assert [(g["active_workers"], g["batch_size"], g["state"]) for g in doc["gpus"]] == [
        (1, 8, "active"), (4, 16, "active"), (0, 0, "waiting_for_vram")]
    # The same figures the planner gives for what the fake NVML says (the hand check above).
    infos = [GpuMemory(i, g["uuid"], g["name"], g["memory_total"],
                       g["memory_total"] - g["memory_used"]) for i, g in enumerate(gpus)]
    planned = gpu_plan.plan(infos, gpu_plan.PlanRequest("tiny.en", device="cuda"))
    assert [(s.index, s.workers, s.batch_size) for s in planned.gpus] == [(0, 1, 8), (1, 4, 16)]
    assert "needs" in by_index[2]["wait_reason"] and "not used" in by_index[2]["wait_reason"]
    # Workers dealt round-robin: the first ones are on different GPUs.
    assert by_index[0]["workers"] == ["0"] and by_index[1]["workers"][:2] == ["1", "3"]
    assert d.status()["workers"] == 1 + 4 + 4
    # Why, said once in the log; one model per GPU that has room (GPU 2 gets none).
    log = d.log()
    assert log.count("device plan: GPU 1 (NVIDIA Test 1): 23.0 GiB free") == 1
    wait_for(lambda: sorted(load_log.read_text().split("\n")[:-1]) == ["load 0 1", "load 1 4"],
             30, what="one model on GPU 0 (1 worker) and one on GPU 1 (4)")
    active = samples(d, "scribewatch_gpu_workers_active")
    assert active == {(("gpu", "0"),): 1, (("gpu", "1"),): 4, (("gpu", "2"),): 0}
    info = samples(d, "scribewatch_worker_info")
    assert info[(("device", "cuda:1"), ("gpu", "1"), ("worker", "1"))] == 1
    assert len(info) == 9

    # Files are transcribed on the GPUs; each job records its GPU while it runs.
    for name in ("a", "b", "c"):
        shutil.copy(media / "jfk.flac", d.watch / f"{name}.flac")
    seen_gpus = set()

    def finished():
        seen_gpus.update(j["gpu"] for j in d.status()["running"])
        return d.finished_count() == 3
    wait_for(finished, 120, 0.1, "three jobs")
    assert {j["status"] for j in d.jobs()} == {"succeeded"}
    # Each job's row says which GPU ran it: its worker's.
    gpu_of = {w: f"cuda:{g['index']}" for g in doc["gpus"] for w in g["workers"]}
    assert all(j["device"] == gpu_of[j["worker"]] for j in d.jobs())
    assert {j["device"] for j in d.jobs()} <= {"cuda:0", "cuda:1"}
    assert seen_gpus and seen_gpus <= {0, 1}

    # GPU 2's memory frees up (the game ended): it is looked at again and gets workers.
    gpus[2]["memory_used"] = int(0.5 * GIB)
    nvml.write_text(json.dumps({"gpus": gpus}))
    wait_for(lambda: d.status()["devices"]["gpus"][2]["state"] == "active", 20,
             what="GPU 2 in use once it has memory")
    assert d.status()["devices"]["gpus"][2]["active_workers"] == 4
    assert "has room again" in d.log()
    assert d.stop() == 0


def test_devices_and_workers_as_configured(tmp_path, daemon_factory, media):
    d, _, load_log = fake(tmp_path, daemon_factory, [gpu(0, 24, 1), gpu(1, 24, 1)],
                          {"devices": [1], "workers": 2})
    d.start()
    doc = d.status()["devices"]
    assert [(g["index"], g["active_workers"], g["batch_size"]) for g in doc["gpus"]] == [
        (1, 2, 16)]
    assert any("workers as configured" in r for r in doc["reasons"])
    wait_for(lambda: load_log.read_text() == "load 1 2\n", 30, what="one model, on GPU 1")
    assert d.stop() == 0


def test_no_gpu_memory_the_job_waits_then_runs(tmp_path, daemon_factory, media):
    # Both GPUs are full (a transcode, a game): nothing is loaded, the file waits, not fails.
    gpus = [gpu(0, 6, 5.9), gpu(1, 4, 3.95)]
    d, nvml, _ = fake(tmp_path, daemon_factory, gpus, {})
    d.start(wait_ready=False)
    wait_for(lambda: answering(d), 60, what="the daemon answering")
    assert d.status()["devices"]["mode"] == "wait"
    shutil.copy(media / "jfk.flac", d.watch / "a.flac")
    wait_for(lambda: d.status()["waiting_for_vram"] == 1, 30, what="the job waiting for VRAM")
    assert samples(d, "scribewatch_jobs_waiting_for_vram") == {(): 1}
    assert [j["status"] for j in d.jobs()] == ["queued"]
    # Memory frees up on GPU 1: it gets workers, loads, and the job runs.
    gpus[1]["memory_used"] = 256 * MIB
    nvml.write_text(json.dumps({"gpus": gpus}))
    [job] = d.wait_jobs(1, 120)
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert d.status()["waiting_for_vram"] == 0
    assert d.stop() == 0


def test_no_gpu_memory_with_the_cpu_fallback(tmp_path, daemon_factory, media):
    d, _, load_log = fake(tmp_path, daemon_factory, [gpu(0, 6, 5.9)],
                          {"gpu_fallback_to_cpu": True})
    d.start()
    doc = d.status()["devices"]
    assert doc["mode"] == "cpu" and doc["cpu"]["running"] and doc["gpus"][0]["state"] == (
        "waiting_for_vram")
    shutil.copy(media / "jfk.flac", d.watch / "a.flac")
    [job] = d.wait_jobs(1, 120)
    assert (job["status"], job["device"]) == ("succeeded", "cpu")
    assert not load_log.exists() or "load" not in load_log.read_text()
    assert d.stop() == 0


def answering(d) -> bool:
    try:
        return d.get("/api/status")[0] == 200
    except OSError:
        return False


def no_failure_recorded(d) -> None:
    jobs_total = samples(d, "scribewatch_jobs_total")
    assert jobs_total[(("outcome", "failed"), ("source", "folder"))] == 0
    assert not any(samples(d, "scribewatch_job_failures_total").values())
    assert not any(samples(d, "scribewatch_job_retries_total").values())


def test_out_of_memory_mid_job_halves_the_batch_and_the_job_runs_again(tmp_path,
                                                                         daemon_factory, media):
    d, _, load_log = fake(tmp_path, daemon_factory, [gpu(0, 24, 1)], {}, oom=1)
    d.start()
    assert d.status()["devices"]["gpus"][0]["batch_size"] == 16
    shutil.copy(media / "jfk.flac", d.watch / "a.flac")
    [job] = d.wait_jobs(1, 120)
    assert "oom 0" in load_log.read_text()          # the injected error did happen
    assert (job["status"], job["attempts"], job["strikes"], job["crashes"]) == (
        "succeeded", 1, 0, 0)
    assert job["reason"] is None
    doc = d.status()["devices"]
    assert doc["gpus"][0]["batch_size"] == 8 and doc["gpus"][0]["active_workers"] == 4
    assert any("GPU 0 ran out of memory: batch 16 → 8" in r for r in doc["reasons"])
    assert samples(d, "scribewatch_gpu_oom_total") == {(("gpu", "0"),): 1}
    no_failure_recorded(d)
    assert "queued again [waiting_for_vram]" in d.log()
    assert d.stop() == 0


def test_out_of_memory_with_nothing_left_to_shrink_waits_for_vram(tmp_path, daemon_factory,
                                                                  media):
    # One worker, sequential, as configured: after CUDA runs out of memory the GPU waits (its
    # model freed) and is looked at again after vram_retry_seconds; the job waits meanwhile.
    d, _, load_log = fake(tmp_path, daemon_factory, [gpu(0, 24, 1)],
                          {"workers": 1, "batch_size": 0, "vram_retry_seconds": 4}, oom=1)
    d.start()
    shutil.copy(media / "jfk.flac", d.watch / "a.flac")
    seen = {}

    def waiting():
        status = d.status()
        if status["waiting_for_vram"] == 1 and status["devices"]["gpus"][0]["state"] == (
                "waiting_for_vram"):
            seen["status"] = status
            seen["metric"] = samples(d, "scribewatch_jobs_waiting_for_vram")
            seen["job"] = d.jobs()[0]
            return True
        return False
    wait_for(waiting, 60, 0.1, "the job waiting for VRAM")
    assert seen["metric"] == {(): 1}
    assert (seen["job"]["status"], seen["job"]["reason"]) == ("queued", "waiting_for_vram")
    assert "out of memory" in seen["status"]["devices"]["gpus"][0]["wait_reason"]
    assert not seen["status"]["ready"]
    [job] = d.wait_jobs(1, 120)
    assert (job["status"], job["attempts"], job["strikes"]) == ("succeeded", 1, 0)
    assert d.status()["devices"]["gpus"][0]["state"] == "active"
    assert samples(d, "scribewatch_gpu_oom_total") == {(("gpu", "0"),): 1}
    no_failure_recorded(d)
    assert load_log.read_text().count("load 0 1") == 2   # freed while waiting, loaded again
    assert d.stop() == 0
