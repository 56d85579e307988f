"""Real Prometheus and Alertmanager processes on loopback, for tests.

Each process gets its own temp folder (config, data, log), listens on 127.0.0.1 only, is
started from the project's own files (`prometheus/`, `alertmanager/`) with only addresses,
ports and timings overridden, and is always stopped (context manager, `.stop()`, and an atexit
safety net). Every wait is bounded.

    from tests.harness.stack import WebhookReceiver, start_alertmanager, start_prometheus

    with WebhookReceiver() as hook, \\
            start_alertmanager(tmp / "am", webhook_url=hook.url) as am, \\
            start_prometheus(tmp / "prom", targets=[daemon_address],
                             alertmanagers=[am.address]) as prom:
        prom.wait_for_targets_up()
        prom.query("up")                       # -> [{"metric": {...}, "value": [ts, "1"]}]
        prom.value('sum(up{job="scribewatch"})')   # -> 1.0 (or None: empty result)

Only this module starts these processes; tests never need `subprocess` for them.
"""

from __future__ import annotations

import atexit
import copy
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from tests.harness import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO / "alertmanager" / "alertmanager.yml"
SCRAPE_JOB = "scribewatch"

_running: "set[_Process]" = set()




def _binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(f"none of {names} on PATH (apt-get install prometheus "
                            "prometheus-alertmanager)")


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


# -- processes ------------------------------------------------------------------------------
class _Process:
    """A server process with its own folder; `url` is its loopback base URL."""

    name = "process"

    def __init__(self, workdir: Path, port: int):
        self.dir = workdir
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.url = f"http://{self.address}"
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def _start(self, argv: list[str], timeout: float) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=self.dir, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _running.add(self)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return self._get("/-/ready")[0] == 200
            except OSError:
                return False
        wait_for(ready, timeout, 0.1, f"{self.name} /-/ready on {self.address}")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout` s. Safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if hasattr(self, "_log") and not self._log.closed:
            self._log.close()
        _running.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _get(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str):
        """GET an API path (e.g. "/api/v1/label/instance/values") and decode the JSON."""
        status, body = self._get(path)
        if status != 200:
            raise RuntimeError(f"{self.name} GET {path} -> {status}: {body[:500]!r}")
        return json.loads(body)

    _get_json = get_json


class Prometheus(_Process):
    name = "prometheus"

    def query(self, expr: str) -> list[dict]:
        """Instant query; the `result` list of the API (raises on a PromQL error)."""
        data = self._get_json("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return data["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The value of a query with at most one series (None when the result is empty)."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise ValueError(f"{expr!r} returned {len(result)} series")
        return float(result[0]["value"][1])

    def alerts(self) -> list[dict]:
        """Active (pending and firing) alerts, as /api/v1/alerts lists them."""
        return self._get_json("/api/v1/alerts")["data"]["alerts"]

    def rules(self) -> list[dict]:
        return self._get_json("/api/v1/rules")["data"]["groups"]

    def targets(self) -> list[dict]:
        return self._get_json("/api/v1/targets")["data"]["activeTargets"]

    def wait_for_targets_up(self, timeout: float = 30) -> list[dict]:
        def up():
            targets = self.targets()
            return targets if targets and all(t["health"] == "up" for t in targets) else None
        return wait_for(up, timeout, 0.2, "all Prometheus targets up")

    def wait_for(self, expr: str, timeout: float, interval: float = 0.5):
        """Wait until `expr` returns a non-empty result; return it."""
        return wait_for(lambda: self.query(expr), timeout, interval, f"PromQL {expr!r}")


class Alertmanager(_Process):
    name = "alertmanager"

    def alerts(self) -> list[dict]:
        """Alerts as /api/v2/alerts lists them, with `status.state` (active / suppressed) and
        `status.inhibitedBy`."""
        return self._get_json("/api/v2/alerts")

    def post_alerts(self, alerts: list[dict]) -> None:
        """Push alerts as Prometheus would: [{"labels": {...}, "annotations": {...}}, ...]."""
        req = urllib.request.Request(self.url + "/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            if r.status != 200:
                raise RuntimeError(f"alertmanager POST /api/v2/alerts -> {r.status}")


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
        min(parse_duration(scrape_interval), parse_duration(cfg["global"].get("scrape_timeout", "10s"))))
    for job in cfg.get("scrape_configs", []):
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        if targets is not None and job["job_name"] == SCRAPE_JOB:
            job.pop("file_sd_configs", None)
            job["static_configs"] = [{"targets": list(targets)}]

    if alertmanagers is None:
        cfg.pop("alerting", None)
    else:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}

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

    cfg["templates"] = [t if os.path.isabs(t) else str(base_dir / t) for t in cfg.get("templates", [])]
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


def start_prometheus(
    workdir: Path,
    *,
    port: int | None = None,
    timeout: float = 30,
    extra_args: tuple[str, ...] = (),
    **overrides,
) -> Prometheus:
    """Start a real Prometheus on 127.0.0.1; `overrides` go to `prometheus_config`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = prometheus_config(workdir, **overrides)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    prom = Prometheus(workdir, port or free_port())
    prom.config_path = config_path
    prom._start([
        _binary("prometheus"),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={prom.address}",
        f"--web.external-url={prom.url}/",     # links in alerts point at loopback too
        "--web.enable-lifecycle",
        *extra_args,
    ], timeout)
    return prom


def start_alertmanager(
    workdir: Path,
    *,
    port: int | None = None,
    timeout: float = 30,
    extra_args: tuple[str, ...] = (),
    **overrides,
) -> Alertmanager:
    """Start a real Alertmanager on 127.0.0.1 with no cluster port; `overrides` go to
    `alertmanager_config`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = alertmanager_config(**overrides)
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    am = Alertmanager(workdir, port or free_port())
    am.config_path = config_path
    am._start([
        _binary("prometheus-alertmanager", "alertmanager"),
        f"--config.file={config_path}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={am.address}",
        f"--web.external-url={am.url}/",
        "--cluster.listen-address=",          # no gossip port: a single, private instance
        *extra_args,
    ], timeout)
    return am


# -- a webhook receiver ---------------------------------------------------------------------
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 in a thread that records Alertmanager webhook payloads.

    `notifications` is the list of (path, payload) received so far; `wait_for(predicate)`
    returns the first payload the predicate accepts.
    """

    def __init__(self):
        self._lock = threading.Condition()
        self._received: list[tuple[str, dict]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"_raw": body.decode(errors="replace")}
                with receiver._lock:
                    receiver._received.append((self.path, payload))
                    receiver._lock.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):   # keep test output clean
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="webhook-receiver")
        self._thread.start()

    @property
    def notifications(self) -> list[tuple[str, dict]]:
        with self._lock:
            return list(self._received)

    def wait_for(self, predicate, timeout: float, what: str = "a matching notification") -> dict:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for _, payload in self._received:
                    if predicate(payload):
                        return payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; "
                                       f"received: {json.dumps(self._received)[:3000]}")
                self._lock.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_running):
        process.stop()
