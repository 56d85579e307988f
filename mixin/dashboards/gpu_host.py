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
from ..render import num
from ..rules import Names

GPU_LEGEND = "{{instance}} GPU {{gpu}} {{name}}"
# the "total" / "limit" series of a used-against-installed panel: dashed, not filled
DASHED_TOTAL = [{"matcher": {"id": "byRegexp", "options": ".* total$"},
                 "properties": [{"id": "custom.lineStyle",
                                 "value": {"fill": "dash", "dash": [10, 10]}},
                                {"id": "custom.fillOpacity", "value": 0}]}]


def gpu(cfg: Config, sel: Selectors, n: Names) -> list[dict]:
    warm, hot = cfg.t("gpu_temperature_warning"), cfg.t("gpu_temperature_critical")
    return [
        row("GPU"),
        stat("NVML", "NVML answered with at least one GPU (`scribewatch_nvml_up`). 0 on a "
             "CPU-only host is normal; on a GPU host it means no driver, no library or an NVML "
             "error, and the GPU panels stay empty.",
             [target(sel("scribewatch_nvml_up"), "{{instance}}")],
             w=4, h=8, unit="none",
             mappings=value_map({1: ("OK", GREEN), 0: ("No GPU data", GREY)}),
             thresholds=steps((None, GREY), (1, GREEN)),
             bad="\"No GPU data\" on a GPU host: the driver crashed or NVML is not reachable in "
                 "the container (`NVIDIA_DRIVER_CAPABILITIES` needs `utility`)",
             alert="ScribewatchNvmlDown"),
        timeseries("GPU utilisation", "Fraction of time the GPU was busy, all processes "
                   "(`scribewatch_gpu_utilization_ratio`). Low while transcribing: the CPU "
                   "(decode) or the disk is the bottleneck.",
                   [target(sel("scribewatch_gpu_utilization_ratio"), GPU_LEGEND)],
                   w=10, unit="percentunit", min=0, max=1,
                   bad="low while transcribing: the CPU (decode) or the disk is the bottleneck; "
                       "high while idle: another process (Plex transcodes, games)"),
        timeseries("Job progress per worker, by GPU", "Progress of each worker's job "
                   "(`scribewatch_job_progress_ratio`) with the GPU the worker runs on "
                   "(`scribewatch_worker_info`), beside the GPU's utilisation: busy workers on "
                   "an idle GPU wait for decode or the disk; an idle worker on a busy GPU is "
                   "held back for memory.",
                   [target(f"{sel('scribewatch_job_progress_ratio')} * on (job, instance, "
                           f"worker) group_left (gpu, device) "
                           f"{sel('scribewatch_worker_info')}",
                           "{{instance}} {{device}} worker {{worker}}")],
                   w=10, unit="percentunit", min=0, max=1,
                   bad="workers busy while their GPU's utilisation is low: decode or the disk is "
                       "the limit; a GPU with no moving worker while files queue: its workers wait"
                       " for memory",
                   alert="ScribewatchGpuSaturated"),
        timeseries("GPU memory", "Memory in use by all processes "
                   "(`scribewatch_gpu_memory_used_bytes`) against installed "
                   "(`scribewatch_gpu_memory_total_bytes`, dashed).",
                   [target(sel("scribewatch_gpu_memory_used_bytes"), GPU_LEGEND + " used"),
                    target(sel("scribewatch_gpu_memory_total_bytes"), GPU_LEGEND + " total")],
                   w=8, unit="bytes", min=0, overrides=DASHED_TOTAL,
                   bad="used touching total",
                   alert="ScribewatchGpuMemoryNearlyFull"),
        bargauge("GPU memory used", "Used ÷ installed per GPU (recording rule "
                 f"`{n.gpu_memory_used}`). Near full: a larger model or batch will fail to load "
                 "(CUDA out of memory). Red at the GPU memory alert's threshold.",
                 [target(sel(n.gpu_memory_used), GPU_LEGEND, instant=True)],
                 w=8, unit="percentunit", min=0, max=1,
                 thresholds=steps((None, GREEN), (cfg.t("gpu_memory_used_notice"), YELLOW),
                                  (cfg.t("gpu_memory_used"), RED)),
                 bad="red: the next model load or long file fails with CUDA out of memory",
                 alert="ScribewatchGpuMemoryNearlyFull"),
        timeseries("scribewatch GPU memory", "GPU memory held by the daemon's own process "
                   "(`scribewatch_gpu_process_memory_bytes`): the model while loaded. 0 inside "
                   "a container without the host PID namespace (NVML reports host PIDs).",
                   [target(sel("scribewatch_gpu_process_memory_bytes"), GPU_LEGEND)],
                   w=8, unit="bytes", min=0,
                   bad="far more than the model needs (large batch size); always 0 in a container "
                       "without the host PID namespace (NVML reports host PIDs)"),
        timeseries("GPU workers active", "Workers that may take a job on each GPU "
                   "(`scribewatch_gpu_workers_active`): the plan's count, fewer after CUDA ran "
                   "out of memory, 0 while the GPU waits for memory.",
                   [target(sel("scribewatch_gpu_workers_active"), "{{instance}} GPU {{gpu}}")],
                   w=8, unit="short", min=0, decimals=0, stepped=True,
                   bad="lower than planned: CUDA ran out of memory and the plan shrank; 0: the GPU"
                       " waits for memory",
                   alert="ScribewatchJobWaitingForVram"),
        timeseries("Jobs waiting for GPU memory", "Queued jobs held back for lack of GPU "
                   "memory (`scribewatch_jobs_waiting_for_vram`). /api/status says which GPU "
                   "and why.",
                   [target(sel("scribewatch_jobs_waiting_for_vram"), "{{instance}}")],
                   w=8, unit="short", min=0, decimals=0, stepped=True,
                   bad="above 0 for long: another program keeps the memory (a game, a transcode)",
                   alert="ScribewatchJobWaitingForVram"),
        timeseries("GPU out-of-memory errors", "CUDA out-of-memory errors per GPU "
                   f"(`increase(scribewatch_gpu_oom_total[{sel.rate}])`): each sent a job back "
                   "to the queue and shrank that GPU's batch or workers.",
                   [target(f"increase({sel('scribewatch_gpu_oom_total')}[{sel.rate}])",
                           "{{instance}} GPU {{gpu}}")],
                   w=8, unit="short", min=0,
                   bad="repeated: the planner's estimate is too high for what else runs on the "
                       "card; set `batch_size` / `workers` lower"),
        timeseries("GPU temperature", "Core temperature (`scribewatch_gpu_temperature_celsius`). "
                   "The orange and red lines are the temperature alert's warning and critical "
                   "thresholds; sustained heat brings thermal throttling.",
                   [target(sel("scribewatch_gpu_temperature_celsius"), GPU_LEGEND)],
                   w=8, unit="celsius", threshold_style="line",
                   thresholds=steps((None, GREEN), (cfg.t("gpu_temperature_warning"), ORANGE),
                                    (cfg.t("gpu_temperature_critical"), RED)),
                   bad=f"sustained above {num(warm)} °C (dust, dead fan, closed cabinet)",
                   alert=f"ScribewatchGpuTemperatureHigh (warning above {num(warm)} °C, critical "
                         f"above {num(hot)} °C)"),
        timeseries("GPU power", "Board power draw (`scribewatch_gpu_power_watts`).",
                   [target(sel("scribewatch_gpu_power_watts"), GPU_LEGEND)],
                   w=8, unit="watt", min=0,
                   bad="pinned at the power limit with a power throttle reason"),
        timeseries("GPU SM clock", "Streaming-multiprocessor clock "
                   "(`scribewatch_gpu_sm_clock_hertz`). Drops under load go with a throttle "
                   "reason.",
                   [target(sel("scribewatch_gpu_sm_clock_hertz"), GPU_LEGEND)],
                   w=8, unit="hertz", min=0,
                   bad="dropping under load, together with a thermal or power throttle reason"),
        timeseries("GPU throttle reasons", "Reasons NVML gives for holding the clocks down "
                   "(`scribewatch_gpu_throttle_reason_active == 1`; only active reasons are "
                   "drawn). gpu_idle is harmless; thermal or power slowdowns under load cost "
                   "speed.",
                   [target(f"{sel('scribewatch_gpu_throttle_reason_active')} == 1",
                           "{{instance}} GPU {{gpu}} {{reason}}")],
                   w=8, unit="none", min=0, max=1, decimals=0, stepped=True, fill=40,
                   bad="`sw_thermal_slowdown`, `hw_thermal_slowdown`, `hw_slowdown`, "
                       "`hw_power_brake_slowdown` during jobs (`gpu_idle` when idle is normal; "
                       "`sw_power_cap` at full load is common)",
                   alert="ScribewatchGpuTemperatureHigh"),
    ]


def host(cfg: Config, sel: Selectors, n: Names) -> list[dict]:
    return [
        row("Host"),
        timeseries("Host CPU", "Busy fraction of all the host's cores "
                   "(`scribewatch_host_cpu_usage_ratio`).",
                   [target(sel("scribewatch_host_cpu_usage_ratio"), "{{instance}}")],
                   w=8, unit="percentunit", min=0, max=1,
                   bad="pinned at 100 % on a GPU box: decode or another service starves the "
                       "pipeline"),
        timeseries("Host memory", "Used (`scribewatch_host_memory_used_bytes`), available to new "
                   "work (`scribewatch_host_memory_available_bytes`) and installed "
                   "(`scribewatch_host_memory_total_bytes`). Little available: the model will "
                   "swap or be killed.",
                   [target(sel("scribewatch_host_memory_used_bytes"), "{{instance}} used"),
                    target(sel("scribewatch_host_memory_available_bytes"),
                           "{{instance}} available"),
                    target(sel("scribewatch_host_memory_total_bytes"), "{{instance}} total")],
                   w=8, unit="bytes", min=0, overrides=DASHED_TOTAL,
                   bad="available near 0: the model will swap or the OOM killer will restart the "
                       "daemon",
                   alert="ScribewatchRestarting (after OOM kills)"),
        bargauge("Filesystem free, by role", "Free ÷ size of the filesystem of each folder role "
                 f"(recording rule `{n.filesystem_free}`): watch (the fullest watch folder), "
                 "output, store. Orange and red at the disk alert's warning and critical "
                 "ratios.",
                 [target(sel(n.filesystem_free), "{{instance}} {{role}}", instant=True)],
                 w=8, unit="percentunit", min=0, max=1,
                 thresholds=steps((None, RED), (cfg.t("filesystem_free_critical"), ORANGE),
                                  (cfg.t("filesystem_free_warning"), GREEN)),
                 bad="orange/red on `output` or `store`",
                 alert="ScribewatchFilesystemNearlyFull (output and store only, and only when also"
                       f" below {num(cfg.t('filesystem_free_warning_gib'))} GiB / "
                       f"{num(cfg.t('filesystem_free_critical_gib'))} GiB free: a big media "
                       "volume at 5 % still has room for subtitles)"),
        timeseries("Filesystem free bytes, by role", "Free space per folder role "
                   "(`scribewatch_filesystem_free_bytes`).",
                   [target(sel("scribewatch_filesystem_free_bytes"), "{{instance}} {{role}}")],
                   w=24, unit="bytes", min=0,
                   bad="a steady downward slope towards 0",
                   alert="ScribewatchFilesystemNearlyFull"),
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
                   w=8, unit="bytes", min=0,
                   bad="growth across many jobs that never comes back down (a leak); a jump with a"
                       " larger model is normal"),
        timeseries("scribewatch CPU", "CPU time of the daemon process per second "
                   "(`rate(process_cpu_seconds_total)`); 100 % = one core busy.",
                   [target(f"rate({proc('process_cpu_seconds_total')}[{sel.rate}])",
                           "{{instance}}")],
                   w=8, unit="percentunit", min=0,
                   bad="high while idle (a rescan loop over a huge tree: raise "
                       "`rescan_interval_seconds`)"),
        timeseries("scribewatch open files", "Open file descriptors (`process_open_fds`) "
                   "against the limit (`process_max_fds`).",
                   [target(proc("process_open_fds"), "{{instance}} open"),
                    target(proc("process_max_fds"), "{{instance}} limit")],
                   w=8, unit="short", min=0, decimals=0,
                   bad="open approaching the limit (inotify watches on huge trees, a descriptor "
                       "leak)"),
    ]


def build(cfg: Config) -> dict:
    sel, n = Selectors(cfg), Names(cfg)
    panels = gpu(cfg, sel, n) + host(cfg, sel, n) + process(cfg, sel)
    return dashboard(cfg, "gpu-host", "GPU & host",
                     "What the GPU, the host, the disks and the daemon process are doing.",
                     panels)
