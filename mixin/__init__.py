"""The scribewatch monitoring mixin: one config, from which the Prometheus recording and alerting
rules (prometheus/rules/*.yml), the Grafana dashboards (grafana/dashboards/*.json), the runbook
(mixin/runbook.md) and docs/dashboards.md are generated.

    python -m mixin            # rewrite the generated files
    python -m mixin --check    # exit 1 if a committed file differs from what the source makes

Not part of the installed product: run it from the repository root. `mixin/config.py` is the
config; `rules.py`, `alerts.py` (each alert with its runbook section) and `dashboards/` (each
panel with what bad looks like and its alerts) build the files from it, `docs.py` the two
documents; its tests, with the promtool cases, are in `mixin/tests/`.
"""
