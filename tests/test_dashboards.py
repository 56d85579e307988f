"""Static checks of the Grafana dashboards and provisioning (fast: no daemon, no Prometheus).

Every dashboard in grafana/dashboards/ is valid JSON with a fixed, unique uid; panel ids are
unique; every panel and target uses the `datasource` variable; every target parses as PromQL
once Grafana's variables are substituted, filters every selector by `instance=~"$instance"` and
uses only names that exist: families of the exporter's catalog, recording rules of
prometheus/rules/, `up`, `ALERTS` and client_python's `process_*`. Thresholds that mirror an
alert equal that alert's constant in prometheus/rules/alerts.yml.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import promql_parser
import pytest
import yaml

from conftest import REPO

DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))
RULES_DIR = REPO / "prometheus" / "rules"
DS_VAR = {"type": "prometheus", "uid": "${datasource}"}

# Grafana's built-in variables, with stand-ins that make the expression valid PromQL.
BUILTINS = {
    "$__rate_interval": "1m", "$__interval_ms": "60000", "$__interval": "1m",
    "$__range_s": "3600", "$__range_ms": "3600000", "$__range": "1h",
}
VARIABLE = re.compile(r"\$(\{)?(\w+)")


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _panels(dashboard: dict):
    """Every panel, rows included, nested ones (collapsed rows) too."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def _data_panels(dashboard: dict):
    return [p for p in _panels(dashboard) if p["type"] != "row"]


def _targets(dashboard: dict):
    for p in _data_panels(dashboard):
        for t in p.get("targets", []):
            yield p, t


def substitute(expr: str, instance: str = ".*") -> str:
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    return expr.replace("$instance", instance)


def selectors(expr) -> list:
    found = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(expr, visit)
    return found


def selector_name(sel) -> str | None:
    if sel.name:
        return sel.name
    for m in sel.matchers.matchers:
        if m.name == "__name__":
            return m.value
    return None


def known_names() -> tuple[set[str], tuple[str, ...]]:
    """(exact names, allowed prefixes)."""
    from exporter import catalog

    names = {"up", "ALERTS", "ALERTS_FOR_STATE"}
    for family in catalog.FAMILIES:
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text()).get("groups", []):
            names |= {r["record"] for r in group.get("rules", []) if "record" in r}
    return names, ("process_",)


def _generator():
    spec = importlib.util.spec_from_file_location("grafana_generate", REPO / "grafana" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the files ---------------------------------------------------------------------------------
def test_three_dashboards_with_fixed_unique_uids():
    assert len(DASHBOARD_FILES) >= 3, DASHBOARD_FILES
    uids, titles = [], []
    for path in DASHBOARD_FILES:
        d = _load(path)
        assert re.fullmatch(r"[a-z0-9-]{1,40}", d.get("uid", "")), (path.name, d.get("uid"))
        assert d.get("id") is None, f"{path.name}: a provisioned dashboard carries no numeric id"
        assert "__inputs" not in d and "__requires" not in d
        assert d["schemaVersion"] >= 36
        uids.append(d["uid"])
        titles.append(d["title"])
    assert len(set(uids)) == len(uids), uids
    assert len(set(titles)) == len(titles), titles
    assert {"scribewatch-overview", "scribewatch-pipeline", "scribewatch-gpu-host"} <= set(uids)


def test_json_is_generated_from_the_source():
    """grafana/generate.py is the source; the committed JSON must be its current output."""
    gen = _generator()
    for name, build in gen.DASHBOARDS.items():
        path = DASHBOARDS_DIR / name
        assert path.exists(), name
        assert path.read_text() == gen.render(build), \
            f"{name} is out of date: run `python grafana/generate.py`"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_panel_ids_unique_and_layout_sane(path):
    d = _load(path)
    ids = [p["id"] for p in _panels(d)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    cells: dict[tuple[int, int], int] = {}
    for p in _panels(d):
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, f"{p['title']}: wider than the grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]
        assert p.get("title"), f"panel {p['id']} has no title"
        if p["type"] != "row":
            assert p.get("description"), f"{p['title']}: no description"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_template_variables(path):
    d = _load(path)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    inst = variables["instance"]
    assert inst["type"] == "query"
    assert inst["datasource"] == DS_VAR
    query = inst["query"]["query"] if isinstance(inst["query"], dict) else inst["query"]
    assert query == "label_values(scribewatch_build_info, instance)"
    assert inst["multi"] is True and inst["includeAll"] is True
    # "All" must stay the list of the daemons' instances: a `.*` would pull in every target
    # of the Prometheus (`up` of other jobs).
    assert not inst.get("allValue"), "allValue would match other jobs' instances"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_and_target_uses_the_datasource_variable(path):
    d = _load(path)
    panels = _data_panels(d)
    assert panels
    for p in panels:
        assert p.get("datasource") == DS_VAR, f"{p['title']}: datasource {p.get('datasource')}"
        assert p.get("targets"), f"{p['title']}: no targets"
        for t in p["targets"]:
            assert t.get("datasource") == DS_VAR, f"{p['title']} {t.get('refId')}"
            assert t.get("expr", "").strip(), f"{p['title']} {t.get('refId')}: no expression"
    refs = [t["refId"] for p in panels for t in p["targets"]]
    assert all(refs)
    # Nothing in the file points at a concrete datasource (importable on another Grafana).
    text = path.read_text()
    for m in re.finditer(r'"datasource":\s*\{[^{}]*"uid":\s*"([^"]*)"', text):
        assert m.group(1) in ("${datasource}", "-- Grafana --"), m.group(0)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_variables_used_are_defined(path):
    d = _load(path)
    defined = {v["name"] for v in d["templating"]["list"]}
    for p, t in _targets(d):
        for m in VARIABLE.finditer(t["expr"]):
            name = m.group(2)
            assert name.startswith("__") or name in defined, f"{p['title']}: ${name} undefined"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_targets_parse_and_filter_by_instance(path):
    d = _load(path)
    for p, t in _targets(d):
        where = f"{path.name} / {p['title']} / {t['refId']}"
        expr = t["expr"]
        # As Grafana sends it with "All" selected (or any regex) ...
        try:
            promql_parser.parse(substitute(expr))
        except Exception as e:  # noqa: BLE001 - the parser raises its own error types
            pytest.fail(f"{where}: does not parse: {e}\n{expr}")
        # ... and every selector carries the instance filter: no hard-coded instance.
        sels = selectors(promql_parser.parse(substitute(expr, instance="$instance")))
        assert sels, where
        for sel in sels:
            matchers = [m for m in sel.matchers.matchers if m.name == "instance"]
            assert len(matchers) == 1, f"{where}: {selector_name(sel)} is not filtered by instance"
            m = matchers[0]
            assert m.op == promql_parser.MatchOp.Re, f"{where}: instance matched with {m.op}"
            assert m.value in ("$instance", "$instance|"), f"{where}: instance matcher {m.value!r}"


def test_only_known_metric_and_rule_names():
    names, prefixes = known_names()
    used = set()
    for path in DASHBOARD_FILES:
        for p, t in _targets(_load(path)):
            for sel in selectors(promql_parser.parse(substitute(t["expr"]))):
                name = selector_name(sel)
                assert name, f"{path.name} / {p['title']}: a selector without a metric name"
                assert name in names or name.startswith(prefixes), \
                    f"{path.name} / {p['title']}: unknown metric or rule {name!r}"
                used.add(name)
    # The dashboards use the recording rules, not hand-written copies of them.
    recorded = {n for n in names if ":" in n}
    assert len(used & recorded) >= 12, sorted(used & recorded)


def test_known_names_come_from_the_catalog_and_rules():
    names, _ = known_names()
    assert "scribewatch_stage_duration_seconds_bucket" in names
    assert "scribewatch_jobs_total" in names
    assert "instance:scribewatch_audio_seconds:rate5m" in names
    assert "scribewatch_no_such_metric" not in names


# -- units and thresholds ----------------------------------------------------------------------
UNIT_BY_SUFFIX = (
    ("_bytes", "bytes"), ("_celsius", "celsius"), ("_watts", "watt"), ("_hertz", "hertz"),
    ("_utilization_ratio", "percentunit"), ("_usage_ratio", "percentunit"),
    ("_progress_ratio", "percentunit"), (":ratio", "percentunit"),
    ("_free:ratio", "percentunit"), ("failures:ratio_rate30m", "percentunit"),
    ("stage_duration_seconds:p50_rate5m", "s"), ("stage_duration_seconds:p95_rate5m", "s"),
    ("stage_duration_seconds:p99_rate5m", "s"), ("queue_wait_seconds:p95_rate5m", "s"),
    ("job_duration_seconds:p50_rate5m", "s"), ("oldest_running_job_age_seconds", "s"),
    ("model_load_seconds", "s"),
)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_units(path):
    """A panel whose queries all share a unit-bearing suffix shows that unit."""
    for p in _data_panels(_load(path)):
        if p["type"] == "heatmap":
            assert p["options"]["yAxis"]["unit"] == "s", p["title"]
            continue
        expected = set()
        for t in p["targets"]:
            for sel in selectors(promql_parser.parse(substitute(t["expr"]))):
                name = selector_name(sel)
                units = {u for suffix, u in UNIT_BY_SUFFIX if name.endswith(suffix)}
                expected.add(units.pop() if len(units) == 1 else None)
        if len(expected) == 1 and None not in expected:
            unit = p["fieldConfig"]["defaults"].get("unit")
            assert unit == expected.pop(), f"{path.name} / {p['title']}: unit {unit!r}"


def _alert_constants() -> dict[str, set[float]]:
    out: dict[str, set[float]] = {}
    doc = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            numbers = out.setdefault(rule["alert"], set())

            def visit(node, numbers=numbers):
                if isinstance(node, promql_parser.NumberLiteral):
                    numbers.add(float(node.val))

            promql_parser.walk(promql_parser.parse(rule["expr"]), visit)
    return out


def test_alert_thresholds_match_alerts_yml():
    gen = _generator()
    constants = _alert_constants()
    for key, (alert, value) in gen.ALERT_THRESHOLDS.items():
        assert alert in constants, f"{key}: no alert {alert} in alerts.yml"
        assert float(value) in constants[alert], \
            f"{key}: {value} is not a constant of {alert} ({sorted(constants[alert])})"


# Panels whose thresholds are an alert's: (dashboard uid, panel title) -> threshold keys.
THRESHOLD_PANELS = {
    ("scribewatch-overview", "Restarts (1 h)"): ["restarts"],
    ("scribewatch-overview", "Oldest running job"): ["job_stuck_floor"],
    ("scribewatch-overview", "Real-time factor p50 / p95"): ["slower_than_realtime"],
    ("scribewatch-overview", "Failure ratio (30 min)"): ["failure_ratio"],
    ("scribewatch-gpu-host", "GPU temperature"): ["gpu_temperature_warning",
                                                  "gpu_temperature_critical"],
    ("scribewatch-gpu-host", "GPU memory used"): ["gpu_memory"],
    ("scribewatch-gpu-host", "Filesystem free, by role"): ["filesystem_warning",
                                                           "filesystem_critical"],
}


def test_panels_draw_the_alert_thresholds():
    gen = _generator()
    dashboards = {d["uid"]: d for d in map(_load, DASHBOARD_FILES)}
    for (uid, title), keys in THRESHOLD_PANELS.items():
        panels = [p for p in _data_panels(dashboards[uid]) if p["title"] == title]
        assert len(panels) == 1, (uid, title)
        steps = [s["value"] for s in
                 panels[0]["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        for key in keys:
            assert gen.ALERT_THRESHOLDS[key][1] in steps, (uid, title, key, steps)


# -- provisioning ------------------------------------------------------------------------------
def test_datasource_provisioning():
    doc = yaml.safe_load((REPO / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert doc["apiVersion"] == 1
    prom = [d for d in doc["datasources"] if d["type"] == "prometheus"]
    assert len(prom) == 1
    ds = prom[0]
    assert ds["uid"] and ds["url"] == "http://prometheus:9090" and ds.get("isDefault") is True
    # $__rate_interval is derived from it: keep it equal to Prometheus' scrape interval.
    prometheus = yaml.safe_load((REPO / "prometheus/prometheus.yml").read_text())
    assert ds["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]


def test_dashboard_provider():
    doc = yaml.safe_load((REPO / "grafana/provisioning/dashboards/scribewatch.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["folder"] == "scribewatch"
    assert provider["options"]["path"].startswith("/")   # where compose mounts grafana/dashboards


def test_every_panel_is_documented():
    doc = (REPO / "docs" / "dashboards.md").read_text()
    for path in DASHBOARD_FILES:
        d = _load(path)
        assert f"`{d['uid']}`" in doc, d["uid"]
        for p in _data_panels(d):
            assert f"**{p['title']}**" in doc, f"{path.name}: panel {p['title']!r} not in docs/dashboards.md"
