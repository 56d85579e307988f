"""Alerting rules: prometheus/rules/alerts.yml.

Every threshold comes from the config (the dashboards draw the same values), every name of a
recording rule from `rules.Names`. Summaries are static sentences (the alert's name in words);
descriptions carry the values and labels. The runbook_url is not written here: `with_runbooks`
adds it to every alert, from the alert's name.
"""

from __future__ import annotations

import re

from .config import Config
from .render import in_words, num
from .rules import Names, lines

HEADER = """\
Alerting rules for scribewatch. Every alert has
  labels:      severity = critical (act now: transcription has stopped or is about to)
                        | warning  (look today: degraded, or heading for trouble)
  annotations: summary (static), description (with the values),
               runbook_url (a section of mixin/runbook.md, added from the alert's name)
The reasons for each threshold and `for:` are in mixin/runbook.md, next to what to do.
Tests: mixin/tests/promtool/*.yml (promtool test rules), mixin/tests/test_rules.py,
mixin/tests/test_lint.py, tests/system/test_alerting.py.

All expressions keep `job` and `instance`, so one Prometheus can watch many daemons; the two
`up` alerts select the scrape job with the config's job selector ({job_selector}).
Alerts use the recording rules of recording.yml where one exists."""

def runbook_url(cfg: Config, alertname: str) -> str:
    """The runbook section of an alert: mixin/runbook.md's heading `## <alertname>`."""
    return f"{cfg.runbook_url_base}#{alertname.lower()}"


def with_runbooks(cfg: Config, groups: list[dict]) -> list[dict]:
    """The one place runbook links are made: every alert gets its `runbook_url` annotation."""
    for group in groups:
        for rule in group["rules"]:
            rule["annotations"]["runbook_url"] = runbook_url(cfg, rule["alert"])
    return groups


def _alert(name, expr, severity, summary, description, for_=None, comment=None,
           **values) -> dict:
    """One alerting rule. In `description`, `[[key]]` is replaced by `values[key]` (`[[for]]` by
    the `for:` in words); the text's line breaks and indentation become single spaces."""
    values.setdefault("for", in_words(for_) if for_ else "")
    for key, value in values.items():
        description = description.replace(f"[[{key}]]", str(value))
    if "[[" in description:
        raise KeyError(f"{name}: no value for {description.split('[[', 1)[1].split(']]')[0]}")
    rule = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": re.sub(r"\s+", " ", description)}
    if comment:
        rule["_comment"] = comment
    return rule


def _query(expr: str, *labels: str) -> str:
    """`{{ with printf "<expr>" $labels... | query }}`: the value of a related series."""
    args = " ".join(f"$labels.{label}" for label in labels)
    return '{{ with printf "' + expr + '" ' + args + " | query }}"


_AT = "{job='%s',instance='%s'}"


def availability(cfg: Config) -> dict:
    up = f"up{{{cfg.job_selector}}}"
    model_window = cfg.t("model_load_failure_window")
    return {"name": "scribewatch-availability", "rules": [
        _alert("ScribewatchDown", f"{up} == 0", "critical",
               "A scribewatch daemon cannot be scraped.",
               """Prometheus has not been able to scrape scribewatch on {{ $labels.instance }}
               (job {{ $labels.job }}) for more than [[for]] (up = {{ $value | humanize }}).
               Nothing is being transcribed there and no other scribewatch alert can fire for
               it.""",
               "2m",
               "2 m = 8 failed scrapes in a row at 15 s: a restart (even with a model reload, "
               "which\nhappens after the HTTP server is up) takes seconds, one slow scrape under "
               "full CPU\nload is a single failure."),
        _alert("ScribewatchTargetMissing", f"absent({up})", "critical",
               "Prometheus has no scribewatch target.",
               """No target of job {{ $labels.job }} has existed in Prometheus for more than
               [[for]], so no scribewatch daemon is monitored
               (absent = {{ $value | humanize }}).""",
               "10m",
               "`up` is absent only when Prometheus has no scribewatch target at all "
               "(configuration or\nservice discovery lost it) -- then ScribewatchDown cannot "
               "fire either. Nothing to be\nquick about, but nothing else will ever tell you: "
               "10 m."),
        _alert("ScribewatchRestarting",
               f"changes(scribewatch_start_time_seconds[1h]) >= {num(cfg.t('restarts'))}",
               "warning", "A scribewatch daemon keeps restarting.",
               """scribewatch on {{ $labels.instance }} has restarted {{ $value | humanize }} times
               in the last hour.""",
               None,
               "A crash loop (OOM kill, a decoder crash) can keep `up` flapping so that\n"
               "ScribewatchDown's 2 m never completes. One restart (an upgrade) is normal; "
               f"{num(cfg.t('restarts'))} in an\nhour is not."),
        _alert("ScribewatchWatcherDown", "scribewatch_watcher_up == 0", "critical",
               "The scribewatch folder watcher is not running.",
               """The folder watcher of scribewatch on {{ $labels.instance }} has been down
               for more than [[for]];
               [[folders]]{{ . | first | value | humanize }}{{ else }}an unknown number of{{ end }}
               watch folder(s) are unavailable. New files are not picked up.""",
               "5m",
               "A dropped NFS/SMB mount often comes back by itself within a minute or two "
               "(automount,\nWi-Fi blip); 5 m separates that from an outage. Nothing is lost "
               "meanwhile (the rescan\npicks files up afterwards), but nothing new is transcribed "
               "either: critical.",
               folders=_query("scribewatch_watch_dirs_unavailable" + _AT, "job", "instance")),
        _alert("ScribewatchModelLoadFailing",
               lines(f"increase(scribewatch_model_load_failures_total[{model_window}]) > 0",
                     "and on (job, instance)",
                     "scribewatch_model_loaded == 0"),
               "critical", "A scribewatch daemon cannot load its Whisper model.",
               """scribewatch on {{ $labels.instance }} failed to load the Whisper model
               {{ $value | printf "%.0f" }} time(s) in the last [[window]] and
               has no model loaded: nothing can be transcribed.""",
               "5m",
               "Loading is retried with the next job, so one failure that a later load fixed (GPU\n"
               "memory briefly taken by a game) stays quiet: it fires only while no model is "
               "loaded.",
               window=in_words(model_window)),
        _alert("ScribewatchNotReady", "scribewatch_ready == 0", "critical",
               "A scribewatch daemon is not ready.",
               """scribewatch on {{ $labels.instance }} has reported not ready
               (ready = {{ $value | humanize }}) for more than [[for]].
               GET /readyz on it says why.""",
               "15m",
               "/readyz = model ready AND watcher up AND store writable. The first start may "
               "download a\nlarge model (several GB) before it is ready: 15 m. The two specific "
               "causes above\ninhibit this one in Alertmanager; alone it usually means \"job store "
               "not writable\"."),
    ]}


def jobs(cfg: Config) -> dict:
    n = Names(cfg)
    ratio, min_jobs = cfg.t("failure_ratio"), cfg.t("failure_min_jobs")
    stalled = cfg.t("queue_stalled_window")
    audio, floor = num(cfg.t("job_stuck_audio_seconds")), num(cfg.t("job_stuck_floor_seconds"))
    floor_hours = num(cfg.t("job_stuck_floor_seconds") / 3600)
    slow, slow_jobs = cfg.t("slower_than_realtime"), cfg.t("slower_than_realtime_min_jobs")
    sw = cfg.speed_window
    nf, nw = cfg.t("notification_failures"), cfg.t("notification_failure_window")
    threshold = f"clamp_min({audio} * {n.rtf_history}, {floor})"
    return {"name": "scribewatch-jobs", "rules": [
        _alert("ScribewatchJobFailureRatioHigh",
               lines(f"{n.failure_ratio} > {num(ratio)}",
                     "and on (job, instance)",
                     f"{n.jobs_finished} >= {num(min_jobs)}"),
               "warning", "A scribewatch daemon fails too many of its jobs.",
               """{{ $value | humanizePercentage }} of the jobs scribewatch on
               {{ $labels.instance }} finished in the last [[window]] failed
               (of [[finished]]{{ . | first | value | printf "%.0f" }}{{ else }}?{{ end }}
               finished jobs; threshold [[percent]] % of at least [[min_jobs]]).""",
               "5m",
               f"More than {num(ratio * 100)} % of finished jobs failed over "
               f"{in_words(cfg.failure_window)}, counted over at least {num(min_jobs)} jobs:\n"
               "one corrupt download at night (1 of 1 = 100 %) must not alert, a systematic "
               "failure\n(output not writable, broken model, bad codec) with a handful of files "
               "must.",
               window=in_words(cfg.failure_window), percent=num(ratio * 100),
               min_jobs=num(min_jobs),
               finished=_query(n.jobs_finished + _AT, "job", "instance")),
        _alert("ScribewatchQueueStalled",
               lines("scribewatch_queue_jobs > 0",
                     "and on (job, instance)",
                     "scribewatch_jobs_running == 0",
                     "and on (job, instance)",
                     f"sum by (job, instance) (increase(scribewatch_jobs_total[{stalled}])) == 0"),
               "critical", "The scribewatch queue is not draining.",
               """{{ $value | humanize }} job(s) are queued on scribewatch
               {{ $labels.instance }}, but no job is running and none has finished for more
               than [[quiet]].""",
               "10m",
               "Work is waiting, no worker is busy, and nothing (succeeded, failed or skipped) "
               f"finished\nfor {in_words(stalled)} -- for another 10 m. A busy worker on a long "
               "file is not a stall (that is\nScribewatchJobStuck's business), nor is a retry "
               "backoff or a model reload (seconds to\na minute).",
               quiet=in_words(f"{int(stalled[:-1]) + 10}{stalled[-1]}")),
        _alert("ScribewatchJobStuck",
               lines("scribewatch_oldest_running_job_age_seconds",
                     "> on (job, instance)",
                     "(",
                     f"    {threshold}",
                     "  or on (job, instance)",
                     f"    0 * scribewatch_oldest_running_job_age_seconds + {floor}",
                     ")"),
               "warning", "A scribewatch job looks stuck.",
               """The oldest running job on scribewatch {{ $labels.instance }} has been
               running for {{ $value | humanizeDuration }}, longer than [[hours]] hours of
               audio would need at its usual speed (threshold
               [[threshold]]{{ . | first | value | humanizeDuration }}{{ else }}[[floor]]h, the
               floor: no speed history yet{{ end }}).""",
               "5m",
               "The daemon exposes the running job's age, not its audio length. So: stuck when "
               "the\nage exceeds what 4 hours of audio (a long film) would need at this box's "
               "usual speed,\nwith a 2x margin -- "
               f"{audio} s x the audio-weighted real-time factor of the last day --\n"
               f"but never less than {floor_hours} hours "
               "(the floor also serves a fresh daemon with no history).",
               hours=num(cfg.t("job_stuck_audio_seconds") / 7200), floor=floor_hours,
               threshold=_query(threshold.replace(n.rtf_history, n.rtf_history + _AT),
                                "job", "instance")),
        _alert("ScribewatchSlowerThanRealtime",
               lines(f"{n.rtf_p95_speed} > {num(slow)}",
                     "and on (job, instance)",
                     f"sum by (job, instance) (increase(scribewatch_realtime_factor_count[{sw}]))"
                     f" >= {num(slow_jobs)}"),
               "warning", "A scribewatch daemon transcribes slower than real time.",
               """The 95th percentile of the real-time factor of scribewatch on
               {{ $labels.instance }} has been {{ $value | humanize }} over the last
               [[window]] (processing seconds per audio second; above [[slow]] is slower
               than real time).""",
               "15m",
               f"p95 of the per-job real-time factor over the last {in_words(sw)} above "
               f"{num(slow)} (slower than real time:\nthe queue can only grow if files arrive "
               f"steadily), over at least {num(slow_jobs)} jobs (one tiny clip\nwith a cold "
               "model has a factor > 1), for 15 m -- i.e. about 75 minutes of evidence.",
               window=in_words(sw), slow=num(slow)),
        _alert("ScribewatchNotificationsFailing",
               lines("sum by (job, instance, target) (",
                     f'  increase(scribewatch_notifications_total{{result=~"failed|dropped"}}'
                     f"[{nw}])",
                     f") >= {num(nf)}"),
               "warning", "A scribewatch daemon cannot tell a media server or webhook.",
               """{{ $value | humanize }} refresh(es) or webhook(s) to {{ $labels.target }}
               from scribewatch on {{ $labels.instance }} failed after their retries or were
               dropped in the last [[window]] (threshold [[count]]). Subtitles are still
               written; the media server only sees them at its own next scan.""",
               "5m",
               "Each notification is retried with backoff before it counts as failed, so one "
               "blip (a\nmedia server restarting) stays quiet; "
               f"{num(nf)} given up within {in_words(nw)} is a wrong URL, token or "
               "path\nmapping, or a server down for good. Warning: transcription goes on.",
               window=in_words(nw), count=num(nf)),
    ]}


def gpu(cfg: Config) -> dict:
    n = Names(cfg)
    warm, hot = num(cfg.t("gpu_temperature_warning")), num(cfg.t("gpu_temperature_critical"))
    memory = cfg.t("gpu_memory_used")
    saturation, sat_window = cfg.t("gpu_saturation"), cfg.t("gpu_saturation_window")
    vram_wait = cfg.t("vram_wait")
    history = cfg.speed_history_window
    temperature = """GPU {{ $labels.gpu }} ({{ $labels.name }}) on {{ $labels.instance }}
                  has been above [[t]] °C for [[for]]: {{ $value | humanize }} °C."""
    return {"name": "scribewatch-gpu",
            "_comment": "Consumer NVIDIA cards run at 60-80 °C under load and start thermal "
                        "slowdown around\n90 °C+. Same alert name for both levels, so "
                        "Alertmanager's critical-inhibits-warning\nrule keeps only one of them.",
            "rules": [
        _alert("ScribewatchGpuTemperatureHigh", f"scribewatch_gpu_temperature_celsius > {warm}",
               "warning", "A GPU of a scribewatch host runs hot.", temperature, "15m",
               "sustained heat (clogged filter, dead fan, closed cabinet), not a spike", t=warm),
        _alert("ScribewatchGpuTemperatureHigh", f"scribewatch_gpu_temperature_celsius > {hot}",
               "critical", "A GPU of a scribewatch host is overheating.",
               temperature + " It is throttling and close to its shutdown temperature.", "5m",
               "at the slowdown threshold: the card is throttling and close to shutting down",
               t=hot),
        _alert("ScribewatchGpuMemoryNearlyFull", f"{n.gpu_memory_used} > {num(memory)}",
               "warning", "The memory of a GPU of a scribewatch host is nearly full.",
               """GPU {{ $labels.gpu }} ({{ $labels.name }}) on {{ $labels.instance }}
               has had {{ $value | humanizePercentage }} of its memory in use for
               [[for]] (threshold [[percent]] %).""",
               "15m",
               f"The GPU is shared (Plex transcoding, games): above {num(memory * 100)} % the next "
               "model load or a long\nfile's transcription fails with CUDA out-of-memory. 15 m "
               "ignores a game's loading spike.",
               percent=num(memory * 100)),
        _alert("ScribewatchGpuSaturated",
               lines(f"avg_over_time(scribewatch_gpu_utilization_ratio[{sat_window}])"
                     f" > {num(saturation)}",
                     "and on (job, instance)",
                     "scribewatch_queue_jobs > 0"),
               "warning", "A GPU of a scribewatch host is saturated while files wait.",
               """GPU {{ $labels.gpu }} ({{ $labels.name }}) on {{ $labels.instance }}
               has been {{ $value | humanizePercentage }} busy on average over the last
               [[window]] while files were queued, for [[for]]: it is the limit on
               throughput (threshold [[percent]] %).""",
               "30m",
               f"Mean utilisation above {num(saturation * 100)} % over "
               f"{in_words(sat_window)} AND files queued, for 30 m: a backlog the GPU\ncannot "
               "clear faster (all processes count: a transcode beside us shows here too). "
               "Idle-busy\n(no queue) is not saturation, and a single long file's 10 minutes "
               "are not a trend.",
               window=in_words(sat_window), percent=num(saturation * 100)),
        _alert("ScribewatchJobWaitingForVram", "scribewatch_jobs_waiting_for_vram > 0",
               "warning", "scribewatch jobs are waiting for GPU memory.",
               """{{ $value | humanize }} job(s) on scribewatch {{ $labels.instance }} have
               been held back for lack of GPU memory for more than [[for]]
               (reason waiting_for_vram; /api/status says which GPU and why).""",
               vram_wait,
               "The daemon waits instead of failing when another program (a transcode, a game) "
               "holds\nthe GPU's memory, or after CUDA ran out of memory with nothing left to "
               f"shrink. A game\nevening is normal; {in_words(vram_wait)} without progress "
               "means the memory is not coming back by\nitself."),
        _alert("ScribewatchNvmlDown",
               lines("scribewatch_nvml_up == 0",
                     "and on (job, instance)",
                     "(",
                     '    scribewatch_model_info{device=~"cuda.*"}',
                     "  or",
                     f"    max_over_time(scribewatch_gpu_memory_total_bytes[{history}])",
                     ")"),
               "warning", "NVML is gone on a scribewatch GPU host.",
               """scribewatch on {{ $labels.instance }} uses (or recently reported) a GPU, but
               has not been able to read NVML for [[for]]
               (nvml_up = {{ $value | humanize }}): the driver may have crashed, and GPU
               metrics are missing.""",
               "10m",
               "\"GPU host\" = the model runs on CUDA, or the host reported GPU series in the last "
               "day.\nA CPU-only host (nvml_up is always 0 there) never matches either."),
    ]}


def host(cfg: Config) -> dict:
    n = Names(cfg)
    roles = 'role=~"output|store"'

    def gib(count) -> str:
        return "1024^3" if count == 1 else f"{num(count)} * 1024^3"

    def filesystem(level, severity, for_, summary, tail, comment):
        ratio, size = cfg.t(f"filesystem_free_{level}"), cfg.t(f"filesystem_free_{level}_gib")
        return _alert(
            "ScribewatchFilesystemNearlyFull",
            lines(f"{n.filesystem_free}{{{roles}}} < {num(ratio)}",
                  "and on (job, instance, role)",
                  f"scribewatch_filesystem_free_bytes{{{roles}}} < {gib(size)}"),
            severity, summary,
            """The {{ $labels.role }} filesystem of scribewatch on {{ $labels.instance }}
            has only {{ $value | humanizePercentage }}
            free[[free]] ({{ . | first | value | humanize1024 }}B){{ end }}
            ([[level]] below [[percent]] % and [[size]] GiB)[[tail]]""",
            for_, comment,
            free=_query("scribewatch_filesystem_free_bytes{job='%s',instance='%s',role='%s'}",
                        "job", "instance", "role"),
            level=level, percent=num(ratio * 100), size=num(size), tail=tail)

    return {"name": "scribewatch-host",
            "_comment": "Output and store filesystems only: the daemon writes there (subtitles, "
                        "the SQLite job\nstore and its WAL). Both conditions must hold: the ratio "
                        "says \"nearly full for its\nsize\", the absolute floor keeps a multi-TB "
                        "media volume -- where 3 % is still hundreds of\nGB, plenty for subtitles "
                        "-- from crying wolf.",
            "rules": [
        filesystem("warning", "warning", "15m",
                   "A filesystem scribewatch writes to is nearly full.", ".", None),
        filesystem("critical", "critical", "5m",
                   "A filesystem scribewatch writes to is almost out of space.",
                   ": writes will fail with disk_full.",
                   "below 1 GiB SQLite checkpoints and subtitle writes start failing with "
                   "disk_full soon"),
    ]}


def cluster(cfg: Config) -> dict:
    """Several nodes on one shared job store (PostgreSQL)."""
    n = Names(cfg)
    window = cfg.t("takeovers_window")
    return {"name": "scribewatch-cluster", "rules": [
        _alert("ScribewatchStoreUnreachable", "scribewatch_store_up == 0", "critical",
               "A scribewatch node cannot reach its job store.",
               """scribewatch on {{ $labels.instance }} has not reached its job store for more
               than [[for]] (store_up = {{ $value | humanize }}): it claims no new jobs and
               answers /readyz with 503. Running jobs go on under their leases; their results
               are recorded when the store is back.""",
               cfg.t("store_unreachable_for"),
               "A PostgreSQL restart or failover takes seconds; 2 m is an outage."),
        _alert("ScribewatchLeaseRenewalsFailing",
               "increase(scribewatch_lease_renewals_failed_total[5m]) > 0", "warning",
               "A scribewatch node keeps failing to renew its job leases.",
               """scribewatch on {{ $labels.instance }} has failed to renew leases
               ({{ $value | humanize }} in the last 5 minutes) for more than [[for]]. Its jobs
               run out of lease and are taken over by other nodes: work is done twice.""",
               cfg.t("lease_renewals_failing_for"),
               "A blip (one failed heartbeat) keeps the 5 m increase above 0 for 5 m only; 10 m "
               "of failures is a node that cannot reach the store or has lost its jobs."),
        _alert("ScribewatchRepeatedTakeovers",
               f"{n.cluster_takeovers} >= {num(cfg.t('takeovers_repeated'))}", "warning",
               "Jobs keep being taken over from nodes that stopped renewing their leases.",
               """{{ $value | humanize }} jobs of cluster {{ $labels.cluster }} (job
               {{ $labels.job }}) were taken over in the last [[window]]: nodes are dying,
               freezing or losing the store in the middle of jobs.""",
               None,
               "One takeover is a node restarted or killed; several an hour is a node that "
               "keeps dying\nor a lease too short for the store's latency.",
               window=in_words(window)),
    ]}


def alert_groups(cfg: Config) -> list[dict]:
    return with_runbooks(cfg, [availability(cfg), jobs(cfg), gpu(cfg), host(cfg), cluster(cfg)])


def header(cfg: Config) -> str:
    return HEADER.format(job_selector=cfg.job_selector)
