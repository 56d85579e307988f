"""The project's own Prometheus and Alertmanager configs, rewritten for a test on loopback.

`prometheus_config` and `alertmanager_config` load `prometheus/prometheus.yml` and
`alertmanager/alertmanager.yml` (or a given config) and override only addresses, ports and
timings; `scale_rules` puts a rule file on a shorter clock. `tests.harness.stack` starts the
processes with them.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import yaml

from tests.harness import REPO

PROMETHEUS_DIR = REPO / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO / "alertmanager" / "alertmanager.yml"
SCRAPE_JOB = "scribewatch"


# -- durations ------------------------------------------------------------------------------
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = r"(?:\d+(?:ms|s|m|h|d|w|y))+"


def parse_duration(text: str) -> float:
    """Prometheus duration ("1h30m", "15s", "500ms") -> seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    ms = max(0, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def scale_rules(text: str, factor: float, min_range: float = 0.0) -> str:
    """A copy of a Prometheus rule file with every duration multiplied by `factor`.

    Scaled: `for:`, range selectors `[5m]` (and subquery ranges/steps `[1h:1m]`) and `offset`
    in `expr`. Range selectors never go below `min_range` seconds (rate() needs a few scrapes
    in its window). Rule and alert names (e.g. `...:increase30m`), labels, annotations and
    thresholds are untouched: the rules keep their meaning, only on a shorter clock.
    """
    def ranged(match: re.Match) -> str:
        inner = match.group(1)
        scaled = [format_duration(max(parse_duration(p) * factor, min_range)) if p else p
                  for p in inner.split(":")]
        return "[" + ":".join(scaled) + "]"

    def offset(match: re.Match) -> str:
        return "offset " + format_duration(parse_duration(match.group(1)) * factor)

    doc = yaml.safe_load(text)
    for group in doc.get("groups", []):
        if "interval" in group:
            group["interval"] = format_duration(parse_duration(group["interval"]) * factor)
        for rule in group.get("rules", []):
            if "for" in rule:
                rule["for"] = format_duration(parse_duration(rule["for"]) * factor)
            expr = rule["expr"]
            expr = re.sub(rf"\[({_DURATION}(?::(?:{_DURATION})?)?)\]", ranged, expr)
            expr = re.sub(rf"offset\s+({_DURATION})", offset, expr)
            rule["expr"] = expr
    return yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=1000)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so a scaled copy reads like the original."""


_BlockDumper.add_representer(
    str, lambda dumper, s: dumper.represent_scalar(
        "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


# -- configuration --------------------------------------------------------------------------
def prometheus_config(
    workdir: Path,
    *,
    config: str | dict | Path | None = None,
    targets: list[str] | None = None,
    alertmanagers: list[str] | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    rule_time_scale: float | None = None,
    min_range: str = "4s",
) -> dict:
    """The project's prometheus.yml (or `config`) with test overrides, as a dict.

    targets: replace the scribewatch job's targets (host:port). alertmanagers: replace the
    Alertmanager targets; None removes alerting altogether (nothing is sent anywhere).
    rule_files are made absolute; with `rule_time_scale` they are scaled copies written into
    `workdir/rules/` (see `scale_rules`; ranges never shorter than `min_range`).
    """
    base_dir = PROMETHEUS_DIR
    if config is None:
        config = PROMETHEUS_CONFIG
    if isinstance(config, Path):
        base_dir = config.parent
        config = config.read_text()
    cfg = yaml.safe_load(config) if isinstance(config, str) else copy.deepcopy(config)

    cfg.setdefault("global", {})
    cfg["global"]["scrape_interval"] = scrape_interval
    cfg["global"]["evaluation_interval"] = evaluation_interval
    # the timeout must not exceed the interval
    cfg["global"]["scrape_timeout"] = format_duration(
        min(parse_duration(scrape_interval),
            parse_duration(cfg["global"].get("scrape_timeout", "10s"))))
    for job in cfg.get("scrape_configs", []):
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        if targets is not None and job["job_name"] == SCRAPE_JOB:
            job.pop("file_sd_configs", None)
            job["static_configs"] = [{"targets": list(targets)}]

    if alertmanagers is None:
        cfg.pop("alerting", None)
    else:
        targets = [{"targets": list(alertmanagers)}]
        cfg["alerting"] = {"alertmanagers": [{"static_configs": targets}]}

    rule_files = []
    for pattern in cfg.get("rule_files", []):
        path = Path(pattern) if os.path.isabs(pattern) else base_dir / pattern
        for src in sorted(path.parent.glob(path.name)):
            if rule_time_scale is None:
                rule_files.append(str(src))
            else:
                dst = workdir / "rules" / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_text(scale_rules(src.read_text(), rule_time_scale,
                                           parse_duration(min_range)))
                rule_files.append(str(dst))
    cfg["rule_files"] = rule_files
    return cfg


def alertmanager_config(
    *,
    config: str | dict | Path | None = None,
    webhook_url: str | None = None,
    group_wait: str | None = "1s",
    group_interval: str | None = "1s",
    repeat_interval: str | None = "1h",
) -> dict:
    """The project's alertmanager.yml (or `config`) with test overrides, as a dict.

    webhook_url: every webhook receiver's URL (all of them, so routing is kept as it is).
    Email configs are removed (a test must never talk to an SMTP server), and so are the
    global SMTP settings. Timings replace the route tree's wherever they are set (None keeps).
    Template paths are made absolute.
    """
    base_dir = ALERTMANAGER_CONFIG.parent
    if config is None:
        config = ALERTMANAGER_CONFIG
    if isinstance(config, Path):
        base_dir = config.parent
        config = config.read_text()
    cfg = yaml.safe_load(config) if isinstance(config, str) else copy.deepcopy(config)

    cfg["templates"] = [t if os.path.isabs(t) else str(base_dir / t)
                        for t in cfg.get("templates", [])]
    for key in [k for k in cfg.get("global", {}) if k.startswith("smtp_")]:
        del cfg["global"][key]
    for receiver in cfg.get("receivers", []):
        receiver.pop("email_configs", None)
        if webhook_url is not None:
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = webhook_url
        for key in [k for k in receiver if k.endswith("_configs") and k != "webhook_configs"]:
            del receiver[key]     # no traffic to chat services either

    timings = {"group_wait": group_wait, "group_interval": group_interval,
               "repeat_interval": repeat_interval}

    def retime(route: dict, top: bool) -> None:
        for key, value in timings.items():
            if value is not None and (top or key in route):
                route[key] = value
        for child in route.get("routes", []):
            retime(child, False)
    retime(cfg["route"], True)
    return cfg
