"""scribewatch / GPU & host: what the GPU, the host, the disks and the daemon process do."""

from __future__ import annotations

from ..config import Config
from ..panels import (
    GREEN,
    GREY,
    ORANGE,
    RED,
    YELLOW,
    Selectors,
    bargauge,
    dashboard,
    row,
    stat,
    steps,
    target,
    timeseries,
    value_map,
)
from ..rules import Names

GPU_LEGEND = "{{instance}} GPU {{gpu}} {{name}}"
# the "total" / "limit" series of a used-against-installed panel: dashed, not filled
DASHED_TOTAL = [{"matcher": {"id": "byRegexp", "options": ".* total$"},
                 "properties": [{"id": "custom.lineStyle",
                                 "value": {"fill": "dash", "dash": [10, 10]}},
                                {"id": "custom.fillOpacity", "value": 0}]}]


def gpu(cfg: Config, sel: Selectors, n: Names) -> list[dict]:
    return [
        row("GPU"),
        stat("NVML", "NVML answered with at least one GPU (`scribewatch_nvml_up`). 0 on a "
             "CPU-only host is normal; on a GPU host it means no driver, no library or an NVML "
             "error, and the GPU panels stay empty.",
             [target(sel("scribewatch_nvml_up"), "{{instance}}")],
             w=4, h=8, unit="none",
             mappings=value_map({1: ("OK", GREEN), 0: ("No GPU data", GREY)}),
             thresholds=steps((None, GREY), (1, GREEN))),
        timeseries("GPU utilisation", "Fraction of time the GPU was busy, all processes "
                   "(`scribewatch_gpu_utilization_ratio`). Low while transcribing: the CPU "
                   "(decode) or the disk is the bottleneck.",
                   [target(sel("scribewatch_gpu_utilization_ratio"), GPU_LEGEND)],
                   w=10, unit="percentunit", min=0, max=1),
        timeseries("Job progress per worker, by GPU", "Progress of each worker's job "
                   "(`scribewatch_job_progress_ratio`) with the GPU the worker runs on "
                   "(`scribewatch_worker_info`), beside the GPU's utilisation: busy workers on "
                   "an idle GPU wait for decode or the disk; an idle worker on a busy GPU is "
                   "held back for memory.",
                   [target(f"{sel('scribewatch_job_progress_ratio')} * on (job, instance, "
                           f"worker) group_left (gpu, device) "
                           f"{sel('scribewatch_worker_info')}",
                           "{{instance}} {{device}} worker {{worker}}")],
                   w=10, unit="percentunit", min=0, max=1),
        timeseries("GPU memory", "Memory in use by all processes "
                   "(`scribewatch_gpu_memory_used_bytes`) against installed "
                   "(`scribewatch_gpu_memory_total_bytes`, dashed).",
                   [target(sel("scribewatch_gpu_memory_used_bytes"), GPU_LEGEND + " used"),
                    target(sel("scribewatch_gpu_memory_total_bytes"), GPU_LEGEND + " total")],
                   w=8, unit="bytes", min=0, overrides=DASHED_TOTAL),
        bargauge("GPU memory used", "Used ÷ installed per GPU (recording rule "
                 f"`{n.gpu_memory_used}`). Near full: a larger model or batch will fail to load "
                 "(CUDA out of memory). Red at the GPU memory alert's threshold.",
                 [target(sel(n.gpu_memory_used), GPU_LEGEND, instant=True)],
                 w=8, unit="percentunit", min=0, max=1,
                 thresholds=steps((None, GREEN), (cfg.t("gpu_memory_used_notice"), YELLOW),
                                  (cfg.t("gpu_memory_used"), RED))),
        timeseries("scribewatch GPU memory", "GPU memory held by the daemon's own process "
                   "(`scribewatch_gpu_process_memory_bytes`): the model while loaded. 0 inside "
                   "a container without the host PID namespace (NVML reports host PIDs).",
                   [target(sel("scribewatch_gpu_process_memory_bytes"), GPU_LEGEND)],
                   w=8, unit="bytes", min=0),
        timeseries("GPU workers active", "Workers that may take a job on each GPU "
                   "(`scribewatch_gpu_workers_active`): the plan's count, fewer after CUDA ran "
                   "out of memory, 0 while the GPU waits for memory.",
                   [target(sel("scribewatch_gpu_workers_active"), "{{instance}} GPU {{gpu}}")],
                   w=8, unit="short", min=0, decimals=0, stepped=True),
        timeseries("Jobs waiting for GPU memory", "Queued jobs held back for lack of GPU "
                   "memory (`scribewatch_jobs_waiting_for_vram`). /api/status says which GPU "
                   "and why.",
                   [target(sel("scribewatch_jobs_waiting_for_vram"), "{{instance}}")],
                   w=8, unit="short", min=0, decimals=0, stepped=True),
        timeseries("GPU out-of-memory errors", "CUDA out-of-memory errors per GPU "
                   f"(`increase(scribewatch_gpu_oom_total[{sel.rate}])`): each sent a job back "
                   "to the queue and shrank that GPU's batch or workers.",
                   [target(f"increase({sel('scribewatch_gpu_oom_total')}[{sel.rate}])",
                           "{{instance}} GPU {{gpu}}")],
                   w=8, unit="short", min=0),
        timeseries("GPU temperature", "Core temperature (`scribewatch_gpu_temperature_celsius`). "
                   "The orange and red lines are the temperature alert's warning and critical "
                   "thresholds; sustained heat brings thermal throttling.",
                   [target(sel("scribewatch_gpu_temperature_celsius"), GPU_LEGEND)],
                   w=8, unit="celsius", threshold_style="line",
                   thresholds=steps((None, GREEN), (cfg.t("gpu_temperature_warning"), ORANGE),
                                    (cfg.t("gpu_temperature_critical"), RED))),
        timeseries("GPU power", "Board power draw (`scribewatch_gpu_power_watts`).",
                   [target(sel("scribewatch_gpu_power_watts"), GPU_LEGEND)],
                   w=8, unit="watt", min=0),
        timeseries("GPU SM clock", "Streaming-multiprocessor clock "
                   "(`scribewatch_gpu_sm_clock_hertz`). Drops under load go with a throttle "
                   "reason.",
                   [target(sel("scribewatch_gpu_sm_clock_hertz"), GPU_LEGEND)],
                   w=8, unit="hertz", min=0),
        timeseries("GPU throttle reasons", "Reasons NVML gives for holding the clocks down "
                   "(`scribewatch_gpu_throttle_reason_active == 1`; only active reasons are "
                   "drawn). gpu_idle is harmless; thermal or power slowdowns under load cost "
                   "speed.",
                   [target(f"{sel('scribewatch_gpu_throttle_reason_active')} == 1",
                           "{{instance}} GPU {{gpu}} {{reason}}")],
                   w=8, unit="none", min=0, max=1, decimals=0, stepped=True, fill=40),
    ]


def host(cfg: Config, sel: Selectors, n: Names) -> list[dict]:
    return [
        row("Host"),
        timeseries("Host CPU", "Busy fraction of all the host's cores "
                   "(`scribewatch_host_cpu_usage_ratio`).",
                   [target(sel("scribewatch_host_cpu_usage_ratio"), "{{instance}}")],
                   w=8, unit="percentunit", min=0, max=1),
        timeseries("Host memory", "Used (`scribewatch_host_memory_used_bytes`), available to new "
                   "work (`scribewatch_host_memory_available_bytes`) and installed "
                   "(`scribewatch_host_memory_total_bytes`). Little available: the model will "
                   "swap or be killed.",
                   [target(sel("scribewatch_host_memory_used_bytes"), "{{instance}} used"),
                    target(sel("scribewatch_host_memory_available_bytes"),
                           "{{instance}} available"),
                    target(sel("scribewatch_host_memory_total_bytes"), "{{instance}} total")],
                   w=8, unit="bytes", min=0, overrides=DASHED_TOTAL),
        bargauge("Filesystem free, by role", "Free ÷ size of the filesystem of each folder role "
                 f"(recording rule `{n.filesystem_free}`): watch (the fullest watch folder), "
                 "output, store. Orange and red at the disk alert's warning and critical "
                 "ratios.",
                 [target(sel(n.filesystem_free), "{{instance}} {{role}}", instant=True)],
                 w=8, unit="percentunit", min=0, max=1,
                 thresholds=steps((None, RED), (cfg.t("filesystem_free_critical"), ORANGE),
                                  (cfg.t("filesystem_free_warning"), GREEN))),
        timeseries("Filesystem free bytes, by role", "Free space per folder role "
                   "(`scribewatch_filesystem_free_bytes`).",
                   [target(sel("scribewatch_filesystem_free_bytes"), "{{instance}} {{role}}")],
                   w=24, unit="bytes", min=0),
    ]


def process(cfg: Config, sel: Selectors) -> list[dict]:
    def proc(metric: str) -> str:           # client_python's series: every target has them
        return sel(metric, foreign=True)

    return [
        row("Process"),
        timeseries("scribewatch resident memory", "RSS of the daemon process "
                   "(`process_resident_memory_bytes`): the model plus decoded audio. Steady "
                   "growth across many jobs: a leak.",
                   [target(proc("process_resident_memory_bytes"), "{{instance}}")],
                   w=8, unit="bytes", min=0),
        timeseries("scribewatch CPU", "CPU time of the daemon process per second "
                   "(`rate(process_cpu_seconds_total)`); 100 % = one core busy.",
                   [target(f"rate({proc('process_cpu_seconds_total')}[{sel.rate}])",
                           "{{instance}}")],
                   w=8, unit="percentunit", min=0),
        timeseries("scribewatch open files", "Open file descriptors (`process_open_fds`) "
                   "against the limit (`process_max_fds`).",
                   [target(proc("process_open_fds"), "{{instance}} open"),
                    target(proc("process_max_fds"), "{{instance}} limit")],
                   w=8, unit="short", min=0, decimals=0),
    ]


def build(cfg: Config) -> dict:
    sel, n = Selectors(cfg), Names(cfg)
    panels = gpu(cfg, sel, n) + host(cfg, sel, n) + process(cfg, sel)
    return dashboard(cfg, "gpu-host", "GPU & host",
                     "What the GPU, the host, the disks and the daemon process are doing.",
                     panels)
