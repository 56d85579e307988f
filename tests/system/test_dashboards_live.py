"""Every panel query of every dashboard returns data from a real stack.

A real daemon (with the fake NVML and CUDA faked at the model boundary, so the GPU families
and the daemon's GPU plan exist) transcribes real files — good ones,
broken ones and one that is skipped — while a real Prometheus scrapes it every second and
evaluates the project's recording and alerting rules. Then every target expression of every
dashboard, with Grafana's variables substituted as Grafana does when the job and the instance
are selected in their drop-downs, is sent to that Prometheus: each must be accepted and return
at least one series (so every selector, recording rules included, keeps `job` and `instance`).

An empty result means a panel that shows "No data" on a working daemon: a wrong metric or label
name, a recording rule that does not exist or never matches, a filter that excludes everything.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.harness import require_binary, wait_for
from tests.harness.dashboards import DASHBOARD_FILES
from tests.harness.dashboards import targets as _targets
from tests.harness.http_recorder import HttpRecorder

pytestmark = pytest.mark.slow

GOOD = ("good1.flac", "good2.flac")
EXPECTED = {
    "good1.flac": ("succeeded", None),
    "good2.flac": ("succeeded", None),
    "Movie.flac": ("skipped", "subtitle_exists"),
    "empty.mp3": ("failed", "empty_file"),
    "notmedia.mp4": ("failed", "not_media"),
    "shopping.mkv": ("failed", "not_media"),
}


def grafana_regex(*values: str) -> str:
    """What Grafana puts for a multi-value variable (`$job`, `$instance`) with values selected:
    the values regex-escaped, joined in a group, and escaped once more for the PromQL string
    literal. ("All" would be the variables' allValue, `.+`.)"""
    escaped = "|".join(re.escape(v) for v in values)
    return ("(" + escaped + ")").replace("\\", "\\\\")


def substitute(expr: str, job_regex: str, instance_regex: str, window: str) -> str:
    for name, value in (("$__rate_interval", window), ("$__interval", "1s"),
                        ("$__range", window)):
        expr = expr.replace(name, value)
    return expr.replace("$instance", instance_regex).replace("$job", job_regex)


def test_every_panel_query_returns_data(daemon_factory, media, tmp_path, request):
    require_binary("prometheus")
    from tests.harness import stack

    # Two fake GPUs that the daemon plans its workers on (CUDA faked at the model boundary:
    # the models run on the CPU), and one CUDA out-of-memory error injected into the first
    # job, so the GPU plan's and the out-of-memory panels have series too.
    # A webhook after each job: the notification panels show the configured target only.
    oom = tmp_path / "oom"
    oom.write_text("1")
    hook = HttpRecorder()
    hook.answer("POST", "/done", 200)
    hook.__enter__()
    request.addfinalizer(lambda: hook.__exit__(None, None, None))
    d = daemon_factory({"max_attempts": 1, "device": "cuda", "model": "tiny.en",
                        "on_finished": [hook.url + "/done"], "notify_batch_seconds": 1},
                       fake_cuda=True, env={"FAKE_NVML_GPUS": "2", "FAKE_CUDA_DEVICES": "2",
                                            "FAKE_CUDA_OOM": str(oom)})
    d.start()
    address = f"127.0.0.1:{d.port}"
    with stack.start_prometheus(tmp_path / "prom", targets=[address]) as prom:
        started = time.monotonic()
        prom.wait_for_targets_up(30)
        # a few scrapes before any job, so rates and increases see the counters go up
        prom.wait_for(
            f'count_over_time(scribewatch_jobs_total{{instance="{address}"}}[1m]) >= 3', 30)

        src = tmp_path / "src"
        src.mkdir()
        for name in GOOD + ("Movie.flac",):
            shutil.copy(media / "jfk.flac", src / name)
        (src / "empty.mp3").write_bytes(b"")
        (src / "notmedia.mp4").write_text("this is a shopping list, not a film\n" * 20)
        (src / "shopping.mkv").write_text("eggs, milk, bread\n" * 40)
        # the subtitle goes first: Movie.flac must find it when it is detected
        (d.watch / "Movie.eng.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
        for p in sorted(src.iterdir()):
            p.rename(d.watch / p.name)

        jobs = d.wait_jobs(len(EXPECTED), timeout=120)
        got = {Path(j["path"]).name: (j["status"], j["reason"]) for j in jobs}
        assert got == EXPECTED

        # The rules have evaluated over scrapes that saw every job: the finished-jobs guard
        # counts all five succeeded + failed jobs, and the failure-ratio alert (3 of 5 failed,
        # over its 25 % with at least 5 jobs) is pending (its `for:` is minutes).
        prom.wait_for(
            f'instance:scribewatch_jobs_finished:increase30m{{instance="{address}"}} >= 5', 30)
        prom.wait_for(
            f'ALERTS{{alertname="ScribewatchJobFailureRatioHigh", instance="{address}"}}', 30)

        # `$__range` / `$__rate_interval`: the whole test so far, like a dashboard opened on it.
        window = f"{int(time.monotonic() - started) + 10}s"
        job_regex, instance_regex = grafana_regex("scribewatch"), grafana_regex(address)
        queries = []
        for path in DASHBOARD_FILES:
            dashboard = json.loads(path.read_text())
            for panel, target in _targets(dashboard):
                queries.append((f"{dashboard['uid']} / {panel['title']} / {target['refId']}",
                                substitute(target["expr"], job_regex, instance_regex, window)))
        assert len(queries) >= 50

        # Recording rules and scrapes run every second: give a series that is a tick late a
        # few seconds, then report everything that is still empty.
        results: dict[str, list] = {}

        def all_have_data():
            for where, expr in queries:
                if not results.get(where):
                    results[where] = prom.query(expr)      # raises on a PromQL error
            return all(results.values())

        try:
            wait_for(all_have_data, 20, 1.0, "every panel query to return data")
        except AssertionError:
            empty = [f"{where}:\n    {expr}" for where, expr in queries if not results[where]]
            pytest.fail(f"{len(empty)} of {len(queries)} panel queries returned no data:\n"
                        + "\n".join(empty))

        # The variables: Grafana asks for label_values(scribewatch_build_info, job), then
        # label_values(scribewatch_build_info{job=~"$job"}, instance).
        jobs = prom._get_json("/api/v1/label/job/values?match[]=scribewatch_build_info")
        assert jobs["data"] == ["scribewatch"]
        match = urllib.parse.quote(f'scribewatch_build_info{{job=~"{job_regex}"}}')
        values = prom._get_json(f"/api/v1/label/instance/values?match[]={match}")
        assert values["data"] == [address]

        # Spot checks that the data is the right data, not just some data.
        def one(where_prefix: str) -> list:
            return next(r for w, r in results.items() if w.startswith(where_prefix))

        outcomes = {r["metric"]["outcome"]: float(r["value"][1])
                    for r in one("scribewatch-overview / Files in time range /")}
        # increase() extrapolates to the window's edges: on a slow, loaded machine a count of 3
        # can read as up to 4. The panels show the right labels at about the right counts.
        def about(got: dict, expected: dict) -> bool:
            return set(got) == set(expected) and all(
                expected[k] <= got[k] <= expected[k] + 1.5 for k in expected)

        assert about(outcomes, {"succeeded": 2.0, "failed": 3.0, "skipped": 1.0}), outcomes
        reasons = {r["metric"]["reason"]: float(r["value"][1])
                   for r in one("scribewatch-overview / Failures in time range, by reason /")}
        assert about(reasons, {"empty_file": 1.0, "not_media": 2.0}), reasons
        gpus = {r["metric"]["gpu"] for r in one("scribewatch-gpu-host / GPU temperature /")}
        assert gpus == {"0", "1"}
        alerts = one("scribewatch-overview / Alerts firing and pending /")
        assert {a["metric"]["alertname"] for a in alerts} >= {"ScribewatchJobFailureRatioHigh"}
        assert all(r["metric"]["instance"] == address
                   for r in one("scribewatch-overview / Scrape up /"))

    assert d.stop() == 0
