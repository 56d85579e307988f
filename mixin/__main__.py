"""`python -m mixin [--check]`: write (or check) every generated monitoring file."""

from __future__ import annotations

import sys
from pathlib import Path

from . import alerts, docs, rules
from .config import CONFIG, Config
from .dashboards import DASHBOARDS
from .render import dashboard_json, rule_file

REPO = Path(__file__).resolve().parent.parent


def outputs(cfg: Config = CONFIG) -> dict[str, str]:
    """Repository-relative path -> the text the mixin generates for it."""
    files = {
        "prometheus/rules/recording.yml": rule_file(
            "mixin/rules.py", rules.HEADER, rules.recording_groups(cfg)),
        "prometheus/rules/alerts.yml": rule_file(
            "mixin/alerts.py", alerts.header(cfg), alerts.alert_groups(cfg)),
    }
    for name, build in DASHBOARDS.items():
        files[f"grafana/dashboards/{name}"] = dashboard_json(build(cfg))
    files[docs.DOC_PATH] = docs.dashboards_doc(cfg)
    files[docs.RUNBOOK_PATH] = docs.runbook(cfg)
    return files


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a != "--check"]
    if unknown:
        print(f"usage: python -m mixin [--check] (unknown: {' '.join(unknown)})", file=sys.stderr)
        return 2
    check = "--check" in argv
    stale = []
    for rel, text in outputs().items():
        path = REPO / rel
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(rel)
        elif not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {rel}")
    if stale:
        print("out of date (run `python -m mixin`):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
