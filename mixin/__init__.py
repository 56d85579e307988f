"""The scribewatch monitoring mixin: one config, from which the Prometheus recording and alerting
rules (prometheus/rules/*.yml) and the Grafana dashboards (grafana/dashboards/*.json) are
generated.

    python -m mixin            # rewrite the generated files
    python -m mixin --check    # exit 1 if a committed file differs from what the source makes

Not part of the installed product: run it from the repository root. `mixin/config.py` is the
config; `rules.py`, `alerts.py` and `dashboards/` build the files from it.
"""
