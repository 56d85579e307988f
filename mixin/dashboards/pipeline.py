"""scribewatch / Pipeline: where the time goes — stages, queue, jobs, the model."""

from __future__ import annotations

from scribewatch.pipeline.contract import STAGES

from ..config import Config
from ..panels import (
    BLUE,
    GREEN,
    GREY,
    RED,
    YELLOW,
    YES_NO,
    Selectors,
    bargauge,
    color_override,
    dashboard,
    heatmap,
    row,
    stat,
    steps,
    target,
    timeseries,
)
from ..rules import Names

DASHED = {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}

# What bad looks like on each stage-latency quantile and each stage's heatmap, and the alert.
QUANTILE_DOC = {
    "p50": ("`probe` or `write` in seconds: slow or sleeping storage (spun-down disks, a network "
            "share)", None),
    "p95": ("`transcribe` p95 growing without longer files: a slower device (CUDA lost, CPU "
            "fallback)", "ScribewatchSlowerThanRealtime (indirectly)"),
    "p99": ("outliers far above p95: one pathological file, a hallucination re-run", None),
}
HEATMAP_DOC = {
    "probe": ("a band moving up", None),
    "decode": ("decode taking as long as transcribe: CPU-bound decode of large video files", None),
    "transcribe": ("a band far above the usual one: slower model/device",
                   "ScribewatchSlowerThanRealtime"),
    "write": ("seconds for a few kB of subtitles: a struggling output filesystem",
              "ScribewatchFilesystemNearlyFull (often related)"),
}


def stages(cfg: Config, sel: Selectors, n: Names) -> list[dict]:
    panels = [row("Stage latency")]
    for q, record in n.stage_quantile.items():
        panels.append(timeseries(
            f"Stage latency {q}", f"{q} of each stage's duration over {cfg.rule_window} "
            f"(recording rule `{record}`). A stage shows only while it ran in the window. "
            "Transcribe dominates; a slow probe or write points at the storage.",
            [target(sel(record), "{{instance}} {{stage}}")],
            w=8, unit="s", bad=QUANTILE_DOC[q][0], alert=QUANTILE_DOC[q][1]))
    for stage in STAGES:
        buckets = sel("scribewatch_stage_duration_seconds_bucket", f'stage="{stage}"')
        panels.append(heatmap(
            f"{stage} duration heatmap", f"Distribution of the {stage} stage's duration "
            "(`scribewatch_stage_duration_seconds_bucket`, increase per interval): each "
            "column is a time slice, darker cells hold more jobs.",
            [target(f"sum by (le) (increase({buckets}[{sel.rate}]))", "{{le}}",
                    fmt="heatmap")],
            bad=HEATMAP_DOC[stage][0], alert=HEATMAP_DOC[stage][1]))
    return panels


def queue_and_jobs(cfg: Config, sel: Selectors, n: Names) -> list[dict]:
    succeeded = sel("scribewatch_jobs_total", 'outcome="succeeded"')
    audio = sel("scribewatch_audio_seconds_total")
    p50, p95 = n.job_duration_quantile["p50"], n.job_duration_quantile["p95"]
    return [
        row("Queue and jobs"),
        timeseries("Queue wait", "Time from a file's detection to a worker picking it up: "
                   f"p95 (recording rule `{n.queue_wait_p95}`) and p50 "
                   "(`scribewatch_queue_wait_seconds_bucket`). Growing wait: add workers or a "
                   "faster model/device.",
                   [target(sel(n.queue_wait_p95), "{{instance}} p95"),
                    target("histogram_quantile(0.5, sum by (job, instance, le) (rate("
                           f"{sel('scribewatch_queue_wait_seconds_bucket')}[{sel.rate}])))",
                           "{{instance}} p50")],
                   w=12, unit="s",
                   bad="growing: more work than workers; add a worker or a faster model/device",
                   alert="ScribewatchQueueStalled (when nothing moves at all)"),
        timeseries("Job duration vs audio duration",
                   "Succeeded jobs: detected → written, p50 / p95 (recording rules "
                   f"`{p50}`, `p95_rate{cfg.rule_window}`), against the mean audio length of "
                   "those jobs (audio seconds ÷ succeeded jobs). Job time well above the audio "
                   "length means slower than real time.",
                   [target(sel(p50), "{{instance}} job p50"),
                    target(sel(p95), "{{instance}} job p95"),
                    target(f"sum by (job, instance) (rate({audio}[{sel.rate}])) / "
                           f"(sum by (job, instance) (rate({succeeded}[{sel.rate}])) > 0)",
                           "{{instance}} audio per job (mean)")],
                   w=12, unit="s",
                   overrides=[{"matcher": {"id": "byRegexp", "options": ".*audio per job.*"},
                               "properties": [DASHED]}],
                   bad="job lines well above the audio line: slower than real time (or long queue "
                       "waits, included in job time)",
                   alert="ScribewatchSlowerThanRealtime"),
        timeseries("Retries per hour, by stage and reason",
                   "Transient failures sent back to the queue (`scribewatch_job_retries_total`). "
                   "Steady retries: a flaky mount, a full disk or a model that fails to load.",
                   [target("sum by (job, instance, stage, reason) (rate("
                           f"{sel('scribewatch_job_retries_total')}[{sel.rate}])) * 3600",
                           "{{instance}} {{stage}}/{{reason}}")],
                   w=12, unit="suffix:/h",
                   bad="steady retries of `unreadable` (flaky mount), `disk_full`, "
                       "`model_load_failed`",
                   alert="ScribewatchModelLoadFailing, ScribewatchFilesystemNearlyFull"),
        bargauge("Progress of the jobs in hand", "Transcribed audio ÷ total audio of each "
                 "worker's current job (`scribewatch_job_progress_ratio`, 0 when idle). A bar "
                 "that does not move while the oldest job ages: a stuck job.",
                 [target(sel("scribewatch_job_progress_ratio"),
                         "{{instance}} worker {{worker}}", instant=True)],
                 w=12, unit="percentunit", min=0, max=1, thresholds=steps((None, BLUE)),
                 bad="a bar that does not move while Oldest running job keeps growing: stuck",
                 alert="ScribewatchJobStuck"),
    ]


def model(cfg: Config, sel: Selectors) -> list[dict]:
    return [
        row("Model"),
        stat("Model load time", "Duration of the last successful model load "
             "(`scribewatch_model_load_seconds`). Long loads: a download, a slow disk, or a "
             "large model on a CPU.",
             [target(sel("scribewatch_model_load_seconds"), "{{instance}}")],
             w=6, h=5, unit="s", color_mode="value", graph=True, thresholds=steps((None, GREY)),
             bad="minutes: a download on every start (the model cache volume is missing), a slow "
                 "disk"),
        stat("Model loaded", "The model is in memory now (`scribewatch_model_loaded`).",
             [target(sel("scribewatch_model_loaded"), "{{instance}}")],
             w=6, h=5, unit="none", mappings=YES_NO, thresholds=steps((None, BLUE), (1, GREEN)),
             bad="No while work is queued",
             alert="ScribewatchModelLoadFailing"),
        stat("Model load failures in time range", "Failed model loads "
             "(`increase(scribewatch_model_load_failures_total[$__range])`). Any: check the "
             "model name, the network or the models folder, and for CUDA the driver/cuDNN.",
             [target("round(sum by (job, instance) (increase("
                     f"{sel('scribewatch_model_load_failures_total')}[$__range])))",
                     "{{instance}}", instant=True)],
             w=6, h=5, unit="short", decimals=0, thresholds=steps((None, GREEN), (1, RED)),
             bad="any (red): a wrong model name, no network for a first download, CUDA/cuDNN "
                 "missing, GPU memory taken",
             alert="ScribewatchModelLoadFailing"),
        stat("Suspect transcripts in time range", "Transcripts the hallucination guard flagged "
             "and re-ran (`increase(scribewatch_suspect_transcripts_total[$__range])`).",
             [target("round(sum by (job, instance) (increase("
                     f"{sel('scribewatch_suspect_transcripts_total')}[$__range])))",
                     "{{instance}}", instant=True)],
             w=6, h=5, unit="short", decimals=0, thresholds=steps((None, GREEN), (1, YELLOW)),
             bad="a steady stream (yellow): music-heavy media, a too-small model, a wrong forced "
                 "language"),
    ]


def notifications(cfg: Config, sel: Selectors) -> list[dict]:
    sent = sel("scribewatch_notifications_total")
    took = sel("scribewatch_notification_request_duration_seconds_bucket")
    return [
        row("Notifications"),
        timeseries("Notifications per hour, by target and result",
                   "Media-server refreshes and webhooks after jobs "
                   "(`scribewatch_notifications_total`): sent, failed (given up after its "
                   "retries) or dropped (the queue was full). Failures: a wrong URL, token or "
                   "path mapping, or the server is down.",
                   [target("sum by (job, instance, target, result) "
                           f"(rate({sent}[{sel.rate}])) * 3600",
                           "{{instance}} {{target}} {{result}}")],
                   w=12, unit="suffix:/h",
                   overrides=[color_override(".*failed.*", RED),
                              color_override(".*dropped.*", YELLOW)],
                   bad="any failed or dropped: a wrong URL, token or `path_map`, or the server "
                       "down",
                   alert="ScribewatchNotificationsFailing"),
        timeseries("Notification request time p95",
                   "95th percentile of one HTTP request to each target, retries included "
                   "(`scribewatch_notification_request_duration_seconds`). Near 10 s: requests "
                   "time out.",
                   [target("histogram_quantile(0.95, sum by (job, instance, target, le) "
                           f"(rate({took}[{sel.rate}])))", "{{instance}} {{target}}")],
                   w=12, unit="s",
                   bad="near 10 s: requests time out (the sender waits for each; others queue "
                       "behind it)",
                   alert="ScribewatchNotificationsFailing (when they fail)"),
    ]


def languages(cfg: Config, sel: Selectors) -> list[dict]:
    decisions = sel("scribewatch_language_decisions_total")
    bucket = "scribewatch_language_decision_confidence_ratio_bucket"
    uncertain, every = sel(bucket, 'le="0.6"'), sel(bucket, 'le="+Inf"')
    return [
        row("Languages"),
        bargauge("Languages decided in time range", "Jobs per language "
                 "(`increase(scribewatch_language_decisions_total[$__range])`, summed over "
                 "sources). The library's languages; an unexpected one is a mislabelled "
                 "folder or track.",
                 [target("sort_desc(round(sum by (language) (increase("
                         f"{decisions}[$__range]))) > 0)", "{{language}}", instant=True)],
                 w=8, unit="short", thresholds=steps((None, BLUE)),
                 bad="a language the library does not have: a mislabelled track or a wrong "
                     "`folder_languages` entry"),
        bargauge("Where the languages came from", "Decisions by source in the time range: "
                 "`forced` (folder_languages / language), `tag` (the audio track's tag), "
                 "`hint` (Sonarr/Radarr at import), `model` (English-only model), `vote` "
                 "(detection across the file), `default` "
                 "(an uncertain vote and `language_uncertain_action: default`). Many votes: "
                 "tag the library or set folder languages — tags are cheaper and surer.",
                 [target("round(sum by (source) (increase("
                         f"{decisions}[$__range]))) > 0", "{{source}}", instant=True)],
                 w=8, unit="short", thresholds=steps((None, BLUE)),
                 bad="mostly `vote`: untagged media costs a detection per file and is less sure — "
                     "tag it or set `folder_languages`; many `default`: mixed files given "
                     "`default_language`"),
        timeseries("Uncertain language decisions", "Share of decisions at or below 0.6 "
                   "probability (`scribewatch_language_decision_confidence_ratio`; the default "
                   "`language_min_confidence`): mixed-language files or music. They are skipped "
                   "as `language_uncertain` or given `default_language`.",
                   [target(f"sum by (job, instance) (rate({uncertain}[{sel.rate}])) / "
                           f"(sum by (job, instance) (rate({every}[{sel.rate}])) > 0)",
                           "{{instance}}")],
                   w=8, unit="percentunit",
                   bad="a high share: mixed-language files or music, skipped as "
                       "`language_uncertain` (or given the default)"),
    ]


def build(cfg: Config) -> dict:
    sel, n = Selectors(cfg), Names(cfg)
    panels = (stages(cfg, sel, n) + queue_and_jobs(cfg, sel, n) + model(cfg, sel)
              + notifications(cfg, sel) + languages(cfg, sel))
    return dashboard(cfg, "pipeline", "Pipeline",
                     "Where the time goes: stages, queue, jobs, the model, notifications.",
                     panels)
