"""Alerts for several nodes on one shared job store (PostgreSQL): the `scribewatch-cluster`
group of prometheus/rules/alerts.yml. See docs/runbook.md for what to do."""

from __future__ import annotations

from .config import Config
from .render import num
from .rules import Names


def cluster(cfg: Config, alert) -> dict:
    from .alerts import in_words  # alerts.py imports this module

    n = Names(cfg)
    window = cfg.t("takeovers_window")
    return {"name": "scribewatch-cluster", "rules": [
        alert("ScribewatchStoreUnreachable", "scribewatch_store_up == 0", "critical",
              "A scribewatch node cannot reach its job store.",
              """scribewatch on {{ $labels.instance }} has not reached its job store for more
              than [[for]] (store_up = {{ $value | humanize }}): it claims no new jobs and
              answers /readyz with 503. Running jobs go on under their leases; their results
              are recorded when the store is back.""",
              cfg.t("store_unreachable_for"),
              "A PostgreSQL restart or failover takes seconds; 2 m is an outage."),
        alert("ScribewatchLeaseRenewalsFailing",
              "increase(scribewatch_lease_renewals_failed_total[5m]) > 0", "warning",
              "A scribewatch node keeps failing to renew its job leases.",
              """scribewatch on {{ $labels.instance }} has failed to renew leases
              ({{ $value | humanize }} in the last 5 minutes) for more than [[for]]. Its jobs
              run out of lease and are taken over by other nodes: work is done twice.""",
              cfg.t("lease_renewals_failing_for"),
              "A blip (one failed heartbeat) keeps the 5 m increase above 0 for 5 m only; 10 m "
              "of failures is a node that cannot reach the store or has lost its jobs."),
        alert("ScribewatchRepeatedTakeovers",
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
