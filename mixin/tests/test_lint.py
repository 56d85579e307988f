"""Lint of the monitoring mixin's output, as `mixtool lint` and Grafana's dashboard-linter would.

Both are Go tools that are not installed here, so their checks are reimplemented in Python (on
the committed files, which mixin/tests/test_generate.py holds equal to what
`python -m mixin` makes):

alerts (mixtool / monitoring-mixins conventions)
  alert-name        CamelCase name
  alert-severity    a `severity` label of critical, warning or info
  alert-summary     a static `summary` (no template) ending in a period
  alert-description a templated `description` (it contains `{{`)
  alert-runbook     a `runbook_url`
  alert-promql      the expression parses
dashboards (dashboard-linter's rule names)
  dashboard-uid, dashboard-tags, template-uneditable-rule: a fixed uid, tags, `editable: false`
  template-datasource-rule   exactly one datasource variable `datasource` (Prometheus)
  template-job-rule, template-instance-rule: multi-select query variables on $datasource with
                             "All" = `.+`, and a label_values() query that parses
  panel-datasource-rule      every panel and target uses the datasource variable
  panel-title-description-rule, panel-units-rule: a title, a description, a known unit
  target-promql-rule         every query parses (Grafana's variables substituted)
  target-job-rule, target-instance-rule: every selector has job=~"$job", instance=~"$instance"
  target-rate-interval-rule  rate/irate/increase windows are $__rate_interval
  target-counter-agg-rule    counters (catalog types; `_total`) only inside rate/irate/increase

Deliberate exceptions are listed in EXCLUSIONS with their reason, like dashboard-linter's `.lint`
file; an exclusion that no longer excuses anything fails the test. The lint functions are also
run on small bad inputs built here, so a lint that cannot fail is caught too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser as pp
import pytest
import yaml

from tests.harness import REPO

DASHBOARD_FILES = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
ALERTS = REPO / "prometheus" / "rules" / "alerts.yml"
DS_UIDS = {"${datasource}", "$datasource"}
SEVERITIES = {"critical", "warning", "info"}
RATE_FUNCS = {"rate", "irate", "increase"}
# Grafana unit ids this project uses (grafana-data valueFormats/categories.ts), and the custom
# `suffix:`/`prefix:` units Grafana accepts.
VALID_UNITS = {"none", "short", "s", "ms", "percent", "percentunit", "bytes", "decbytes",
               "celsius", "watt", "hertz", "reqps", "ops", "bool", "dateTimeAsIso"}
CUSTOM_UNIT = re.compile(r"(suffix|prefix):.+")
# Stand-ins for Grafana's built-in variables: durations nobody writes, so the window a range
# selector ended up with says which variable it was.
RATE_INTERVAL, RANGE, INTERVAL = "7777s", "8888s", "9999s"
BUILTINS = {"$__rate_interval": RATE_INTERVAL, "$__range": RANGE, "$__interval": INTERVAL}

EXCLUSIONS = {
    "target-rate-interval-rule": {
        "reason": "the '... in time range' panels total over the dashboard's time range "
                  "($__range) on purpose",
        "entries": {("scribewatch-overview", "Files in time range"),
                    ("scribewatch-overview", "Audio transcribed in time range"),
                    ("scribewatch-overview", "Failures in time range, by reason"),
                    ("scribewatch-overview", "Skipped in time range, by reason"),
                    ("scribewatch-pipeline", "Model load failures in time range"),
                    ("scribewatch-pipeline", "Suspect transcripts in time range"),
                    ("scribewatch-pipeline", "Languages decided in time range"),
                    ("scribewatch-pipeline", "Where the languages came from"),
                    ("scribewatch-cluster", "Takeovers in time range")}},
    "target-counter-agg-rule": {
        "reason": "shows the counters' values themselves: jobs finished since the daemon started",
        "entries": {("scribewatch-overview", "Files since start")}},
    "target-instance-rule": {
        "reason": "ScribewatchTargetMissing (absent()) has no instance label: the table matches "
                  'instance=~"$instance|" to keep it',
        "entries": {("scribewatch-overview", "Alerts firing and pending")}},
}


# -- PromQL --------------------------------------------------------------------------------------
def parse(expr: str):
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    return pp.parse(expr)


def selectors(node, func: str | None = None):
    """(vector selector, function whose range argument it is or None, range) for each selector."""
    if isinstance(node, pp.Call):
        for arg in node.args:
            yield from selectors(arg, node.func.name)
    elif isinstance(node, pp.MatrixSelector):
        yield node.vector_selector, func, node.range
    elif isinstance(node, pp.VectorSelector):
        yield node, None, None
    elif isinstance(node, pp.BinaryExpr):
        yield from selectors(node.lhs)
        yield from selectors(node.rhs)
    elif isinstance(node, (pp.AggregateExpr, pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        yield from selectors(node.expr)


def metric_name(sel) -> str:
    return sel.name or next((m.value for m in sel.matchers.matchers if m.name == "__name__"), "")


def catalog_counters() -> set[str]:
    """Counter series by the catalog's types: counters, and histograms' _bucket/_count/_sum."""
    from scribewatch.exporter import catalog

    names = set()
    for family in catalog.FAMILIES:
        if family.type == "counter":
            names.add(family.name)
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_count", "_sum")}
    return names


def is_counter(name: str, counters: set[str]) -> bool:
    return ":" not in name and (name in counters or name.endswith("_total"))


def _duration(text: str):
    return pp.parse(f"x[{text}]").range


# -- alerts --------------------------------------------------------------------------------------
def lint_alert(rule: dict) -> list[tuple[str, str]]:
    """(check, message) for each problem of one alerting rule."""
    name = rule.get("alert", "")
    problems = []
    if not re.fullmatch(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+", name):
        problems.append(("alert-name", f"{name!r} is not CamelCase"))
    if rule.get("labels", {}).get("severity") not in SEVERITIES:
        problems.append(("alert-severity", f"{name}: severity {rule.get('labels', {})}"))
    annotations = rule.get("annotations", {})
    summary = annotations.get("summary", "")
    if not summary or "{{" in summary or not summary.endswith("."):
        problems.append(("alert-summary", f"{name}: summary {summary!r} is not a static sentence"))
    if "{{" not in annotations.get("description", ""):
        problems.append(("alert-description", f"{name}: description has no template"))
    if not re.fullmatch(r"https?://\S+", annotations.get("runbook_url", "")):
        problems.append(("alert-runbook", f"{name}: no runbook_url"))
    try:
        pp.parse(rule.get("expr", ""))
    except Exception as e:
        problems.append(("alert-promql", f"{name}: {e}"))
    return problems


# -- dashboards ----------------------------------------------------------------------------------
def _panels(dashboard: dict):
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def _lint_variable(variables: dict, name: str) -> list[str]:
    var = variables.get(name)
    if var is None:
        return [f"no `{name}` variable"]
    problems = []
    if var.get("type") != "query" or (var.get("label") or "").lower() != name:
        problems.append(f"`{name}`: type {var.get('type')}, label {var.get('label')!r}")
    if (var.get("datasource") or {}).get("uid") not in DS_UIDS:
        problems.append(f"`{name}`: datasource {var.get('datasource')}")
    if not (var.get("multi") and var.get("includeAll") and var.get("allValue") == ".+"):
        problems.append(f"`{name}`: not multi-select with includeAll and allValue '.+'")
    query = var.get("query")
    query = query.get("query", "") if isinstance(query, dict) else query or ""
    m = re.fullmatch(rf"label_values\((.+),\s*{name}\)", query)
    try:
        if not m:
            raise ValueError("not label_values(<selector>, label)")
        pp.parse(m.group(1).replace("$job", "x").replace("$instance", "x"))
    except Exception as e:
        problems.append(f"`{name}`: query {query!r}: {e}")
    return problems


def lint_dashboard(d: dict, counters: set[str], exclusions: dict | None = None,
                   used: set | None = None) -> list[tuple[str, str]]:
    """(rule, message) for each problem; `used` collects the exclusions that excused one."""
    exclusions = EXCLUSIONS if exclusions is None else exclusions
    uid = d.get("uid") or ""
    problems: list[tuple[str, str]] = []

    def report(rule: str, title: str, message: str) -> None:
        if (uid, title) in exclusions.get(rule, {}).get("entries", ()):
            if used is not None:
                used.add((rule, uid, title))
            return
        problems.append((rule, f"{uid} / {title}: {message}"))

    if not re.fullmatch(r"[a-z0-9-]{1,40}", uid):
        report("dashboard-uid", "", f"uid {uid!r}")
    if not d.get("tags"):
        report("dashboard-tags", "", "no tags")
    if d.get("editable") is not False:
        report("template-uneditable-rule", "", "editable is not false")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    sources = [v for v in variables.values() if v.get("type") == "datasource"]
    if len(sources) != 1 or sources[0].get("name") != "datasource" \
            or sources[0].get("query") != "prometheus" or sources[0].get("label") != "Data Source":
        report("template-datasource-rule", "", f"datasource variables {sources}")
    for name in ("job", "instance"):
        for message in _lint_variable(variables, name):
            report(f"template-{name}-rule", "", message)

    for p in _panels(d):
        title = p.get("title") or ""
        if not title:
            report("panel-title-description-rule", "", f"panel {p.get('id')} has no title")
        if p.get("type") == "row":
            continue
        if not p.get("description"):
            report("panel-title-description-rule", title, "no description")
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if not (unit in VALID_UNITS or (unit and CUSTOM_UNIT.fullmatch(unit))):
            report("panel-units-rule", title, f"unit {unit!r}")
        if (p.get("datasource") or {}).get("uid") not in DS_UIDS:
            report("panel-datasource-rule", title, f"datasource {p.get('datasource')}")
        for t in p.get("targets", []):
            where = f"{t.get('refId')}: {t.get('expr')}"
            if (t.get("datasource") or {}).get("uid") not in DS_UIDS:
                report("panel-datasource-rule", title, f"{t.get('refId')} datasource")
            try:
                sels = list(selectors(parse(t.get("expr", ""))))
            except Exception as e:
                report("target-promql-rule", title, f"{where}: {e}")
                continue
            for sel, func, window in sels:
                name = metric_name(sel)
                for label in ("job", "instance"):
                    if not any(m.name == label and m.op == pp.MatchOp.Re and m.value == f"${label}"
                               for m in sel.matchers.matchers):
                        report(f"target-{label}-rule", title,
                               f'{name} lacks {label}=~"${label}" ({where})')
                if func in RATE_FUNCS and window != _duration(RATE_INTERVAL):
                    report("target-rate-interval-rule", title,
                           f"{func}({name}) window is not $__rate_interval ({where})")
                if is_counter(name, counters) and func not in RATE_FUNCS:
                    report("target-counter-agg-rule", title,
                           f"counter {name} outside rate/irate/increase ({where})")
    return problems


# -- the committed files ------------------------------------------------------------------------
def _alert_rules(path: Path = ALERTS) -> list[dict]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]
            if "alert" in r]


def test_alerts_pass_the_lint():
    rules = _alert_rules()
    assert len(rules) >= 15
    problems = [p for rule in rules for p in lint_alert(rule)]
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_passes_the_lint(path):
    problems = lint_dashboard(json.loads(path.read_text()), catalog_counters())
    assert not problems, "\n".join(f"{rule}: {message}" for rule, message in problems)


def test_every_exclusion_is_still_needed():
    used: set = set()
    for path in DASHBOARD_FILES:
        lint_dashboard(json.loads(path.read_text()), catalog_counters(), used=used)
    listed = {(rule, uid, title) for rule, exc in EXCLUSIONS.items()
              for uid, title in exc["entries"]}
    assert listed == used, f"exclusions that excuse nothing: {sorted(listed - used)}"
    assert all(exc["reason"] for exc in EXCLUSIONS.values())


def test_counters_come_from_the_catalog():
    counters = catalog_counters()
    assert "scribewatch_jobs_total" in counters
    assert "scribewatch_stage_duration_seconds_bucket" in counters
    assert "scribewatch_queue_wait_seconds_count" in counters
    assert not is_counter("scribewatch_queue_jobs", counters)
    assert not is_counter("instance_outcome:scribewatch_jobs:rate5m", counters)
    assert is_counter("process_cpu_seconds_total", counters)        # by its name


# -- the lint can fail ---------------------------------------------------------------------------
def test_lint_flags_bad_alerts():
    good = {"alert": "ScribewatchSomething", "expr": "up == 0",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "Something is wrong.",
                            "description": "On {{ $labels.instance }}.",
                            "runbook_url": "https://example.org/runbook#x"}}
    assert lint_alert(good) == []
    cases = {
        "alert-name": {"alert": "scribewatch_something"},
        "alert-severity": {"labels": {"severity": "page"}},
        "alert-summary": {"annotations": {**good["annotations"],
                                          "summary": "{{ $labels.instance }} is down."}},
        "alert-description": {"annotations": {**good["annotations"],
                                              "description": "Something is down."}},
        "alert-runbook": {"annotations": {"summary": "Down.", "description": "{{ $value }}"}},
        "alert-promql": {"expr": "up == == 0"},
    }
    for check, change in cases.items():
        assert [c for c, _ in lint_alert({**good, **change})] == [check], check
    assert [c for c, _ in lint_alert({**good, "annotations": {
        **good["annotations"], "summary": "No period"}})] == ["alert-summary"]


def _bad_dashboard() -> dict:
    ds = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "uid": "Bad Dashboard", "tags": [], "editable": True,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus",
             "label": "Data Source"},
            {"name": "prom2", "type": "datasource", "query": "prometheus", "label": "Other"},
            {"name": "job", "label": "job", "type": "query", "datasource": ds, "multi": True,
             "includeAll": True, "allValue": ".*", "query": "label_values(up, job)"},
        ]},
        "panels": [
            {"type": "row", "title": "", "id": 1},
            {"type": "timeseries", "title": "Raw counter", "description": "", "datasource": ds,
             "fieldConfig": {"defaults": {"unit": "requests"}},
             "targets": [{"refId": "A", "datasource": ds,
                          "expr": 'scribewatch_jobs_total{instance=~"$instance"}'}]},
            {"type": "stat", "title": "Fixed window", "description": "d",
             "datasource": {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"},
             "fieldConfig": {"defaults": {"unit": "short"}},
             "targets": [{"refId": "A", "datasource": ds,
                          "expr": 'rate(scribewatch_jobs_total{job=~"$job", '
                                  'instance=~"$instance"}[5m])'},
                         {"refId": "B", "datasource": ds, "expr": "sum(rate(x[$__rate_interval]"}]},
        ],
    }


def test_lint_flags_a_bad_dashboard():
    found = {rule for rule, _ in lint_dashboard(_bad_dashboard(), catalog_counters(), {})}
    assert found == {
        "dashboard-uid", "dashboard-tags", "template-uneditable-rule",
        "template-datasource-rule",                     # two datasource variables
        "template-job-rule",                            # allValue .*
        "template-instance-rule",                       # missing
        "panel-title-description-rule",                 # the row's title, a description
        "panel-units-rule",                             # "requests"
        "panel-datasource-rule",                        # a fixed datasource uid
        "target-promql-rule",                           # unbalanced parentheses
        "target-job-rule",                              # Raw counter: no job matcher
        "target-rate-interval-rule",                    # [5m]
        "target-counter-agg-rule",                      # the raw counter
    }, found


def test_exclusions_excuse_only_their_panel_and_rule():
    d = _bad_dashboard()
    exclusions = {"target-counter-agg-rule": {"reason": "test",
                                              "entries": {("Bad Dashboard", "Raw counter")}}}
    used: set = set()
    rules = [rule for rule, _ in lint_dashboard(d, catalog_counters(), exclusions, used)]
    assert "target-counter-agg-rule" not in rules and "target-job-rule" in rules
    assert used == {("target-counter-agg-rule", "Bad Dashboard", "Raw counter")}
