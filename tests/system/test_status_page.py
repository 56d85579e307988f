"""The status page in a real headless browser (Debian's chromium driven by Playwright) against a
real daemon with the real model, behind basic auth: it follows a job from the queue to done by
itself, shows a bad file's failure, refuses another site's retry, retries it when asked (the
store agrees), and lays out without overflow at desktop and phone widths. Then the real server
alone under TLS with a snapshot the test sets, to check each field's rendering exactly.

`UPDATE_STATUS_SCREENSHOT=1` also writes docs/status-page.png from the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from scribewatch.pipeline.contract import DayFigures, FailedJob, QueuedJob, RunningJob
from tests.harness import REPO, SHARED_MEDIA, free_port, require_binary, status, wait_for
from tests.harness import media as gen
from tests.harness.browser import chromium, layout_problems, png_size, require_chromium
from tests.harness.status import basic

pytestmark = pytest.mark.slow   # the first test runs the real model; the second a browser

USER, PASSWORD = "viewer", "page viewer's password"
USERS = {USER: "sha256:" + hashlib.sha256(PASSWORD.encode()).hexdigest()}
GRAFANA = "http://grafana.example:3000"
BAD_NAME = "<b onclick=alert(1)>Shopping list.mp3"   # markup in a name stays text on the page
DOCS_SHOT = REPO / "docs" / "status-page.png"
UPDATE_SHOT = os.environ.get("UPDATE_STATUS_SCREENSHOT") == "1"

# Each table's rows as the page shows them: job id, file name, each cell's text.
_ROWS = """(id) => {
  const t = document.getElementById(id);
  if (t.hidden) return [];
  return [...t.tBodies[0].rows].map((tr) => ({
    id: Number(tr.dataset.job), file: tr.cells[0].firstChild.textContent,
    cells: [...tr.cells].map((c) => c.textContent)}));
}"""

# What a hostile page on another origin tries: a simple POST (allowed to leave the browser, but
# without the page's header) and one with the header (needs a CORS preflight, which fails).
_ATTACK = """async (url) => {
  const out = {};
  try {
    await fetch(url, {method: "POST", mode: "no-cors", credentials: "include"});
    out.plain = "sent";
  } catch (e) { out.plain = "blocked " + e.name; }
  try {
    const r = await fetch(url, {method: "POST", credentials: "include",
                                headers: {"X-Scribewatch-Action": "retry"}});
    out.header = "answered " + r.status;
  } catch (e) { out.header = "blocked " + e.name; }
  return out;
}"""


def rows(page, table: str) -> list[dict]:
    return page.evaluate(_ROWS, table)


def text(page, selector: str) -> str:
    return page.text_content(selector) or ""


def busy_file(tmp: Path, target: Path) -> Path:
    """Real speech (jfk.flac six times, 66 s) that keeps the one worker busy for a while."""
    gen.speech_wav(tmp / "staging.wav", [SHARED_MEDIA / "jfk.flac"] * 6)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp / "staging.wav", target)
    return target


def job_row(d, path: Path) -> dict | None:
    return next((j for j in d.jobs() if j["path"] == str(path)), None)


def retry_counts(d) -> dict[str, float]:
    _, body = d.get("/metrics", headers=basic(USER, PASSWORD))
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^scribewatch_retry_requests_total\{result="(\w+)"\} (\S+)$', body.decode(), re.M)}


@contextlib.contextmanager
def hostile_site(folder: Path, action: str):
    """Another origin (another port) serving a page with a form that POSTs to `action`."""
    folder.mkdir()
    (folder / "index.html").write_text(
        f'<!doctype html><form method="post" action="{action}">'
        '<button id="prize">Win a prize</button></form>')
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def check_layout(page, tmp: Path, width: int) -> None:
    """Nothing wider than the viewport, the header above the sections, and a full-page
    screenshot exactly as wide as the viewport (anything overflowing would widen it)."""
    page.set_viewport_size({"width": width, "height": 900})
    assert layout_problems(page) == [], f"at {width} px"
    shot = tmp / f"status-{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert png_size(shot)[0] == width


def test_the_page_follows_jobs_refuses_cross_site_posts_and_retries(daemon_factory, tmp_path):
    require_chromium()   # before a daemon starts: a skip (or CI failure) should cost nothing
    d = daemon_factory({"basic_auth_users": USERS, "grafana_url": GRAFANA}).start()
    with chromium() as browser:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900},
                                  http_credentials={"username": USER, "password": PASSWORD})
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        response = page.goto(d.url + "/?refresh=0.5")
        assert response.status == 200
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        # (wait_for_function would eval a string: the page's CSP forbids that, as it should)
        wait_for(lambda: text(page, "#ready") == "Ready", 30, 0.1, "Ready on the page")
        assert page.eval_on_selector_all("#links a", "as => as.map(a => a.href)") == [
            d.url + "/metrics", GRAFANA + "/d/scribewatch-overview",
            GRAFANA + "/d/scribewatch-pipeline", GRAFANA + "/d/scribewatch-gpu-host",
            GRAFANA + "/d/scribewatch-cluster"]
        assert urllib.request.urlopen(d.url + "/readyz").status == 200   # probes stay open
        assert d.get("/")[0] == 401 and d.get("/api/status")[0] == 401   # the page needs auth

        # A job appears in the queue behind a long one and finishes; the page follows alone.
        busy_file(tmp_path, d.watch / "Films" / "busy.wav")
        running = wait_for(lambda: [r for r in rows(page, "running")
                                    if r["cells"][1] == "transcribe"], 90, 0.1,
                           "the long file transcribing on the page")
        assert running[0]["file"] == "busy.wav" and "Films" in running[0]["cells"][0]
        shutil.copy(SHARED_MEDIA / "jfk.flac", d.watch / "jfk.flac")
        queued = wait_for(lambda: [r for r in rows(page, "queue") if r["file"] == "jfk.flac"],
                          60, 0.1, "jfk.flac in the page's queue")
        assert queued[0]["id"] == job_row(d, d.watch / "jfk.flac")["id"]
        assert re.search(r"^[1-9]\d* waiting$", text(page, "#queue-count"))
        wait_for(lambda: text(page, "#today-succeeded") == "2" and not rows(page, "running")
                 and not rows(page, "queue"), 180, 0.2, "both jobs done on the page")
        assert [j["status"] for j in d.jobs()] == ["succeeded", "succeeded"]
        rtf = page.evaluate("document.getElementById('today-rtf').firstChild.textContent")
        assert 0 < float(rtf) < 2 and re.fullmatch(r"\d+\.\d{3}", rtf), rtf
        assert text(page, "#today-rtf").endswith("× real time")
        assert text(page, "#today-audio") != "–"

        # A bad file fails with its reason; its name is shown as text, not markup.
        (tmp_path / BAD_NAME).write_text("eggs, milk, bread\n" * 40)
        os.rename(tmp_path / BAD_NAME, d.watch / BAD_NAME)
        failed = wait_for(lambda: [r for r in rows(page, "failures") if r["file"] == BAD_NAME],
                          60, 0.1, "the bad file among the page's failures")
        assert "not_media" in failed[0]["cells"][1]
        assert page.locator("#failures b").count() == 0
        bad = job_row(d, d.watch / BAD_NAME)
        assert (bad["status"], bad["reason"], failed[0]["id"]) == ("failed", "not_media", bad["id"])
        assert text(page, "#today-failed") == "1"

        # Another origin (another port of the same host) cannot make the browser retry it,
        # although the browser holds the credentials.
        target = f"{d.url}/api/jobs/{bad['id']}/retry"
        with hostile_site(tmp_path / "hostile", target) as hostile_url:
            hostile = ctx.new_page()
            hostile.goto(hostile_url)
            attempts = hostile.evaluate(_ATTACK, target)
            assert attempts["plain"] == "sent"                   # it left, and was refused
            assert attempts["header"].startswith("blocked"), attempts   # preflight failed
            with hostile.expect_navigation() as nav:
                hostile.click("#prize")
            assert nav.value.status == 403
            hostile.close()
        assert job_row(d, d.watch / BAD_NAME)["status"] == "failed"
        assert retry_counts(d)["refused"] == 2 and retry_counts(d)["queued"] == 0

        # With the worker busy and a file queued, the page shows every section: check its layout
        # at a desktop and a phone width, then press RETRY.
        busy_file(tmp_path, d.watch / "Films" / "busy 2.wav")
        wait_for(lambda: any(r["file"] == "busy 2.wav" for r in rows(page, "running")), 90,
                 0.1, "the second long file running")
        shutil.copy(SHARED_MEDIA / "jfk.flac", d.watch / "Episode 2.flac")
        wait_for(lambda: any(r["file"] == "Episode 2.flac" for r in rows(page, "queue")), 60,
                 0.1, "Episode 2 queued")
        if UPDATE_SHOT:
            page.screenshot(path=str(DOCS_SHOT))
        check_layout(page, tmp_path, 390)
        check_layout(page, tmp_path, 1280)
        page.click(f'#failures tr[data-job="{bad["id"]}"] button.retry')
        wait_for(lambda: "queued again" in text(page, "#notice"), 10, 0.05, "the retry notice")
        again = job_row(d, d.watch / BAD_NAME)
        assert (again["id"], again["status"], again["attempts"]) == (bad["id"], "queued", 0)
        wait_for(lambda: any(r["id"] == bad["id"] for r in rows(page, "queue"))
                 and not any(r["id"] == bad["id"] for r in rows(page, "failures")), 10, 0.1,
                 "the retried job in the queue, not among the failures")
        assert retry_counts(d)["queued"] == 1
        # It runs again once the worker is free, and fails again: the file is still not media.
        wait_for(lambda: job_row(d, d.watch / BAD_NAME)["status"] == "failed" and any(
            r["id"] == bad["id"] for r in rows(page, "failures")), 180, 0.2,
            "the retried job failed again")
        assert job_row(d, d.watch / BAD_NAME)["attempts"] == 1
        assert "queued again on request" in d.log()
        assert errors == []


class Control:
    """A JobControl that answers what the test says and records the ids it was asked."""

    def __init__(self, result: str):
        self.result, self.asked = result, []

    def retry_failed_job(self, job_id: int) -> str:
        self.asked.append(job_id)
        return self.result


def test_the_page_over_tls_shows_every_field_of_a_snapshot(tmp_path):
    """No model here: the real server under TLS and basic auth with a snapshot the test sets,
    so every field's rendering is checked exactly (a daemon's are moving targets)."""
    require_chromium()
    openssl = require_binary("openssl", "apt-get install openssl")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "key.pem"),
         "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True, timeout=60)
    now = time.time()
    snap = status.snapshot(
        model_ready=False, model_error="model 'large-v9' not found", workers=2, queue_jobs=14,
        running=(RunningJob(3, "1", now - 125, 0.5, 600.0, "/media/TV/Show/S01/e1.mkv",
                            "/media", stage="transcribe"),),
        queue_next=(QueuedJob(7, "/media/a.mp3", "/media", now - 30),
                    QueuedJob(8, "/media/b.mp3", "/media", now - 20, retry_at=now + 40)),
        recent_failures=(FailedJob(4, "/media/x.mp3", "/media", "not_media", "probe",
                                   "/media/x.mp3: not a media file", now - 60),),
        today=DayFigures(now - 3600, {"succeeded": 3, "failed": 1, "skipped": 2}, 3725.0,
                         745.0),
        api_running=1, api_waiting=2)
    control = Control("not_failed")
    exp = status.start_web_server(status.web_server(
        status.Source(snap), basic_auth_users=USERS, tls_cert_file=str(tmp_path / "cert.pem"),
        tls_key_file=str(tmp_path / "key.pem"), job_control=control))
    try:
        with chromium() as browser:
            ctx = browser.new_context(ignore_https_errors=True, http_credentials={
                "username": USER, "password": PASSWORD})
            page = ctx.new_page()
            assert page.goto(exp.url + "/").status == 200 and exp.url.startswith("https://")
            wait_for(lambda: text(page, "#ready") == "Not ready", 20, 0.1, "the first render")
            assert text(page, "#reasons") == "model not loaded: model 'large-v9' not found"
            assert "2 workers" in text(page, "#facts")
            [run] = rows(page, "running")
            assert (run["id"], run["file"], run["cells"][1]) == (3, "e1.mkv", "transcribe")
            # API requests are jobs too, without a file to list: their counts (issue 23)
            assert text(page, "#running-count") == "1 of 2, API requests: 1 running, 2 waiting"
            assert run["cells"][0] == "e1.mkvTV/Show/S01" and run["cells"][2] == "50 %"
            assert re.fullmatch(r"2 min [0-5]\d s", run["cells"][3]), run["cells"][3]
            assert [r["id"] for r in rows(page, "queue")] == [7, 8]
            assert rows(page, "queue")[1]["cells"][2].startswith("retry in ")
            assert text(page, "#queue-count") == "14 waiting"
            assert text(page, "#queue-more") == "… and 12 more"
            [failure] = rows(page, "failures")
            assert failure["cells"][1] == "not_medianot a media file"   # the path not repeated
            assert [text(page, f"#today-{k}") for k in ("succeeded", "failed", "skipped")] == \
                ["3", "1", "2"]
            assert text(page, "#today-audio") == "1 h 02 min"
            assert text(page, "#today-rtf") == "0.2005.0× real time"
            assert page.eval_on_selector_all("#links a", "as => as.map(a => a.href)") == [
                exp.url + "/metrics"]
            page.click('#failures tr[data-job="4"] button.retry')
            wait_for(lambda: text(page, "#notice"), 10, 0.05, "the retry notice")
            assert text(page, "#notice") == "Job 4 was not queued again: not_failed."
            assert control.asked == [4]
    finally:
        status.stop_web_server(exp)


def test_the_committed_screenshot_is_a_small_desktop_png():
    width, height = png_size(DOCS_SHOT)
    assert (width, height) == (1280, 900)
    assert DOCS_SHOT.stat().st_size < 300_000
