"""The status page as the real server serves it (a StatusSource and a JobControl the test
controls): the HTML and its headers, /api/status's page fields, and the retry endpoint with its
cross-site guard, auth and metric. The page in a real browser: tests/system/test_status_page.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families as parse_text

from scribewatch.pipeline.contract import DayFigures, FailedJob, QueuedJob
from scribewatch.web import status_page
from tests.harness import REPO
from tests.harness.status import Source, basic, request, snapshot

PASSWORD = "status page password"
USERS = {"viewer": "sha256:" + hashlib.sha256(PASSWORD.encode()).hexdigest()}
ACTION = {"X-Scribewatch-Action": "retry"}


class Control:
    """A JobControl that answers what the test says and records the ids it was asked."""

    def __init__(self, result: str = "queued"):
        self.result, self.asked = result, []

    def retry_failed_job(self, job_id: int) -> str:
        self.asked.append(job_id)
        return self.result


def retry_counts(exp) -> dict[str, float]:
    _, _, body = request(exp.url + "/metrics", headers=basic("viewer", PASSWORD))
    [family] = [f for f in parse_text(body.decode()) if f.name == "scribewatch_retry_requests"]
    return {s.labels["result"]: s.value for s in family.samples if s.name.endswith("_total")}


# -- the page ------------------------------------------------------------------------------
def test_the_page_is_one_self_contained_html_file_under_a_strict_policy(serve):
    status, headers, body = request(serve().url + "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    html = body.decode()
    assert html == (REPO / "web" / "status_page.html").read_text()
    # No external assets: no script or stylesheet by URL, no absolute links in the file.
    assert not re.search(r"<script[^>]+src|<link[^>]+stylesheet|https?://", html)
    assert html.count("<script>") == 1 and html.count("<style>") == 1
    csp = headers["Content-Security-Policy"]
    script = html.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in csp       # only this script runs
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Frame-Options"] == "DENY"
    # Untrusted text goes in as text: the script never writes HTML.
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script)


def test_the_page_is_behind_the_same_auth(serve):
    exp = serve(basic_auth_users=USERS)
    assert request(exp.url + "/")[0] == 401
    assert request(exp.url + "/", headers=basic("viewer", "wrong"))[0] == 401
    assert request(exp.url + "/", headers=basic("viewer", PASSWORD))[0] == 200
    assert request(exp.url + "/readyz")[0] == 200


def test_api_status_carries_what_the_page_lists(serve):
    now = time.time()
    source = Source(snapshot(
        queue_next=(QueuedJob(7, "/media/TV/Show/e1.mkv", "/media", now - 30),
                    QueuedJob(9, "/media/b.mp3", "/media", now - 20, retry_at=now + 40)),
        recent_failures=(FailedJob(4, "/media/x.mp3", "/media", "not_media", "probe",
                                   "/media/x.mp3: not a media file", now - 60),),
        today=DayFigures(now - 3600, {"succeeded": 3, "failed": 1}, 600.0, 90.0)))
    exp = serve(source, grafana_url="http://grafana.lan:3000/")
    doc = json.loads(request(exp.url + "/api/status")[2])
    assert source.details[-1] is True and source.details.count(True) == 1
    assert doc["running"][0]["stage"] is None
    assert [q["id"] for q in doc["queue_next"]] == [7, 9]
    assert doc["queue_next"][1]["retry_at"] == pytest.approx(now + 40)
    assert doc["queue_next"][0]["path"] == "/media/TV/Show/e1.mkv"
    [failure] = doc["recent_failures"]
    assert (failure["id"], failure["reason"], failure["stage"]) == (4, "not_media", "probe")
    assert doc["today"]["counts"] == {"succeeded": 3, "failed": 1, "skipped": 0}
    assert doc["today"]["realtime_factor"] == 0.15
    assert doc["links"] == {"metrics": "metrics", "grafana": [
        {"title": "Overview", "url": "http://grafana.lan:3000/d/scribewatch-overview"},
        {"title": "Pipeline", "url": "http://grafana.lan:3000/d/scribewatch-pipeline"},
        {"title": "GPU & host", "url": "http://grafana.lan:3000/d/scribewatch-gpu-host"},
        {"title": "Cluster", "url": "http://grafana.lan:3000/d/scribewatch-cluster"}]}
    # Scrapes never ask for them (they would sort the queue each time).
    calls = len(source.details)
    request(exp.url + "/metrics")
    assert len(source.details) > calls and source.details.count(True) == 1


def test_no_grafana_links_without_an_address(serve):
    doc = json.loads(request(serve().url + "/api/status")[2])
    assert doc["links"] == {"metrics": "metrics", "grafana": []}
    assert doc["today"] is None and doc["queue_next"] == [] and doc["recent_failures"] == []


def test_the_dashboards_named_are_the_generated_ones():
    files = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
    generated = {(d["uid"], d["title"].removeprefix("scribewatch / "))
                 for d in (json.loads(p.read_text()) for p in files)}
    assert set(status_page.DASHBOARDS) == generated


# -- retry ---------------------------------------------------------------------------------
def test_retry_reaches_the_daemon_and_says_what_came_of_it(serve):
    control = Control()
    exp = serve(job_control=control)
    url = exp.url + "/api/jobs/42/retry"
    status, headers, body = request(url, "POST", ACTION)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"id": 42, "result": "queued"}
    control.result = "not_failed"
    assert request(url, "POST", ACTION)[0] == 409
    control.result = "not_found"
    assert request(exp.url + "/api/jobs/9/retry", "POST", ACTION)[0] == 404
    assert control.asked == [42, 42, 9]
    assert retry_counts(exp) == {"queued": 1, "not_failed": 1, "not_found": 1, "refused": 0}


@pytest.mark.parametrize("headers, why", [
    ({}, "X-Scribewatch-Action"),                                  # a form, a simple fetch
    ({**ACTION, "Sec-Fetch-Site": "cross-site"}, "cross-site"),
    ({**ACTION, "Sec-Fetch-Site": "same-site"}, "same-site"),      # another port, same host
    ({**ACTION, "Sec-Fetch-Site": "none"}, "none"),
    ({**ACTION, "Origin": "http://evil.example"}, "another origin"),   # an older browser
    ({**ACTION, "Origin": "null"}, "another origin"),              # a sandboxed frame
])
def test_cross_site_retries_are_refused_before_anything_else(serve, headers, why):
    control = Control()
    exp = serve(job_control=control, basic_auth_users=USERS)
    status, _, body = request(exp.url + "/api/jobs/42/retry", "POST",
                              {**headers, **basic("viewer", PASSWORD)})
    assert status == 403 and why in json.loads(body)["error"]
    assert control.asked == []
    assert retry_counts(exp)["refused"] == 1


def test_same_origin_browsers_and_scripts_may_retry(serve):
    control = Control()
    exp = serve(job_control=control)
    url = exp.url + "/api/jobs/1/retry"
    assert request(url, "POST", {**ACTION, "Sec-Fetch-Site": "same-origin",
                                 "Origin": exp.url})[0] == 200
    assert request(url, "POST", {**ACTION, "Origin": exp.url})[0] == 200   # no Fetch Metadata
    # Behind a proxy that rewrites Host, the browser's Sec-Fetch-Site still tells the truth.
    assert request(url, "POST", {**ACTION, "Sec-Fetch-Site": "same-origin",
                                 "Origin": "https://subs.example"})[0] == 200
    assert len(control.asked) == 3


def test_retry_needs_auth_when_auth_is_configured(serve):
    control = Control()
    exp = serve(job_control=control, basic_auth_users=USERS)
    url = exp.url + "/api/jobs/5/retry"
    assert request(url, "POST", ACTION)[0] == 401
    assert request(url, "POST", {**ACTION, **basic("viewer", "wrong")})[0] == 401
    assert request(url, "POST", {**ACTION, **basic("viewer", PASSWORD)})[0] == 200
    assert control.asked == [5]


def test_retry_answers_only_post_and_grants_no_preflight(serve):
    exp = serve(job_control=Control())
    url = exp.url + "/api/jobs/5/retry"
    for method in ("GET", "PUT", "OPTIONS"):
        status, headers, _ = request(url, method)
        assert status == 405 and headers["Allow"] == "POST"
        assert "Access-Control-Allow-Origin" not in headers
    assert request(exp.url + "/metrics", "POST", ACTION)[0] == 405
    assert request(exp.url + "/api/jobs/x/retry", "POST", ACTION)[0] == 405


def test_without_a_job_control_there_is_nothing_to_retry(serve):
    exp = serve()
    status, headers, _ = request(exp.url + "/api/jobs/5/retry", "POST", ACTION)
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_cross_site_rules():
    h = "x-scribewatch-action"
    assert status_page.cross_site({h: "retry"}) is None                          # curl
    assert status_page.cross_site({h: "retry", "sec-fetch-site": "same-origin"}) is None
    assert status_page.cross_site({h: "retry", "origin": "http://a:1", "host": "a:1"}) is None
    assert status_page.cross_site({h: "retry", "origin": "http://A:1", "host": "a:1"}) is None
    assert status_page.cross_site({h: "retry", "origin": "http://a:2", "host": "a:1"})
    assert status_page.cross_site({h: ""})
    assert status_page.cross_site({"sec-fetch-site": "same-origin"})
