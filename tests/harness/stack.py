"""Real Prometheus and Alertmanager processes on loopback, for tests.

Each process gets its own temp folder (config, data, log), listens on 127.0.0.1 only, is
started from the project's own files (`prometheus/`, `alertmanager/`) with only addresses,
ports and timings overridden, and is always stopped (context manager, `.stop()`, and an atexit
safety net). Every wait is bounded.

    from tests.harness.stack import start_alertmanager, start_prometheus
    from tests.harness.webhook import WebhookReceiver

    with WebhookReceiver() as hook, \\
            start_alertmanager(tmp / "am", webhook_url=hook.url) as am, \\
            start_prometheus(tmp / "prom", targets=[daemon_address],
                             alertmanagers=[am.address]) as prom:
        prom.wait_for_targets_up()
        prom.query("up")                       # -> [{"metric": {...}, "value": [ts, "1"]}]
        prom.value('sum(up{job="scribewatch"})')   # -> 1.0 (or None: empty result)

Only this module starts these processes; tests never need `subprocess` for them. The configs
they run are built by `tests.harness.stack_config`; the webhook receiver is
`tests.harness.webhook`.
"""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from tests.harness import free_port, wait_for
from tests.harness.stack_config import alertmanager_config, prometheus_config

# Every process started and not yet stopped, for the atexit safety net.
_running: "set[_Process]" = set()


def _binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(f"none of {names} on PATH (apt-get install prometheus "
                            "prometheus-alertmanager)")


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


# -- starting them ---------------------------------------------------------------------------
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


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_running):
        process.stop()
