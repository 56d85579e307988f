"""Recording rules: prometheus/rules/recording.yml.

Names are `level:metric:operations` and carry their window (`...:rate5m`), which comes from the
config; docs/architecture.md ("Recording rules") lists them, and the alerts and dashboards get
them from `names(cfg)`, never by typing them.
"""

from __future__ import annotations

from .config import Config

HEADER = """\
Recording rules for scribewatch. Names are fixed in docs/architecture.md ("Recording rules");
alerts (alerts.yml) and the Grafana dashboards use them, so renaming one breaks both.

Conventions
* `level:metric:operations`. Every rule aggregates `by (job, instance)` (plus the extra labels
  its level names: outcome, stage, reason, role, gpu), so one Prometheus can scrape many daemons
  and each keeps its own series (and the dashboards can filter on `job` and `instance`).
* A quiet daemon must not produce NaN: NaN > threshold is false, but NaN series confuse
  dashboards and make "no data" indistinguishable from "0". So
  - ratios divide by `(denominator > 0)`: no finished jobs -> no series, not 0/0 = NaN;
  - quantiles are kept only where the histogram had observations in the window
    (`and on (...) rate(_count) > 0`): histogram_quantile over all-zero buckets is NaN.
* Several nodes on one shared job store form a cluster (the `cluster` target label). The
  queue is the store's, so every node exports the same `scribewatch_queue_jobs`: the
  `cluster:` rules take the max by (job, cluster) of it, and sum the per-node counters.
* histogram_quantile always gets `le` in its `by` clause (plus job/instance[/stage]): summing
  the buckets of several daemons into one quantile would be meaningless."""

QUANTILES = {"p50": "0.50", "p95": "0.95", "p99": "0.99"}


def lines(*parts: str) -> str:
    """An expression over several lines, as a `|` block keeps it (one final newline)."""
    return "\n".join(parts) + "\n"


class Names:
    """The recording rules' names for a config (attribute per rule, windows filled in)."""

    def __init__(self, cfg: Config):
        w, fw = cfg.rule_window, cfg.failure_window
        sw, hw = cfg.speed_window, cfg.speed_history_window
        self.audio_rate = f"instance:scribewatch_audio_seconds:rate{w}"
        self.jobs_rate = f"instance_outcome:scribewatch_jobs:rate{w}"
        self.jobs_finished = f"instance:scribewatch_jobs_finished:increase{fw}"
        self.failure_ratio = f"instance:scribewatch_job_failures:ratio_rate{fw}"
        self.failures_rate = f"instance_stage_reason:scribewatch_job_failures:rate{w}"
        self.stage_quantile = {q: f"instance_stage:scribewatch_stage_duration_seconds:{q}_rate{w}"
                               for q in ("p50", "p95", "p99")}
        self.rtf_quantile = {q: f"instance:scribewatch_realtime_factor:{q}_rate{w}"
                             for q in ("p50", "p95")}
        self.rtf_p95_speed = f"instance:scribewatch_realtime_factor:p95_rate{sw}"
        self.rtf_history = f"instance:scribewatch_realtime_factor:ratio_rate{hw}"
        self.queue_wait_p95 = f"instance:scribewatch_queue_wait_seconds:p95_rate{w}"
        self.job_duration_quantile = {q: f"instance:scribewatch_job_duration_seconds:{q}_rate{w}"
                                      for q in ("p50", "p95")}
        self.filesystem_free = "instance_role:scribewatch_filesystem_free:ratio"
        self.gpu_memory_used = "instance_gpu:scribewatch_gpu_memory_used:ratio"
        self.cluster_queue = "cluster:scribewatch_queue_jobs:max"
        self.cluster_oldest_queued = "cluster:scribewatch_oldest_queued_job_age_seconds:max"
        self.cluster_audio_rate = f"cluster:scribewatch_audio_seconds:rate{w}"
        self.cluster_takeovers = (f"cluster:scribewatch_job_takeovers:"
                                  f"increase{cfg.t('takeovers_window')}")


def _quantile(record: str, q: str, histogram: str, extra: str, window: str,
              comment: str | None = None) -> dict:
    by = "job, instance" + (f", {extra}" if extra else "")
    rule = {"record": record, "expr": lines(
        f"histogram_quantile({QUANTILES[q]}, sum by ({by}, le) "
        f"(rate({histogram}_bucket[{window}])))",
        f"and on ({by})",
        f"(sum by ({by}) (rate({histogram}_count[{window}])) > 0)")}
    if comment:
        rule["_comment"] = comment
    return rule


def recording_groups(cfg: Config) -> list[dict]:
    n = Names(cfg)
    w, fw, sw, hw = cfg.rule_window, cfg.failure_window, cfg.speed_window, cfg.speed_history_window
    finished = 'outcome=~"succeeded|failed"'
    rules = [
        {"_comment": "--- throughput and outcomes " + "-" * 59,
         "record": n.audio_rate,
         "expr": f"sum by (job, instance) (rate(scribewatch_audio_seconds_total[{w}]))"},
        {"record": n.jobs_rate,
         "expr": f"sum by (job, instance, outcome) (rate(scribewatch_jobs_total[{w}]))"},
        {"_comment": "Minimum-count guard for the failure-ratio alert: a ratio over 1 job is "
                     "noise.\n(increase() extrapolates, so the value is approximately, not "
                     "exactly, an integer.)",
         "record": n.jobs_finished,
         "expr": f"sum by (job, instance) (increase(scribewatch_jobs_total{{{finished}}}[{fw}]))"},
        {"_comment": "failed ÷ (succeeded + failed). Skipped jobs are neither: a folder full of "
                     "files that\nalready have subtitles must not dilute (or inflate) the ratio.",
         "record": n.failure_ratio,
         "expr": lines(
             f'sum by (job, instance) (rate(scribewatch_jobs_total{{outcome="failed"}}[{fw}]))',
             "/",
             f"(sum by (job, instance) (rate(scribewatch_jobs_total{{{finished}}}[{fw}])) > 0)")},
        {"record": n.failures_rate,
         "expr": f"sum by (job, instance, stage, reason) "
                 f"(rate(scribewatch_job_failures_total[{w}]))"},
    ]
    for i, q in enumerate(QUANTILES):
        rules.append(_quantile(n.stage_quantile[q], q, "scribewatch_stage_duration_seconds",
                               "stage", w, None if i else "--- per-stage latency " + "-" * 69))
    rules += [
        _quantile(n.rtf_quantile["p50"], "p50", "scribewatch_realtime_factor", "", w,
                  "--- real-time factor (processing seconds per audio second; < 1 = faster "
                  "than real time) ---"),
        _quantile(n.rtf_quantile["p95"], "p95", "scribewatch_realtime_factor", "", w),
        _quantile(n.rtf_p95_speed, "p95", "scribewatch_realtime_factor", "", sw,
                  f"The factor is observed once per finished job, so a {w} window is empty "
                  "most of the time\non a homelab box: the \"slower than real time\" alert looks "
                  f"at the last {sw} instead."),
        {"_comment": "Audio-weighted real-time factor of the last day: all stage seconds ÷ all "
                     "audio seconds.\nUnlike the per-job quantiles it is not inflated by short "
                     "clips (where fixed overhead\ndominates), so it says how fast this box "
                     "transcribes long files: the stuck-job alert\nscales its threshold with it.",
         "record": n.rtf_history,
         "expr": lines(
             f"sum by (job, instance) (rate(scribewatch_stage_duration_seconds_sum[{hw}]))",
             "/",
             f"(sum by (job, instance) (rate(scribewatch_audio_seconds_total[{hw}])) > 0)")},
        _quantile(n.queue_wait_p95, "p95", "scribewatch_queue_wait_seconds", "", w,
                  "--- waiting and end-to-end time " + "-" * 58),
        _quantile(n.job_duration_quantile["p50"], "p50", "scribewatch_job_duration_seconds", "", w),
        _quantile(n.job_duration_quantile["p95"], "p95", "scribewatch_job_duration_seconds", "", w),
        {"_comment": "--- capacity " + "-" * 78 + "\nOne series per role (watch / output / "
                     "store); the exporter already reports the fullest\nwatch folder for the "
                     "`watch` role. A filesystem of size 0 (pseudo fs) gives no series.",
         "record": n.filesystem_free,
         "expr": lines(
             "sum by (job, instance, role) (scribewatch_filesystem_free_bytes)",
             "/",
             "(sum by (job, instance, role) (scribewatch_filesystem_size_bytes) > 0)")},
        {"_comment": "Per GPU. `name` is kept (it is fixed per `gpu` index) so alerts and legends "
                     "can say\nwhich card it is; `uuid` is dropped.",
         "record": n.gpu_memory_used,
         "expr": lines(
             "sum by (job, instance, gpu, name) (scribewatch_gpu_memory_used_bytes)",
             "/",
             "(sum by (job, instance, gpu, name) (scribewatch_gpu_memory_total_bytes) > 0)")},
    ]
    c = f"job, {cfg.cluster_label}"
    rules += [
        {"_comment": "--- clusters (nodes sharing one job store) " + "-" * 48 + "\nThe queue "
                     "is the store's: every node exports it alike, so max, never sum.",
         "record": n.cluster_queue, "expr": f"max by ({c}) (scribewatch_queue_jobs)"},
        {"record": n.cluster_oldest_queued,
         "expr": f"max by ({c}) (scribewatch_oldest_queued_job_age_seconds)"},
        {"record": n.cluster_audio_rate,
         "expr": f"sum by ({c}) (rate(scribewatch_audio_seconds_total[{w}]))"},
        {"record": n.cluster_takeovers,
         "expr": f"sum by ({c}) (increase(scribewatch_job_takeovers_total"
                 f"[{cfg.t('takeovers_window')}]))"},
    ]
    return [{"name": "scribewatch-recording", "rules": rules}]
