"""scribewatch / Cluster: several nodes on one shared job store — the nodes, their throughput,
the shared queue, leases and takeovers.

The queue is the store's: every node exports the same `scribewatch_queue_jobs`, so this view
takes the max by cluster (recording rule `cluster:scribewatch_queue_jobs:max`), never a sum.
"""

from __future__ import annotations

from ..config import Config
from ..panels import (
    GREEN,
    RED,
    YELLOW,
    YES_NO,
    Selectors,
    dashboard,
    row,
    stat,
    steps,
    target,
    timeseries,
)
from ..render import in_words, num
from ..rules import Names


def build(cfg: Config) -> dict:
    sel, n = Selectors(cfg), Names(cfg)
    c = cfg.cluster_label
    panels = [
        row("Shared queue"),
        stat("Queued (cluster)", "Jobs waiting in the shared store: the max over the nodes "
             f"(recording rule `{n.cluster_queue}`), since every node exports the same figure.",
             [target(f"max by ({c}) ({sel('scribewatch_queue_jobs')})", f"{{{{{c}}}}}")],
             w=6, h=5, unit="short", color_mode="value", graph=True,
             bad="growing while every node is busy: add a node"),
        stat("Oldest queued job", "Age of the oldest waiting job, max over the nodes "
             f"(`{n.cluster_oldest_queued}`).",
             [target(f"max by ({c}) ({sel('scribewatch_oldest_queued_job_age_seconds')})",
                     f"{{{{{c}}}}}")],
             w=6, h=5, unit="s", color_mode="value", graph=True,
             bad="hours, while nodes are idle: libraries unavailable on every node"),
        stat("Takeovers in time range", "Jobs taken over after their node's lease ran out "
             "(`increase(scribewatch_job_takeovers_total[$__range])`, summed by cluster). "
             "Steady takeovers: a node that keeps dying or freezing, or a lease too short "
             f"(alert ScribewatchRepeatedTakeovers, on `{n.cluster_takeovers}`).",
             [target(f"round(sum by ({c}) (increase("
                     f"{sel('scribewatch_job_takeovers_total')}[$__range])))", f"{{{{{c}}}}}",
                     instant=True)],
             w=6, h=5, unit="short", decimals=0,
             thresholds=steps((None, GREEN), (1, YELLOW),
                              (cfg.t("takeovers_repeated"), RED)),
             bad=f"{num(cfg.t('takeovers_repeated'))} or more within "
                 f"{in_words(cfg.t('takeovers_window'))}",
             alert="ScribewatchRepeatedTakeovers"),
        stat("Store reachable", "Each node's view of the job store (`scribewatch_store_up`). "
             "0: the node claims nothing and its /readyz is 503.",
             [target(sel("scribewatch_store_up"), "{{instance}}")],
             w=6, h=5, unit="none", mappings=YES_NO, thresholds=steps((None, RED), (1, GREEN)),
             bad="0 on any node",
             alert="ScribewatchStoreUnreachable"),
        row("Nodes"),
        timeseries("Throughput by node", "Audio seconds transcribed per second, per node "
                   "(`scribewatch_audio_seconds_total`), and the cluster's sum "
                   f"(`{n.cluster_audio_rate}`): per-node counters add up.",
                   [target(f"sum by (job, instance) (rate("
                           f"{sel('scribewatch_audio_seconds_total')}[{sel.rate}]))",
                           "{{instance}}"),
                    target(f"sum by ({c}) (rate("
                           f"{sel('scribewatch_audio_seconds_total')}[{sel.rate}]))",
                           f"{{{{{c}}}}} total")],
                   w=12, unit="short",
                   bad="one node at 0 while the queue is full"),
        timeseries("Leases held by node", "Running jobs whose lease each node holds "
                   "(`scribewatch_leases_held`): at most its `workers`.",
                   [target(sel("scribewatch_leases_held"), "{{instance}}")],
                   w=12, unit="short", stacked=True,
                   bad="0 on a node while jobs wait"),
        timeseries("Lease renewals failed per minute", "Heartbeats that could not renew a "
                   "lease (`scribewatch_lease_renewals_failed_total`): the store unreachable, "
                   "or the job already another node's.",
                   [target(f"sum by (job, instance) (rate("
                           f"{sel('scribewatch_lease_renewals_failed_total')}[{sel.rate}]))"
                           " * 60", "{{instance}}")],
                   w=12, unit="short",
                   bad="above 0 for minutes",
                   alert="ScribewatchLeaseRenewalsFailing"),
        timeseries("Takeovers per hour by node", "Jobs each node took over "
                   "(`scribewatch_job_takeovers_total`).",
                   [target(f"sum by (job, instance) (rate("
                           f"{sel('scribewatch_job_takeovers_total')}[{sel.rate}])) * 3600",
                           "{{instance}}")],
                   w=12, unit="short",
                   bad="steady",
                   alert="ScribewatchRepeatedTakeovers"),
    ]
    return dashboard(cfg, "cluster", "Cluster",
                     "Several nodes on one shared job store: nodes, throughput, the shared "
                     "queue, leases and takeovers.", panels)
