"""scribewatch / Overview: is it working, how fast, what failed and why."""

from __future__ import annotations

from scribewatch.pipeline.contract import SKIP_REASONS

from ..config import Config
from ..panels import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    RED,
    UP_DOWN,
    YELLOW,
    YES_NO,
    Selectors,
    bargauge,
    color_override,
    dashboard,
    gauge,
    row,
    stat,
    steps,
    table,
    target,
    timeseries,
    value_map,
)
from ..render import in_words, num
from ..rules import Names

OUTCOME_COLORS = {"succeeded": GREEN, "failed": RED, "skipped": BLUE}
PER_HOUR = "suffix:/h"


def health(cfg: Config, sel: Selectors) -> list[dict]:
    return [
        row("Health"),
        stat("Scrape up", "Prometheus reached the daemon's /metrics at the last scrape "
             "(`up`). Down: the process is gone, the port is wrong or blocked.",
             [target(sel("up", foreign=True), "{{instance}}")], w=3, unit="none",
             mappings=UP_DOWN, thresholds=steps((None, RED), (1, GREEN)),
             bad="Down: the process is gone, the port is wrong, a firewall",
             alert="ScribewatchDown"),
        stat("Ready", "The daemon can take work: model usable, watcher up, job store writable "
             "(`scribewatch_ready`). /readyz says why not.",
             [target(sel("scribewatch_ready"), "{{instance}}")], w=3, unit="none",
             mappings=value_map({1: ("Ready", GREEN), 0: ("Not ready", RED)}),
             thresholds=steps((None, RED), (1, GREEN)),
             bad="Not ready for more than a model load: `GET /readyz` says why (model, watcher, "
                 "store)",
             alert="ScribewatchNotReady"),
        stat("Watcher", "The folder watcher runs and every watch folder is reachable "
             "(`scribewatch_watcher_up`).",
             [target(sel("scribewatch_watcher_up"), "{{instance}}")], w=3, unit="none",
             mappings=UP_DOWN, thresholds=steps((None, RED), (1, GREEN)),
             bad="Down: a watch folder vanished (dropped NFS/SMB mount) or the observer died",
             alert="ScribewatchWatcherDown"),
        stat("Watch folders unavailable", "Watch folders missing or unreadable now: a dropped "
             "NFS/SMB mount or a deleted folder (`scribewatch_watch_dirs_unavailable`).",
             [target(sel("scribewatch_watch_dirs_unavailable"), "{{instance}}")],
             w=3, unit="short", decimals=0, thresholds=steps((None, GREEN), (1, RED)),
             bad="anything above 0 (red)",
             alert="ScribewatchWatcherDown"),
        stat("Model loaded", "The Whisper model is in memory now (`scribewatch_model_loaded`). "
             "0 before the first job and after an idle unload is normal.",
             [target(sel("scribewatch_model_loaded"), "{{instance}}")],
             w=3, unit="none", mappings=YES_NO, thresholds=steps((None, BLUE), (1, GREEN)),
             bad="No while files are queued (No when idle is fine with "
                 "`model_idle_unload_minutes`)",
             alert="ScribewatchModelLoadFailing"),
        stat("Last success", "Time since a job last succeeded "
             "(`time() - scribewatch_last_success_timestamp_seconds`); no value until one did.",
             [target(f"time() - ({sel('scribewatch_last_success_timestamp_seconds')} > 0)",
                     "{{instance}}")],
             w=3, unit="s", color_mode="value", thresholds=steps((None, GREY)),
             bad="hours while the queue is not empty",
             alert="ScribewatchQueueStalled"),
        stat("Uptime", "Time since the daemon started (`scribewatch_start_time_seconds`). A "
             "small value that keeps resetting is a crash loop.",
             [target(f"time() - {sel('scribewatch_start_time_seconds')}", "{{instance}}")],
             w=3, unit="s", color_mode="value", thresholds=steps((None, GREY)),
             bad="a value that keeps going back to seconds: crash loop",
             alert="ScribewatchRestarting"),
        stat("Restarts (1 h)", "Daemon restarts in the last hour "
             "(`changes(scribewatch_start_time_seconds[1h])`). Red at the crash-loop alert's "
             "threshold (ScribewatchRestarting).",
             [target(f"changes({sel('scribewatch_start_time_seconds')}[1h])", "{{instance}}")],
             w=3, unit="short", decimals=0,
             thresholds=steps((None, GREEN), (1, YELLOW), (cfg.t("restarts"), RED)),
             bad=f"yellow at 1, red at {num(cfg.t('restarts'))} (the alert's threshold)",
             alert="ScribewatchRestarting"),
        table("Instances", "One row per daemon: versions (`scribewatch_build_info`) and the model "
              "last loaded with its device and compute type (`scribewatch_model_info`, present "
              "after the first load).",
              [target(sel("scribewatch_build_info"), instant=True, fmt="table"),
               target(sel("scribewatch_model_info"), instant=True, fmt="table")],
              h=5, merge=True,
              hide_columns=("Time", "__name__", "Value #A", "Value #B"),
              rename={"faster_whisper": "faster-whisper", "ctranslate2": "CTranslate2"},
              bad="a daemon on an old version; `device` cpu on a GPU box (CUDA not usable)"),
    ]


def files(cfg: Config, sel: Selectors, n: Names) -> list[dict]:
    outcome_colors = [color_override(o, c) for o, c in OUTCOME_COLORS.items()]
    return [
        row("Files"),
        timeseries("Files finished per hour, by outcome",
                   "Jobs finished per hour: succeeded, failed, skipped (recording rule "
                   f"`{n.jobs_rate}` × 3600).",
                   [target(f"{sel(n.jobs_rate)} * 3600", "{{instance}} {{outcome}}")],
                   w=12, unit=PER_HOUR,
                   overrides=[color_override(f".*{o}$", c) for o, c in OUTCOME_COLORS.items()],
                   bad="a red line as high as the green one",
                   alert="ScribewatchJobFailureRatioHigh"),
        stat("Files in time range", "Jobs finished in the dashboard's time range, by outcome "
             "(`increase(scribewatch_jobs_total[$__range])`, all selected instances).",
             [target(f"round(sum by (outcome) (increase({sel('scribewatch_jobs_total')}"
                     "[$__range])))", "{{outcome}}", instant=True)],
             w=6, h=8, unit="short", decimals=0, color_mode="value",
             text_mode="value_and_name", thresholds=steps((None, GREY)),
             overrides=outcome_colors,
             bad="failed close to succeeded",
             alert="ScribewatchJobFailureRatioHigh"),
        stat("Files since start", "Jobs finished since each daemon last started "
             "(`scribewatch_jobs_total`, summed over the selected instances). `scribewatch "
             "history` has the all-time list.",
             [target(f"sum by (outcome) ({sel('scribewatch_jobs_total')})", "{{outcome}}",
                     instant=True)],
             w=6, h=8, unit="short", decimals=0, color_mode="value",
             text_mode="value_and_name", thresholds=steps((None, GREY)),
             overrides=outcome_colors),
    ]


def queue_and_speed(cfg: Config, sel: Selectors, n: Names) -> list[dict]:
    return [
        row("Queue"),
        timeseries("Queue depth and running jobs",
                   "Jobs waiting (`scribewatch_queue_jobs`) and in hand "
                   "(`scribewatch_jobs_running`). A queue that only grows: the daemon is slower "
                   "than the files arrive.",
                   [target(sel("scribewatch_queue_jobs"), "{{instance}} queued"),
                    target(sel("scribewatch_jobs_running"), "{{instance}} running")],
                   w=12, unit="short", decimals=0, stepped=True,
                   overrides=[color_override(".*queued$", ORANGE),
                              color_override(".*running$", GREEN)],
                   bad="queued > 0 with running = 0 for long: stalled; queued growing for days: "
                       "files arrive faster than they are transcribed",
                   alert="ScribewatchQueueStalled"),
        timeseries("Oldest running job", "Age of the longest-running job in hand "
                   "(`scribewatch_oldest_running_job_age_seconds`, 0 when idle). The red line "
                   "is the stuck-job alert's threshold (its floor).",
                   [target(sel("scribewatch_oldest_running_job_age_seconds"), "{{instance}}")],
                   w=12, unit="s", threshold_style="line",
                   thresholds=steps((None, GREEN), (cfg.t("job_stuck_floor_seconds"), RED)),
                   bad="a saw-tooth is normal (each job starts at 0); a line that climbs past the "
                       "red line",
                   alert="ScribewatchJobStuck (its threshold is the time "
                         f"{num(cfg.t('job_stuck_audio_seconds') / 7200)} h of audio needs at "
                         "this box's speed, never less than the "
                         f"{num(cfg.t('job_stuck_floor_seconds') / 3600)} h drawn)"),

        row("Speed"),
        timeseries("Throughput (audio hours per hour)",
                   "Audio transcribed per unit of wall time "
                   f"(`{n.audio_rate}`): 3 means three hours of audio per hour. 0 while idle.",
                   [target(sel(n.audio_rate), "{{instance}}")],
                   w=8, unit="suffix:h/h", decimals=2,
                   bad="below the rate at which new media arrives (the queue grows)"),
        stat("Audio transcribed in time range", "Audio duration of succeeded jobs in the "
             "time range (`increase(scribewatch_audio_seconds_total[$__range])`).",
             [target(f"sum(increase({sel('scribewatch_audio_seconds_total')}[$__range]))",
                     "audio", instant=True)],
             w=4, h=8, unit="s", color_mode="value", thresholds=steps((None, GREY))),
        timeseries("Real-time factor p50 / p95",
                   "Processing seconds per audio second of succeeded jobs (recording rules "
                   f"`{n.rtf_quantile['p50']}`, `p95_rate{cfg.rule_window}`). Below 1 "
                   "is faster than real time; short clips read high (fixed overhead). The alert "
                   f"(ScribewatchSlowerThanRealtime) watches the {cfg.speed_window} p95 against "
                   "the red line.",
                   [target(sel(n.rtf_quantile["p50"]), "{{instance}} p50"),
                    target(sel(n.rtf_quantile["p95"]), "{{instance}} p95"),
                    target(sel(n.rtf_p95_speed), f"{{{{instance}}}} p95 ({cfg.speed_window}, "
                                                  "alerted)")],
                   w=12, unit="suffix:s/s", decimals=2, threshold_style="line",
                   thresholds=steps((None, GREEN), (cfg.t("slower_than_realtime"), RED)),
                   bad="above 1 (slower than real time). Short clips read high (fixed per-file "
                       "overhead); judge by long files",
                   alert="ScribewatchSlowerThanRealtime"),
    ]


def failures(cfg: Config, sel: Selectors, n: Names) -> list[dict]:
    return [
        row("Failures"),
        timeseries("Failures per hour, by stage and reason",
                   "Failed jobs per hour by stage and reason code (recording rule "
                   f"`{n.failures_rate}` × 3600, non-zero series only). Reason codes: "
                   "README.md, Bad input / pipeline/contract.py.",
                   [target(f"{sel(n.failures_rate)} * 3600 > 0",
                           "{{instance}} {{stage}}/{{reason}}")],
                   w=10, unit=PER_HOUR, stacked=True, fill=60,
                   bad="one reason dominating: `output_not_writable`/`disk_full` (fix the folder),"
                       " `model_load_failed`, `decode_error` across many files (a codec problem)",
                   alert="ScribewatchJobFailureRatioHigh"),
        bargauge("Failures in time range, by reason", "Failed jobs in the time range by "
                 "stage/reason (`increase(scribewatch_job_failures_total[$__range])`).",
                 [target("sort_desc(round(sum by (stage, reason) (increase("
                         f"{sel('scribewatch_job_failures_total')}[$__range]))) > 0)",
                         "{{stage}}/{{reason}}", instant=True)],
                 w=5, unit="short", decimals=0, thresholds=steps((None, RED)),
                 bad="a long bar of a write-stage reason",
                 alert="ScribewatchJobFailureRatioHigh"),
        bargauge("Skipped in time range, by reason", "Files that got no subtitle on purpose, "
                 "by reason (" + ", ".join(f"`{r}`" for r in SKIP_REASONS) + "), in the time "
                 "range (`increase(scribewatch_files_skipped_total[$__range])`).",
                 [target("sort_desc(round(sum by (reason) (increase("
                         f"{sel('scribewatch_files_skipped_total')}[$__range]))) > 0)",
                         "{{reason}}", instant=True)],
                 w=5, unit="short", decimals=0, thresholds=steps((None, BLUE)),
                 bad="many `no_speech` on files that do have speech (VAD too aggressive, wrong "
                     "audio track)"),
        gauge("Failure ratio (30 min)", "failed ÷ (succeeded + failed) over "
              f"{cfg.failure_window} (recording rule `{n.failure_ratio}`). The alert also needs "
              f"a minimum number of finished jobs (`{n.jobs_finished}`).",
              [target(sel(n.failure_ratio), "{{instance}}")],
              w=4, h=8, unit="percentunit", min=0, max=1,
              thresholds=steps((None, GREEN), (cfg.t("failure_ratio"), RED)),
              bad=f"red. The alert also needs at least {num(cfg.t('failure_min_jobs'))} finished "
                  f"jobs in {in_words(cfg.failure_window)} (`{n.jobs_finished}`), so one broken "
                  "file at night does not page",
              alert="ScribewatchJobFailureRatioHigh"),

        row("Alerts"),
        table("Alerts firing and pending", "scribewatch alerts Prometheus evaluates now "
              "(`ALERTS`), pending ones included: pending means the condition holds but not "
              "yet for the rule's `for:` time. Alertmanager (port 9093) has the routing and "
              "silences.",
              # `|`: ScribewatchTargetMissing (absent()) has no instance label
              [target('ALERTS{alertname=~"Scribewatch.*", job=~"$job", instance=~"$instance|"}',
                      instant=True, fmt="table")],
              h=7, hide_columns=("Time", "__name__", "Value"),
              overrides=[{"matcher": {"id": "byName", "options": "alertstate"},
                          "properties": [
                              {"id": "custom.cellOptions",
                               "value": {"type": "color-background"}},
                              {"id": "mappings", "value": value_map(
                                  {"firing": ("firing", RED), "pending": ("pending", ORANGE)})}]}],
              bad="any row. Pending = the condition holds but not yet for the rule's `for:`; "
                  "Alertmanager (port 9093) shows routing, inhibitions and silences",
              alert="all"),
    ]


def build(cfg: Config) -> dict:
    sel, n = Selectors(cfg), Names(cfg)
    panels = (health(cfg, sel) + files(cfg, sel, n) + queue_and_speed(cfg, sel, n)
              + failures(cfg, sel, n))
    return dashboard(cfg, "overview", "Overview",
                     "Is it working, how fast, what failed and why — one daemon or many.", panels)
