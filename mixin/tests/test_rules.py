"""prometheus/ and alertmanager/: checked by the real binaries, held to the project's conventions.

* promtool check config / check rules / test rules, amtool check-config, template rendering and
  route tests (Debian's prometheus and prometheus-alertmanager packages);
* in Python, what the binaries cannot check: every alert has severity, summary, description with
  its values, and a runbook_url whose anchor exists in mixin/runbook.md; every alert (and each of
  its severities) has a firing and a quiet promtool case; the recording rules are exactly those
  docs/architecture.md names and keep `job` and `instance`; Alertmanager's conventions;
* a real Alertmanager (loopback) fed with alerts: the inhibition rules and the severity routing
  do what alertmanager.yml says.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from mixin.config import CONFIG
from tests.harness import REPO, require_binary
from tests.harness.stack import start_alertmanager
from tests.harness.webhook import WebhookReceiver

PROM = REPO / "prometheus"
AM = REPO / "alertmanager"
RUNBOOK = REPO / "mixin" / "runbook.md"
RUNBOOK_BASE = CONFIG.runbook_url_base + "#"
RULE_FILES = [PROM / "rules" / "recording.yml", PROM / "rules" / "alerts.yml"]
TEST_FILES = sorted((REPO / "mixin" / "tests" / "promtool").glob("*.yml"))
SEVERITIES = {"critical", "warning"}


def _run(*argv: str, cwd: Path = REPO, stdout_only: bool = False) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, argv))} -> {result.returncode}\n{output}"
    return result.stdout if stdout_only else output


def _groups(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())["groups"]


def _alert_rules() -> list[dict]:
    return [r for g in _groups(PROM / "rules" / "alerts.yml") for r in g["rules"]]


def _recording_rules() -> list[dict]:
    return [r for g in _groups(PROM / "rules" / "recording.yml") for r in g["rules"]]


def _github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub generates for headings: lower case, punctuation dropped, spaces -> '-'."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


# -- the real binaries ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-cluster.yml"])
def test_promtool_check_config(name):
    promtool = require_binary("promtool")
    out = _run(promtool, "check", "config", str(PROM / name))
    assert "SUCCESS: 2 rule files found" in out, out


def test_promtool_check_rules():
    promtool = require_binary("promtool")
    _run(promtool, "check", "rules", *map(str, RULE_FILES))


def test_promtool_unit_tests():
    promtool = require_binary("promtool")
    assert TEST_FILES, "no promtool tests in mixin/tests/promtool/"
    out = _run(promtool, "test", "rules", *map(str, TEST_FILES))
    assert out.count("SUCCESS") == len(TEST_FILES), out


def test_amtool_check_config():
    amtool = require_binary("amtool")
    out = _run(amtool, "check-config", str(AM / "alertmanager.yml"))
    templates = sorted((AM / "templates").glob("*.tmpl"))
    assert templates and f"{len(templates)} templates" in out, out


@pytest.mark.parametrize("labels, receiver", [
    (["alertname=ScribewatchDown", "instance=a:9847", "severity=critical"], "webhook-critical"),
    (["alertname=ScribewatchJobFailureRatioHigh", "instance=a:9847", "severity=warning"],
     "webhook"),
    (["alertname=SomethingElse"], "webhook"),      # no severity: the default receiver
])
def test_amtool_routes(labels, receiver):
    amtool = require_binary("amtool")
    out = _run(amtool, "config", "routes", "test",      # (stderr: a warning about the flag)
               f"--config.file={AM / 'alertmanager.yml'}", *labels, stdout_only=True)
    assert out.split() == [receiver], out


def test_alertmanager_templates_render(tmp_path):
    amtool = require_binary("amtool")
    alert = {"labels": {"alertname": "ScribewatchDown", "instance": "media:9847",
                        "job": "scribewatch", "severity": "critical"},
             "annotations": {"summary": "A scribewatch daemon cannot be scraped.",
                             "description": "Prometheus has not been able to scrape it.",
                             "runbook_url": RUNBOOK_BASE + "scribewatchdown"}}
    data = {"receiver": "webhook-critical", "status": "firing",
            "alerts": [{**alert, "status": "firing", "startsAt": "2024-05-01T20:00:00Z",
                        "endsAt": "0001-01-01T00:00:00Z"},
                       {**alert, "status": "resolved", "startsAt": "2024-05-01T18:00:00Z",
                        "endsAt": "2024-05-01T19:00:00Z"}],
            "groupLabels": {"alertname": "ScribewatchDown", "instance": "media:9847"},
            "commonLabels": alert["labels"], "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9093"}
    (tmp_path / "data.json").write_text(json.dumps(data))

    def render(text: str, kind: str = "text") -> str:
        return _run(amtool, "template", "render", f"--template.glob={AM / 'templates'}/*.tmpl",
                    f"--template.data={tmp_path / 'data.json'}", f"--template.type={kind}",
                    f"--template.text={text}")

    assert render('{{ template "scribewatch.email.subject" . }}').strip() == \
        "[FIRING:1] ScribewatchDown media:9847 (critical)"
    text = render('{{ template "scribewatch.text" . }}')
    # The summary is a fixed sentence (mixin convention): the line names the instance itself.
    assert "FIRING [media:9847]: A scribewatch daemon cannot be scraped." in text
    assert "RESOLVED [media:9847]: A scribewatch daemon cannot be scraped." in text
    assert "Runbook: " + RUNBOOK_BASE + "scribewatchdown" in text
    html = render('{{ template "scribewatch.email.html" . }}', "html")
    assert f'<a href="{RUNBOOK_BASE}scribewatchdown">' in html and "</html>" in html


# -- alert conventions ---------------------------------------------------------------------------
def test_every_alert_has_severity_summary_description_and_runbook():
    anchors = _github_anchors(RUNBOOK.read_text())
    rules = _alert_rules()
    assert rules
    for rule in rules:
        name = rule["alert"]
        assert name.startswith("Scribewatch"), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations.get("summary", "").strip(), name
        description = annotations.get("description", "")
        # the value: the expression's own, or a related one fetched with `query` where the
        # expression's value says nothing (watcher_up = 0 -> the number of folders lost)
        assert "$value" in description or "| value" in description, \
            f"{name}: the description must carry the value"
        # an absent() alert has no instance to name, nor has one on a cluster-wide rule
        if "absent(" not in rule["expr"] and not rule["expr"].startswith("cluster:"):
            assert "$labels.instance" in description, f"{name}: name the instance"
        url = annotations.get("runbook_url", "")
        assert url.startswith(RUNBOOK_BASE), (name, url)
        assert url[len(RUNBOOK_BASE):] in anchors, f"{name}: no section #{url[len(RUNBOOK_BASE):]}"


def test_runbook_has_a_section_per_alert_and_no_orphans():
    headings = re.findall(r"^## (\S+)\s*$", RUNBOOK.read_text(), re.M)
    assert sorted(headings) == sorted({r["alert"] for r in _alert_rules()})


def test_issue_alert_list_is_covered():
    """The alerts issue #4 asks for, by what they look at."""
    exprs = {r["alert"]: r["expr"] for r in _alert_rules()}
    joined = "\n".join(exprs.values())
    up = f"up{{{CONFIG.job_selector}}}"
    for needle in [f"{up} == 0", f"absent({up})",
                   "scribewatch_watcher_up", "instance:scribewatch_job_failures:ratio_rate30m",
                   "instance:scribewatch_jobs_finished:increase30m", "scribewatch_queue_jobs",
                   "scribewatch_oldest_running_job_age_seconds",
                   "instance:scribewatch_realtime_factor:p95_rate1h",
                   "scribewatch_gpu_temperature_celsius",
                   "instance_gpu:scribewatch_gpu_memory_used:ratio",
                   "scribewatch_nvml_up", "instance_role:scribewatch_filesystem_free:ratio",
                   "scribewatch_filesystem_free_bytes", "scribewatch_model_load_failures_total",
                   "scribewatch_ready"]:
        assert needle in joined, needle


def _promtool_cases() -> tuple[dict, dict]:
    """alertname -> severities seen firing; alertname -> number of quiet cases."""
    firing: dict[str, set] = {}
    quiet: dict[str, int] = {}
    for path in TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                name = case["alertname"]
                expected = case.get("exp_alerts") or []
                if not expected:
                    quiet[name] = quiet.get(name, 0) + 1
                for exp in expected:
                    assert set(exp.get("exp_annotations", {})) >= \
                        {"summary", "description", "runbook_url"}, (path.name, name)
                    firing.setdefault(name, set()).add(exp["exp_labels"]["severity"])
    return firing, quiet


def test_every_alert_has_a_firing_and_a_quiet_promtool_case():
    firing, quiet = _promtool_cases()
    for rule in _alert_rules():
        name, severity = rule["alert"], rule["labels"]["severity"]
        assert severity in firing.get(name, set()), f"no case where {name} ({severity}) fires"
        assert quiet.get(name), f"no case where {name} must stay quiet"


def test_promtool_tests_load_the_project_rules_in_a_fixed_order():
    """Recording rules first: without group_eval_order promtool evaluates groups in random
    order, and an alert on a recording rule would lag one step only sometimes (flaky tests)."""
    recording = [g["name"] for g in _groups(PROM / "rules" / "recording.yml")]
    alerting = [g["name"] for g in _groups(PROM / "rules" / "alerts.yml")]
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        assert sorted((path.parent / f).resolve() for f in doc["rule_files"]) == \
            sorted(p.resolve() for p in RULE_FILES), path.name
        order = doc.get("group_eval_order", [])
        assert sorted(order) == sorted(recording + alerting), path.name
        assert order[:len(recording)] == recording, path.name


# -- recording rules ------------------------------------------------------------------------------
def _architecture_rule_names() -> set[str]:
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("## Recording rules", 1)[1]
    names = set()
    for line in section.splitlines():
        m = re.match(r"\|\s*`([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)`(.*?)\|", line)
        if not m:
            continue
        name, rest = m.groups()
        names.add(name)
        quantile = re.search(r":(p\d+)_", name)
        for alt in re.findall(r"`(p\d+)_`", rest):       # "(also `p95_`, `p99_`)"
            names.add(name.replace(f":{quantile.group(1)}_", f":{alt}_"))
    return names


def test_recording_rules_are_exactly_those_of_the_architecture_doc():
    defined = [r["record"] for r in _recording_rules()]
    assert len(defined) == len(set(defined)), "duplicate recording rule"
    assert set(defined) == _architecture_rule_names()


def test_recording_rule_names_follow_level_metric_operations():
    for rule in _recording_rules():
        level, metric, ops = rule["record"].split(":")
        assert level.startswith("instance") or level == "cluster", rule["record"]
        assert metric.startswith("scribewatch_"), rule["record"]
        assert ops, rule["record"]


def test_aggregations_keep_job_and_instance():
    """One Prometheus, many daemons: every `by (...)` and `on (...)` in the rules keeps both;
    the `cluster:` rules (several nodes on one shared store) keep job and cluster instead."""
    for rule in _recording_rules() + _alert_rules():
        expr = rule["expr"]
        keep = ["job", "cluster"] if rule.get("record", "").startswith("cluster:") \
            else ["job", "instance"]
        for kind, labels in re.findall(r"\b(by|on)\s*\(([^)]*)\)", expr):
            names = [x.strip() for x in labels.split(",")]
            assert names[:2] == keep, (rule.get("record") or rule["alert"], expr)
        if re.search(r"\b(sum|max|min|avg|count)\s*\(", expr):
            pytest.fail(f"aggregation without `by`: {expr}")


# -- Alertmanager conventions ---------------------------------------------------------------------
def _walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (k,), k, v
            yield from _walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, path + (i,))


def test_alertmanager_config_conventions():
    cfg = yaml.safe_load((AM / "alertmanager.yml").read_text())
    route = cfg["route"]
    assert {"alertname", "instance"} <= set(route["group_by"])
    for key in ("group_wait", "group_interval", "repeat_interval"):
        assert key in route, key
    matchers = [m for r in route["routes"] for m in r.get("matchers", [])]
    assert 'severity="critical"' in matchers and 'severity="warning"' in matchers

    receivers = {r["name"]: r for r in cfg["receivers"]}
    default = receivers[route["receiver"]]
    assert default["webhook_configs"] and all(h.get("send_resolved")
                                              for h in default["webhook_configs"])
    emails = [e for r in receivers.values() for e in r.get("email_configs", [])]
    assert emails and all("auth_password_file" in e for e in emails)
    # no secret written inline anywhere
    secret_keys = {"auth_password", "smtp_auth_password", "password", "credentials",
                   "bearer_token", "auth_secret", "smtp_auth_secret"}
    inline = [p for p, k, _ in _walk(cfg) if k in secret_keys]
    assert not inline, inline

    # every template referenced is defined in alertmanager/templates/
    defined = set(re.findall(r'define "([^"]+)"', "".join(
        t.read_text() for t in (AM / "templates").glob("*.tmpl"))))
    used = set(re.findall(r'template "([^"]+)"', (AM / "alertmanager.yml").read_text()))
    assert used and used <= defined, used - defined

    # inhibition: ScribewatchDown silences the rest of its instance; names used exist
    inhibit = cfg["inhibit_rules"]
    assert any(r["source_matchers"] == ['alertname="ScribewatchDown"']
               and r["equal"] == ["instance"]
               for r in inhibit)
    alert_names = {r["alert"] for r in _alert_rules()}
    for rule in inhibit:
        for m in rule["source_matchers"] + rule["target_matchers"]:
            for name in re.findall(r"Scribewatch\w+", m):
                assert name in alert_names, name


# -- a real Alertmanager ---------------------------------------------------------------------------
def _alert(name, instance, severity, **extra):
    return {"labels": {"alertname": name, "instance": instance, "job": "scribewatch",
                       "severity": severity, **extra},
            "annotations": {"summary": f"{name} on {instance}"}}


def test_alertmanager_inhibits_and_routes_by_severity(tmp_path):
    require_binary("prometheus-alertmanager")
    a, b = "a:9847", "b:9847"
    # (alert, expected: None = delivered, else the alertname that inhibits it)
    cases = [
        (_alert("ScribewatchDown", a, "critical"), None),
        (_alert("ScribewatchJobFailureRatioHigh", a, "warning"), "ScribewatchDown"),
        (_alert("ScribewatchGpuTemperatureHigh", a, "critical", gpu="0"), "ScribewatchDown"),
        (_alert("ScribewatchJobFailureRatioHigh", b, "warning"), None),
        (_alert("ScribewatchGpuTemperatureHigh", b, "critical", gpu="0"), None),
        (_alert("ScribewatchGpuTemperatureHigh", b, "warning", gpu="0"),
         "ScribewatchGpuTemperatureHigh"),
        (_alert("ScribewatchGpuTemperatureHigh", b, "warning", gpu="1"), None),
        (_alert("ScribewatchFilesystemNearlyFull", b, "critical", role="store"), None),
        (_alert("ScribewatchFilesystemNearlyFull", b, "warning", role="store"),
         "ScribewatchFilesystemNearlyFull"),
        (_alert("ScribewatchFilesystemNearlyFull", b, "warning", role="output"), None),
        (_alert("ScribewatchWatcherDown", b, "critical"), None),
        (_alert("ScribewatchNotReady", b, "critical"), "ScribewatchWatcherDown"),
        (_alert("ScribewatchQueueStalled", b, "critical"), "ScribewatchWatcherDown"),
    ]

    def key(labels: dict) -> tuple:
        return tuple(sorted(labels.items()))

    with WebhookReceiver() as hook, start_alertmanager(tmp_path / "am", webhook_url=hook.url) as am:
        am.post_alerts([alert for alert, _ in cases])

        def all_listed():
            listed = {key(x["labels"]): x for x in am.alerts()}
            return listed if len(listed) == len(cases) else None
        deadline = time.monotonic() + 20
        while not (listed := all_listed()):
            assert time.monotonic() < deadline, am.alerts()
            time.sleep(0.2)

        by_fingerprint = {x["fingerprint"]: x["labels"]["alertname"] for x in listed.values()}
        for alert, inhibitor in cases:
            status = listed[key(alert["labels"])]["status"]
            if inhibitor is None:
                assert status["state"] == "active" and not status["inhibitedBy"], (alert, status)
            else:
                assert status["state"] == "suppressed", (alert, status)
                assert [by_fingerprint[f] for f in status["inhibitedBy"]] == [inhibitor], \
                    (alert, status)

        # Delivered: exactly the active ones, each through its severity's receiver.
        expected = {(("webhook-critical" if alert["labels"]["severity"] == "critical"
                      else "webhook"),
                     key(alert["labels"])) for alert, inhibitor in cases if inhibitor is None}

        def delivered():
            return {(payload["receiver"], key(x["labels"]))
                    for _, payload in hook.notifications for x in payload["alerts"]}
        deadline = time.monotonic() + 20
        while not expected <= delivered():
            assert time.monotonic() < deadline, (expected - delivered(), hook.notifications)
            time.sleep(0.2)
        # > group_wait/group_interval: anything inhibited would be here by now
        time.sleep(2)
        assert delivered() == expected
