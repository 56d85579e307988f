"""Source of the dashboards in grafana/dashboards/*.json.

    python grafana/generate.py            # rewrite the JSON files
    python grafana/generate.py --check    # exit 1 if a JSON file differs from this source

Edit here, not in the JSON: every panel and every target get the `datasource` variable, every
query its `instance=~"$instance"` filter, ids and grid positions are assigned in order. The JSON
is committed so Grafana's file provisioning (and "Import dashboard") reads it directly.

Thresholds that mirror an alert are taken from `ALERT_THRESHOLDS` (kept equal to
prometheus/rules/alerts.yml by tests/test_dashboards.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"

DS = {"type": "prometheus", "uid": "${datasource}"}
I = 'instance=~"$instance"'          # the filter every selector carries

# Alert thresholds drawn on panels: key -> (alert in prometheus/rules/alerts.yml, value).
# tests/test_dashboards.py checks each value is a comparison constant of that alert's expr.
ALERT_THRESHOLDS: dict[str, tuple[str, float]] = {
    "restarts": ("ScribewatchRestarting", 3),
    "job_stuck_floor": ("ScribewatchJobStuck", 7200),        # the threshold's floor (2 h)
    "slower_than_realtime": ("ScribewatchSlowerThanRealtime", 1),
    "failure_ratio": ("ScribewatchJobFailureRatioHigh", 0.25),
    "failure_min_jobs": ("ScribewatchJobFailureRatioHigh", 5),
    "gpu_temperature_warning": ("ScribewatchGpuTemperatureHigh", 85),
    "gpu_temperature_critical": ("ScribewatchGpuTemperatureHigh", 90),
    "gpu_memory": ("ScribewatchGpuMemoryNearlyFull", 0.95),
    "filesystem_warning": ("ScribewatchFilesystemNearlyFull", 0.10),
    "filesystem_critical": ("ScribewatchFilesystemNearlyFull", 0.03),
}


def at(key: str) -> float:
    return ALERT_THRESHOLDS[key][1]

GREEN, YELLOW, ORANGE, RED, BLUE, GREY = "green", "yellow", "orange", "red", "blue", "text"
OUTCOME_COLORS = {"succeeded": GREEN, "failed": RED, "skipped": BLUE}


# --- building blocks --------------------------------------------------------------------------
def target(expr: str, legend: str = "__auto", *, instant: bool = False, fmt: str | None = None,
           hide: bool = False) -> dict:
    t = {"datasource": DS, "editorMode": "code", "expr": expr, "legendFormat": legend,
         "range": not instant, "instant": instant}
    if fmt:
        t["format"] = fmt
    if hide:
        t["hide"] = True
    return t


def steps(*pairs) -> dict:
    """steps((None, GREEN), (0.5, YELLOW), (1, RED)) -> absolute thresholds."""
    return {"mode": "absolute",
            "steps": [{"color": c, "value": v} for v, c in pairs]}


def value_map(mapping: dict) -> list[dict]:
    return [{"type": "value",
             "options": {str(k): {"text": t, "color": c, "index": i}
                         for i, (k, (t, c)) in enumerate(mapping.items())}}]


UP_DOWN = value_map({1: ("Up", GREEN), 0: ("Down", RED)})
YES_NO = value_map({1: ("Yes", GREEN), 0: ("No", RED)})


def color_override(pattern: str, color: str) -> dict:
    return {"matcher": {"id": "byRegexp", "options": pattern},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}


def panel(kind: str, title: str, description: str, targets: list[dict], *, w: int, h: int,
          unit: str | None = None, min=None, max=None, decimals=None, thresholds: dict | None = None,
          mappings: list | None = None, overrides: list | None = None, options: dict | None = None,
          custom: dict | None = None, color: dict | None = None, transformations: list | None = None,
          links: list | None = None) -> dict:
    defaults: dict = {}
    if unit:
        defaults["unit"] = unit
    if min is not None:
        defaults["min"] = min
    if max is not None:
        defaults["max"] = max
    if decimals is not None:
        defaults["decimals"] = decimals
    defaults["thresholds"] = thresholds or steps((None, GREEN))
    defaults["mappings"] = mappings or []
    if color:
        defaults["color"] = color
    if custom:
        defaults["custom"] = custom
    for letter, t in zip("ABCDEFGHIJ", targets):
        t["refId"] = letter
    p = {"type": kind, "title": title, "description": description, "datasource": DS,
         "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
         "options": options or {}, "_w": w, "_h": h}
    if transformations:
        p["transformations"] = transformations
    if links:
        p["links"] = links
    return p


def timeseries(title, description, targets, *, w=12, h=8, unit=None, stacked=False,
               threshold_style: str | None = None, stepped=False, fill=10, legend_calcs=None,
               **kw) -> dict:
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": fill, "showPoints": "never",
              "spanNulls": False, "axisSoftMin": 0,
              "lineInterpolation": "stepAfter" if stepped else "linear",
              "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
              "thresholdsStyle": {"mode": threshold_style or "off"}}
    opts = {"tooltip": {"mode": "multi", "sort": "desc"},
            "legend": {"showLegend": True, "displayMode": "table" if legend_calcs else "list",
                       "placement": "bottom", "calcs": legend_calcs or []}}
    kw.setdefault("color", {"mode": "palette-classic"})
    return panel("timeseries", title, description, targets, w=w, h=h, unit=unit, custom=custom,
                 options=opts, **kw)


def stat(title, description, targets, *, w=4, h=4, unit=None, color_mode="background",
         graph=False, text_mode="auto", calc="lastNotNull", **kw) -> dict:
    opts = {"reduceOptions": {"calcs": [calc], "fields": "", "values": False},
            "colorMode": color_mode, "graphMode": "area" if graph else "none",
            "justifyMode": "auto", "orientation": "auto", "textMode": text_mode,
            "wideLayout": True, "showPercentChange": False}
    kw.setdefault("color", {"mode": "thresholds"})
    return panel("stat", title, description, targets, w=w, h=h, unit=unit, options=opts, **kw)


def gauge(title, description, targets, *, w=6, h=6, unit=None, **kw) -> dict:
    opts = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "auto", "showThresholdLabels": False, "showThresholdMarkers": True}
    kw.setdefault("color", {"mode": "thresholds"})
    return panel("gauge", title, description, targets, w=w, h=h, unit=unit, options=opts, **kw)


def bargauge(title, description, targets, *, w=12, h=8, unit=None, calc="lastNotNull",
             display="gradient", **kw) -> dict:
    opts = {"reduceOptions": {"calcs": [calc], "fields": "", "values": False},
            "orientation": "horizontal", "displayMode": display, "showUnfilled": True,
            "valueMode": "color", "namePlacement": "auto", "sizing": "auto",
            "minVizHeight": 16, "minVizWidth": 8, "maxVizHeight": 300}
    kw.setdefault("color", {"mode": "thresholds"})
    return panel("bargauge", title, description, targets, w=w, h=h, unit=unit, options=opts, **kw)


def table(title, description, targets, *, w=24, h=6, hide_columns=("Time", "__name__"),
          rename: dict | None = None, merge=False, **kw) -> dict:
    transformations = []
    if merge:
        transformations.append({"id": "merge", "options": {}})
    transformations.append({"id": "organize", "options": {
        "excludeByName": {c: True for c in hide_columns},
        "indexByName": {}, "renameByName": rename or {}}})
    opts = {"showHeader": True, "cellHeight": "sm",
            "footer": {"show": False, "reducer": ["sum"], "countRows": False, "fields": ""}}
    custom = {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False}
    return panel("table", title, description, targets, w=w, h=h, options=opts, custom=custom,
                 transformations=transformations, **kw)


def heatmap(title, description, targets, *, w=6, h=8, unit="s") -> dict:
    opts = {"calculate": False,
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit},
            "rowsFrame": {"layout": "auto"},
            "color": {"mode": "scheme", "scheme": "Oranges", "fill": "dark-orange",
                      "scale": "exponential", "exponent": 0.5, "steps": 64, "reverse": False},
            "cellGap": 1, "filterValues": {"le": 1e-9},
            "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": False},
            "legend": {"show": True}, "showValue": "never",
            "exemplars": {"color": "rgba(255,0,255,0.7)"}}
    custom = {"hideFrom": {"legend": False, "tooltip": False, "viz": False},
              "scaleDistribution": {"type": "linear"}}
    return panel("heatmap", title, description, targets, w=w, h=h, options=opts, custom=custom)


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_w": 24, "_h": 1}


# --- dashboard --------------------------------------------------------------------------------
def layout(panels: list[dict]) -> list[dict]:
    """Assign ids and gridPos left to right, top to bottom (a row panel starts a new line)."""
    x = y = line_h = 0
    out = []
    for pid, p in enumerate(panels, start=1):
        w, h = p.pop("_w"), p.pop("_h")
        if p["type"] == "row" or x + w > 24:
            y += line_h
            x = line_h = 0
        p["id"] = pid
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x += w
        line_h = max(line_h, h)
        if p["type"] == "row":
            y += h
            x = line_h = 0
        out.append(p)
    return out


def templating() -> dict:
    return {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [],
         "refresh": 1, "regex": "", "skipUrlSync": False},
        {"name": "instance", "label": "Instance", "type": "query", "datasource": DS,
         "definition": "label_values(scribewatch_build_info, instance)",
         "query": {"qryType": 1, "query": "label_values(scribewatch_build_info, instance)",
                   "refId": "PrometheusVariableQueryEditor-VariableQuery"},
         "current": {}, "hide": 0, "includeAll": True, "multi": True, "options": [],
         "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 1},
    ]}


def dashboard(uid: str, title: str, description: str, panels: list[dict],
              refresh: str = "30s", time_from: str = "now-6h") -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["scribewatch"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"title": "scribewatch", "type": "dashboards", "tags": ["scribewatch"],
                   "asDropdown": False, "includeVars": True, "keepTime": True,
                   "icon": "external link", "targetBlank": False, "tooltip": "", "url": ""}],
        "templating": templating(),
        "panels": layout(panels),
    }


# --- the three dashboards ---------------------------------------------------------------------
def overview() -> dict:
    per_hour = "suffix:/h"
    panels = [
        row("Health"),
        stat("Scrape up", "Prometheus reached the daemon's /metrics at the last scrape "
             "(`up`). Down: the process is gone, the port is wrong or blocked.",
             [target(f"up{{{I}}}", "{{instance}}")], w=3, mappings=UP_DOWN,
             thresholds=steps((None, RED), (1, GREEN))),
        stat("Ready", "The daemon can take work: model usable, watcher up, job store writable "
             "(`scribewatch_ready`). /readyz says why not.",
             [target(f"scribewatch_ready{{{I}}}", "{{instance}}")], w=3,
             mappings=value_map({1: ("Ready", GREEN), 0: ("Not ready", RED)}),
             thresholds=steps((None, RED), (1, GREEN))),
        stat("Watcher", "The folder watcher runs and every watch folder is reachable "
             "(`scribewatch_watcher_up`).",
             [target(f"scribewatch_watcher_up{{{I}}}", "{{instance}}")], w=3, mappings=UP_DOWN,
             thresholds=steps((None, RED), (1, GREEN))),
        stat("Watch folders unavailable", "Watch folders missing or unreadable now: a dropped "
             "NFS/SMB mount or a deleted folder (`scribewatch_watch_dirs_unavailable`).",
             [target(f"scribewatch_watch_dirs_unavailable{{{I}}}", "{{instance}}")],
             w=3, decimals=0, thresholds=steps((None, GREEN), (1, RED))),
        stat("Model loaded", "The Whisper model is in memory now (`scribewatch_model_loaded`). "
             "0 before the first job and after an idle unload is normal.",
             [target(f"scribewatch_model_loaded{{{I}}}", "{{instance}}")],
             w=3, mappings=YES_NO, thresholds=steps((None, BLUE), (1, GREEN))),
        stat("Last success", "Time since a job last succeeded "
             "(`time() - scribewatch_last_success_timestamp_seconds`); no value until one did.",
             [target(f"time() - (scribewatch_last_success_timestamp_seconds{{{I}}} > 0)",
                     "{{instance}}")],
             w=3, unit="s", color_mode="value", thresholds=steps((None, GREY))),
        stat("Uptime", "Time since the daemon started (`scribewatch_start_time_seconds`). A "
             "small value that keeps resetting is a crash loop.",
             [target(f"time() - scribewatch_start_time_seconds{{{I}}}", "{{instance}}")],
             w=3, unit="s", color_mode="value", thresholds=steps((None, GREY))),
        stat("Restarts (1 h)", "Daemon restarts in the last hour "
             "(`changes(scribewatch_start_time_seconds[1h])`). Red at the crash-loop alert's "
             "threshold (ScribewatchRestarting).",
             [target(f"changes(scribewatch_start_time_seconds{{{I}}}[1h])", "{{instance}}")],
             w=3, decimals=0,
             thresholds=steps((None, GREEN), (1, YELLOW), (at("restarts"), RED))),
        table("Instances", "One row per daemon: versions (`scribewatch_build_info`) and the model "
              "last loaded with its device and compute type (`scribewatch_model_info`, present "
              "after the first load).",
              [target(f"scribewatch_build_info{{{I}}}", instant=True, fmt="table"),
               target(f"scribewatch_model_info{{{I}}}", instant=True, fmt="table")],
              h=5, merge=True,
              hide_columns=("Time", "__name__", "Value #A", "Value #B"),
              rename={"faster_whisper": "faster-whisper", "ctranslate2": "CTranslate2"}),

        row("Files"),
        timeseries("Files finished per hour, by outcome",
                   "Jobs finished per hour: succeeded, failed, skipped (recording rule "
                   "`instance_outcome:scribewatch_jobs:rate5m` × 3600).",
                   [target(f"instance_outcome:scribewatch_jobs:rate5m{{{I}}} * 3600",
                           "{{instance}} {{outcome}}")],
                   w=12, unit=per_hour,
                   overrides=[color_override(f".*{o}$", c) for o, c in OUTCOME_COLORS.items()]),
        stat("Files in time range", "Jobs finished in the dashboard's time range, by outcome "
             "(`increase(scribewatch_jobs_total[$__range])`, all selected instances).",
             [target(f"round(sum by (outcome) (increase(scribewatch_jobs_total{{{I}}}"
                     f"[$__range])))", "{{outcome}}", instant=True)],
             w=6, h=8, decimals=0, color_mode="value", text_mode="value_and_name",
             thresholds=steps((None, GREY)),
             overrides=[color_override(f"{o}", c) for o, c in OUTCOME_COLORS.items()]),
        stat("Files since start", "Jobs finished since each daemon last started "
             "(`scribewatch_jobs_total`, summed over the selected instances). `scribewatch "
             "history` has the all-time list.",
             [target(f"sum by (outcome) (scribewatch_jobs_total{{{I}}})", "{{outcome}}",
                     instant=True)],
             w=6, h=8, decimals=0, color_mode="value", text_mode="value_and_name",
             thresholds=steps((None, GREY)),
             overrides=[color_override(f"{o}", c) for o, c in OUTCOME_COLORS.items()]),

        row("Queue"),
        timeseries("Queue depth and running jobs",
                   "Jobs waiting (`scribewatch_queue_jobs`) and in hand "
                   "(`scribewatch_jobs_running`). A queue that only grows: the daemon is slower "
                   "than the files arrive.",
                   [target(f"scribewatch_queue_jobs{{{I}}}", "{{instance}} queued"),
                    target(f"scribewatch_jobs_running{{{I}}}", "{{instance}} running")],
                   w=12, decimals=0, stepped=True,
                   overrides=[color_override(".*queued$", ORANGE),
                              color_override(".*running$", GREEN)]),
        timeseries("Oldest running job", "Age of the longest-running job in hand "
                   "(`scribewatch_oldest_running_job_age_seconds`, 0 when idle). The red line "
                   "is the stuck-job alert's threshold.",
                   [target(f"scribewatch_oldest_running_job_age_seconds{{{I}}}",
                           "{{instance}}")],
                   w=12, unit="s", threshold_style="line",
                   thresholds=steps((None, GREEN), (at("job_stuck_floor"), RED))),

        row("Speed"),
        timeseries("Throughput (audio hours per hour)",
                   "Audio transcribed per unit of wall time "
                   "(`instance:scribewatch_audio_seconds:rate5m`): 3 means three hours of "
                   "audio per hour. 0 while idle.",
                   [target(f"instance:scribewatch_audio_seconds:rate5m{{{I}}}",
                           "{{instance}}")],
                   w=8, unit="suffix:h/h", decimals=2),
        stat("Audio transcribed in time range", "Audio duration of succeeded jobs in the "
             "time range (`increase(scribewatch_audio_seconds_total[$__range])`).",
             [target(f"sum(increase(scribewatch_audio_seconds_total{{{I}}}[$__range]))",
                     "audio", instant=True)],
             w=4, h=8, unit="s", color_mode="value", thresholds=steps((None, GREY))),
        timeseries("Real-time factor p50 / p95",
                   "Processing seconds per audio second of succeeded jobs (recording rules "
                   "`instance:scribewatch_realtime_factor:p50_rate5m`, `p95_rate5m`). Below 1 "
                   "is faster than real time; short clips read high (fixed overhead). The alert "
                   "(ScribewatchSlowerThanRealtime) watches the 1 h p95 against the red line.",
                   [target(f"instance:scribewatch_realtime_factor:p50_rate5m{{{I}}}",
                           "{{instance}} p50"),
                    target(f"instance:scribewatch_realtime_factor:p95_rate5m{{{I}}}",
                           "{{instance}} p95"),
                    target(f"instance:scribewatch_realtime_factor:p95_rate1h{{{I}}}",
                           "{{instance}} p95 (1 h, alerted)")],
                   w=12, unit="suffix:s/s", decimals=2, threshold_style="line",
                   thresholds=steps((None, GREEN), (at("slower_than_realtime"), RED))),

        row("Failures"),
        timeseries("Failures per hour, by stage and reason",
                   "Failed jobs per hour by stage and reason code (recording rule "
                   "`instance_stage_reason:scribewatch_job_failures:rate5m` × 3600, non-zero "
                   "series only). Reason codes: docs/troubleshooting.md / pipeline/errors.py.",
                   [target(f"instance_stage_reason:scribewatch_job_failures:rate5m{{{I}}} "
                           f"* 3600 > 0", "{{instance}} {{stage}}/{{reason}}")],
                   w=10, unit=per_hour, stacked=True, fill=60),
        bargauge("Failures in time range, by reason", "Failed jobs in the time range by "
                 "stage/reason (`increase(scribewatch_job_failures_total[$__range])`).",
                 [target(f"sort_desc(round(sum by (stage, reason) (increase("
                         f"scribewatch_job_failures_total{{{I}}}[$__range]))) > 0)",
                         "{{stage}}/{{reason}}", instant=True)],
                 w=5, decimals=0, thresholds=steps((None, RED))),
        bargauge("Skipped in time range, by reason", "Files that needed no subtitle "
                 "(already had one, embedded subtitle, no speech) in the time range "
                 "(`increase(scribewatch_files_skipped_total[$__range])`).",
                 [target(f"sort_desc(round(sum by (reason) (increase("
                         f"scribewatch_files_skipped_total{{{I}}}[$__range]))) > 0)",
                         "{{reason}}", instant=True)],
                 w=5, decimals=0, thresholds=steps((None, BLUE))),
        gauge("Failure ratio (30 min)", "failed ÷ (succeeded + failed) over 30 minutes "
              "(recording rule `instance:scribewatch_job_failures:ratio_rate30m`). The alert "
              "also needs a minimum number of finished jobs "
              "(`instance:scribewatch_jobs_finished:increase30m`).",
              [target(f"instance:scribewatch_job_failures:ratio_rate30m{{{I}}}",
                      "{{instance}}")],
              w=4, h=8, unit="percentunit", min=0, max=1,
              thresholds=steps((None, GREEN), (at("failure_ratio"), RED))),

        row("Alerts"),
        table("Alerts firing and pending", "scribewatch alerts Prometheus evaluates now "
              "(`ALERTS`), pending ones included: pending means the condition holds but not "
              "yet for the rule's `for:` time. Alertmanager (port 9093) has the routing and "
              "silences.",
              [target('ALERTS{alertname=~"Scribewatch.*", instance=~"$instance|"}',
                      instant=True, fmt="table")],
              h=7, hide_columns=("Time", "__name__", "Value"),
              overrides=[{"matcher": {"id": "byName", "options": "alertstate"},
                          "properties": [
                              {"id": "custom.cellOptions",
                               "value": {"type": "color-background"}},
                              {"id": "mappings", "value": value_map(
                                  {"firing": ("firing", RED), "pending": ("pending", ORANGE)})}]}]),
    ]
    return dashboard("scribewatch-overview", "scribewatch / Overview",
                     "Is it working, how fast, what failed and why — one daemon or many.", panels)


def pipeline() -> dict:
    stage_q = "instance_stage:scribewatch_stage_duration_seconds:{q}_rate5m{{" + I + "}}"
    panels = [row("Stage latency")]
    for q in ("p50", "p95", "p99"):
        panels.append(timeseries(
            f"Stage latency {q}", f"{q} of each stage's duration over 5 minutes (recording rule "
            f"`instance_stage:scribewatch_stage_duration_seconds:{q}_rate5m`). A stage shows "
            "only while it ran in the window. Transcribe dominates; a slow probe or write "
            "points at the storage.",
            [target(stage_q.format(q=q), "{{instance}} {{stage}}")],
            w=8, unit="s"))
    for stage in ("probe", "decode", "transcribe", "write"):
        panels.append(heatmap(
            f"{stage} duration heatmap", f"Distribution of the {stage} stage's duration "
            "(`scribewatch_stage_duration_seconds_bucket`, increase per interval): each "
            "column is a time slice, darker cells hold more jobs.",
            [target(f'sum by (le) (increase(scribewatch_stage_duration_seconds_bucket'
                    f'{{{I}, stage="{stage}"}}[$__rate_interval]))', "{{le}}",
                    fmt="heatmap")]))
    panels += [
        row("Queue and jobs"),
        timeseries("Queue wait", "Time from a file's detection to a worker picking it up: "
                   "p95 (recording rule `instance:scribewatch_queue_wait_seconds:p95_rate5m`) "
                   "and p50 (`scribewatch_queue_wait_seconds_bucket`). Growing wait: add "
                   "workers or a faster model/device.",
                   [target(f"instance:scribewatch_queue_wait_seconds:p95_rate5m{{{I}}}",
                           "{{instance}} p95"),
                    target(f"histogram_quantile(0.5, sum by (job, instance, le) (rate("
                           f"scribewatch_queue_wait_seconds_bucket{{{I}}}[$__rate_interval])))",
                           "{{instance}} p50")],
                   w=12, unit="s"),
        timeseries("Job duration vs audio duration",
                   "Succeeded jobs: detected → written, p50 / p95 (recording rules "
                   "`instance:scribewatch_job_duration_seconds:p50_rate5m`, `p95_rate5m`), "
                   "against the mean audio length of those jobs (audio seconds ÷ succeeded "
                   "jobs). Job time well above the audio length means slower than real time.",
                   [target(f"instance:scribewatch_job_duration_seconds:p50_rate5m{{{I}}}",
                           "{{instance}} job p50"),
                    target(f"instance:scribewatch_job_duration_seconds:p95_rate5m{{{I}}}",
                           "{{instance}} job p95"),
                    target(f"sum by (job, instance) (rate(scribewatch_audio_seconds_total{{{I}}}"
                           f"[$__rate_interval])) / (sum by (job, instance) (rate("
                           f'scribewatch_jobs_total{{{I}, outcome="succeeded"}}'
                           f"[$__rate_interval])) > 0)", "{{instance}} audio per job (mean)")],
                   w=12, unit="s",
                   overrides=[{"matcher": {"id": "byRegexp", "options": ".*audio per job.*"},
                               "properties": [{"id": "custom.lineStyle",
                                               "value": {"fill": "dash", "dash": [10, 10]}}]}]),
        timeseries("Retries per hour, by stage and reason",
                   "Transient failures sent back to the queue (`scribewatch_job_retries_total`). "
                   "Steady retries: a flaky mount, a full disk or a model that fails to load.",
                   [target(f"sum by (instance, stage, reason) (rate(scribewatch_job_retries_total"
                           f"{{{I}}}[$__rate_interval])) * 3600", "{{instance}} {{stage}}/{{reason}}")],
                   w=12, unit="suffix:/h"),
        bargauge("Progress of the jobs in hand", "Transcribed audio ÷ total audio of each "
                 "worker's current job (`scribewatch_job_progress_ratio`, 0 when idle). A bar "
                 "that does not move while the oldest job ages: a stuck job.",
                 [target(f"scribewatch_job_progress_ratio{{{I}}}",
                         "{{instance}} worker {{worker}}", instant=True)],
                 w=12, unit="percentunit", min=0, max=1, thresholds=steps((None, BLUE))),

        row("Model"),
        stat("Model load time", "Duration of the last successful model load "
             "(`scribewatch_model_load_seconds`). Long loads: a download, a slow disk, or a "
             "large model on a CPU.",
             [target(f"scribewatch_model_load_seconds{{{I}}}", "{{instance}}")],
             w=6, h=5, unit="s", color_mode="value", graph=True, thresholds=steps((None, GREY))),
        stat("Model loaded", "The model is in memory now (`scribewatch_model_loaded`).",
             [target(f"scribewatch_model_loaded{{{I}}}", "{{instance}}")],
             w=6, h=5, mappings=YES_NO, thresholds=steps((None, BLUE), (1, GREEN))),
        stat("Model load failures in time range", "Failed model loads "
             "(`increase(scribewatch_model_load_failures_total[$__range])`). Any: check the "
             "model name, the network or the models folder, and for CUDA the driver/cuDNN.",
             [target(f"round(sum by (instance) (increase(scribewatch_model_load_failures_total"
                     f"{{{I}}}[$__range])))", "{{instance}}", instant=True)],
             w=6, h=5, decimals=0, thresholds=steps((None, GREEN), (1, RED))),
        stat("Suspect transcripts in time range", "Transcripts the hallucination guard flagged "
             "and re-ran (`increase(scribewatch_suspect_transcripts_total[$__range])`).",
             [target(f"round(sum by (instance) (increase(scribewatch_suspect_transcripts_total"
                     f"{{{I}}}[$__range])))", "{{instance}}", instant=True)],
             w=6, h=5, decimals=0, thresholds=steps((None, GREEN), (1, YELLOW))),
    ]
    return dashboard("scribewatch-pipeline", "scribewatch / Pipeline",
                     "Where the time goes: stages, queue, jobs, the model.", panels)


def gpu_host() -> dict:
    gpu_legend = "{{instance}} GPU {{gpu}} {{name}}"
    panels = [
        row("GPU"),
        stat("NVML", "NVML answered with at least one GPU (`scribewatch_nvml_up`). 0 on a "
             "CPU-only host is normal; on a GPU host it means no driver, no library or an NVML "
             "error, and the GPU panels stay empty.",
             [target(f"scribewatch_nvml_up{{{I}}}", "{{instance}}")],
             w=4, h=8, mappings=value_map({1: ("OK", GREEN), 0: ("No GPU data", GREY)}),
             thresholds=steps((None, GREY), (1, GREEN))),
        timeseries("GPU utilisation", "Fraction of time the GPU was busy, all processes "
                   "(`scribewatch_gpu_utilization_ratio`). Low while transcribing: the CPU "
                   "(decode) or the disk is the bottleneck.",
                   [target(f"scribewatch_gpu_utilization_ratio{{{I}}}", gpu_legend)],
                   w=10, unit="percentunit", min=0, max=1),
        timeseries("GPU memory", "Memory in use by all processes "
                   "(`scribewatch_gpu_memory_used_bytes`) against installed "
                   "(`scribewatch_gpu_memory_total_bytes`, dashed).",
                   [target(f"scribewatch_gpu_memory_used_bytes{{{I}}}", gpu_legend + " used"),
                    target(f"scribewatch_gpu_memory_total_bytes{{{I}}}", gpu_legend + " total")],
                   w=10, unit="bytes", min=0,
                   overrides=[{"matcher": {"id": "byRegexp", "options": ".* total$"},
                               "properties": [{"id": "custom.lineStyle",
                                               "value": {"fill": "dash", "dash": [10, 10]}},
                                              {"id": "custom.fillOpacity", "value": 0}]}]),
        bargauge("GPU memory used", "Used ÷ installed per GPU (recording rule "
                 "`instance_gpu:scribewatch_gpu_memory_used:ratio`). Near full: a larger model "
                 "or batch will fail to load (CUDA out of memory).",
                 [target(f"instance_gpu:scribewatch_gpu_memory_used:ratio{{{I}}}", gpu_legend,
                         instant=True)],
                 w=8, unit="percentunit", min=0, max=1,
                 thresholds=steps((None, GREEN), (0.8, YELLOW), (at("gpu_memory"), RED))),
        timeseries("scribewatch GPU memory", "GPU memory held by the daemon's own process "
                   "(`scribewatch_gpu_process_memory_bytes`): the model while loaded. 0 inside "
                   "a container without the host PID namespace (NVML reports host PIDs).",
                   [target(f"scribewatch_gpu_process_memory_bytes{{{I}}}", gpu_legend)],
                   w=8, unit="bytes", min=0),
        timeseries("GPU temperature", "Core temperature (`scribewatch_gpu_temperature_celsius`). "
                   "The red line is the temperature alert's threshold; sustained heat brings "
                   "thermal throttling.",
                   [target(f"scribewatch_gpu_temperature_celsius{{{I}}}", gpu_legend)],
                   w=8, unit="celsius", threshold_style="line",
                   thresholds=steps((None, GREEN), (at("gpu_temperature_warning"), ORANGE),
                                    (at("gpu_temperature_critical"), RED))),
        timeseries("GPU power", "Board power draw (`scribewatch_gpu_power_watts`).",
                   [target(f"scribewatch_gpu_power_watts{{{I}}}", gpu_legend)],
                   w=8, unit="watt", min=0),
        timeseries("GPU SM clock", "Streaming-multiprocessor clock "
                   "(`scribewatch_gpu_sm_clock_hertz`). Drops under load go with a throttle "
                   "reason.",
                   [target(f"scribewatch_gpu_sm_clock_hertz{{{I}}}", gpu_legend)],
                   w=8, unit="hertz", min=0),
        timeseries("GPU throttle reasons", "Reasons NVML gives for holding the clocks down "
                   "(`scribewatch_gpu_throttle_reason_active == 1`; only active reasons are "
                   "drawn). gpu_idle is harmless; thermal or power slowdowns under load cost "
                   "speed.",
                   [target(f"scribewatch_gpu_throttle_reason_active{{{I}}} == 1",
                           "{{instance}} GPU {{gpu}} {{reason}}")],
                   w=8, min=0, max=1, decimals=0, stepped=True, fill=40),

        row("Host"),
        timeseries("Host CPU", "Busy fraction of all the host's cores "
                   "(`scribewatch_host_cpu_usage_ratio`).",
                   [target(f"scribewatch_host_cpu_usage_ratio{{{I}}}", "{{instance}}")],
                   w=8, unit="percentunit", min=0, max=1),
        timeseries("Host memory", "Used (`scribewatch_host_memory_used_bytes`), available to new "
                   "work (`scribewatch_host_memory_available_bytes`) and installed "
                   "(`scribewatch_host_memory_total_bytes`). Little available: the model will "
                   "swap or be killed.",
                   [target(f"scribewatch_host_memory_used_bytes{{{I}}}", "{{instance}} used"),
                    target(f"scribewatch_host_memory_available_bytes{{{I}}}",
                           "{{instance}} available"),
                    target(f"scribewatch_host_memory_total_bytes{{{I}}}", "{{instance}} total")],
                   w=8, unit="bytes", min=0,
                   overrides=[{"matcher": {"id": "byRegexp", "options": ".* total$"},
                               "properties": [{"id": "custom.lineStyle",
                                               "value": {"fill": "dash", "dash": [10, 10]}},
                                              {"id": "custom.fillOpacity", "value": 0}]}]),
        bargauge("Filesystem free, by role", "Free ÷ size of the filesystem of each folder role "
                 "(recording rule `instance_role:scribewatch_filesystem_free:ratio`): watch "
                 "(the fullest watch folder), output, store. Red at the disk alert's "
                 "threshold.",
                 [target(f"instance_role:scribewatch_filesystem_free:ratio{{{I}}}",
                         "{{instance}} {{role}}", instant=True)],
                 w=8, unit="percentunit", min=0, max=1,
                 thresholds=steps((None, RED), (at("filesystem_critical"), ORANGE),
                                  (at("filesystem_warning"), GREEN))),
        timeseries("Filesystem free bytes, by role", "Free space per folder role "
                   "(`scribewatch_filesystem_free_bytes`).",
                   [target(f"scribewatch_filesystem_free_bytes{{{I}}}", "{{instance}} {{role}}")],
                   w=24, unit="bytes", min=0),

        row("Process"),
        timeseries("scribewatch resident memory", "RSS of the daemon process "
                   "(`process_resident_memory_bytes`): the model plus decoded audio. Steady "
                   "growth across many jobs: a leak.",
                   [target(f"process_resident_memory_bytes{{{I}}}", "{{instance}}")],
                   w=8, unit="bytes", min=0),
        timeseries("scribewatch CPU", "CPU time of the daemon process per second "
                   "(`rate(process_cpu_seconds_total)`); 100 % = one core busy.",
                   [target(f"rate(process_cpu_seconds_total{{{I}}}[$__rate_interval])",
                           "{{instance}}")],
                   w=8, unit="percentunit", min=0),
        timeseries("scribewatch open files", "Open file descriptors (`process_open_fds`) "
                   "against the limit (`process_max_fds`).",
                   [target(f"process_open_fds{{{I}}}", "{{instance}} open"),
                    target(f"process_max_fds{{{I}}}", "{{instance}} limit")],
                   w=8, min=0, decimals=0),
    ]
    return dashboard("scribewatch-gpu-host", "scribewatch / GPU & host",
                     "What the GPU, the host, the disks and the daemon process are doing.",
                     panels)


DASHBOARDS = {"overview.json": overview, "pipeline.json": pipeline, "gpu-host.json": gpu_host}


def render(build) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python grafana/generate.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
