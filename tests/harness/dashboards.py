"""The committed Grafana dashboards, read as Grafana reads them: panels (rows and collapsed rows
included) and their query targets."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness import REPO

DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict):
    """Every panel, rows included, nested ones (collapsed rows) too."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def data_panels(dashboard: dict):
    return [p for p in panels(dashboard) if p["type"] != "row"]


def targets(dashboard: dict):
    for p in data_panels(dashboard):
        for t in p.get("targets", []):
            yield p, t
