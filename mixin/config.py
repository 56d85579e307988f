"""The one configuration of the scribewatch monitoring mixin.

Everything that the recording rules, the alerts and the dashboards have in common is here, and
only here: the job selector, the rule windows (and so the recording rules' names), every alert
threshold, the runbook's address and the dashboards' identity. Change a value, run
`python -m mixin`, commit the regenerated files.

`CONFIG` is what `python -m mixin` renders; tests build variants with `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType


def _frozen(**values) -> MappingProxyType:
    return MappingProxyType(values)


@dataclasses.dataclass(frozen=True)
class Config:
    # -- which targets are scribewatch ------------------------------------------------------------
    # The scrape job of the daemons (prometheus/prometheus.yml: `job_name`). The metric names
    # (`scribewatch_*`) identify the daemon by themselves, so only the series every target has
    # use it: `up` (the ScribewatchDown / ScribewatchTargetMissing alerts, the Scrape up panel)
    # and client_python's `process_*` (the Process panels).
    job_selector: str = 'job="scribewatch"'

    # -- runbook ----------------------------------------------------------------------------------
    # An alert's runbook_url is this + "#" + its name in lower case (a heading of mixin/runbook.md).
    runbook_url_base: str = "https://github.com/scribewatch/scribewatch/blob/main/mixin/runbook.md"

    # -- windows ----------------------------------------------------------------------------------
    # Recording rules for dashboards use `rule_window`; the names carry it (`...:rate5m`).
    # Dashboards' own rate()/increase() use Grafana's `$__rate_interval`.
    rule_window: str = "5m"
    failure_window: str = "30m"         # the failure ratio and its minimum-count guard
    speed_window: str = "1h"            # the real-time factor the slower-than-real-time alert uses
    speed_history_window: str = "1d"    # the audio-weighted factor the stuck-job alert scales by
    dashboard_rate_interval: str = "$__rate_interval"

    # -- alert thresholds (panels draw the same values) -------------------------------------------
    thresholds: MappingProxyType = dataclasses.field(default_factory=lambda: _frozen(
        restarts=3,                      # restarts within an hour
        model_load_failure_window="15m",
        queue_stalled_window="15m",      # nothing finished for this long
        failure_ratio=0.25,              # failed / (succeeded + failed) above
        failure_min_jobs=5,              # ... over at least this many finished jobs
        job_stuck_audio_seconds=28800,   # 4 h of audio x 2 margin, times the real-time factor
        job_stuck_floor_seconds=7200,    # ... but never below 2 h
        slower_than_realtime=1,          # p95 real-time factor above
        slower_than_realtime_min_jobs=3,
        notification_failures=3,         # refreshes/webhooks given up, per target ...
        notification_failure_window="30m",   # ... within this window
        gpu_temperature_warning=85,      # degrees Celsius
        gpu_temperature_critical=90,
        gpu_memory_used=0.95,            # used / total above
        gpu_memory_used_notice=0.8,      # a panel's yellow step only (no alert)
        gpu_saturation=0.95,             # mean utilisation over the window above ...
        gpu_saturation_window="15m",     # ... while files are queued: the GPU is the limit
        vram_wait="30m",                 # a job waiting for GPU memory this long
        filesystem_free_warning=0.10,    # free / size below ...
        filesystem_free_warning_gib=10,  # ... and free below this many GiB
        filesystem_free_critical=0.03,
        filesystem_free_critical_gib=1,
        store_unreachable_for="2m",      # scribewatch_store_up == 0 this long
        lease_renewals_failing_for="10m", # renewals failing in every 5 m window this long
        takeovers_window="1h",           # takeovers in a cluster within this window ...
        takeovers_repeated=3,            # ... at least this many
    ))

    # -- dashboards -------------------------------------------------------------------------------
    dashboard_uid_prefix: str = "scribewatch"
    dashboard_title_prefix: str = "scribewatch / "
    dashboard_tags: tuple[str, ...] = ("scribewatch",)
    dashboard_refresh: str = "30s"
    dashboard_time_from: str = "now-6h"
    dashboard_timezone: str = "browser"
    # The metric the job / instance variables list the daemons from.
    instance_metric: str = "scribewatch_build_info"

    # The label that names a cluster (one shared job store): set on the scrape targets
    # (prometheus/prometheus.yml). Cluster-wide gauges (the queue) are exported by every node
    # alike, so the cluster rules take their max by it, never a sum.
    cluster_label: str = "cluster"

    def t(self, key: str):
        """One threshold: `cfg.t("restarts")`."""
        return self.thresholds[key]


CONFIG = Config()
