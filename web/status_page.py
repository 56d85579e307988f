"""The status page at `/` (for people without Grafana): its HTML, the links it shows, and the
cross-site guard of the one thing it can change (retrying a failed job).

The page is one static file, `status_page.html` (inline CSS and script, no external assets, no
build step), shipped as package data. It polls `/api/status` and builds its rows with
`textContent` only: file names and error messages are never parsed as HTML.

Cross-site requests: the browser sends the basic-auth credentials it has cached with any
request to this origin, including one a hostile page makes, so a POST must prove it comes from
the page itself. There is no session to bind a CSRF token to (basic auth is stateless), so:

* a custom header (`X-Scribewatch-Action`) is required. A cross-origin page cannot send one
  without a CORS preflight, and the server answers every OPTIONS with 405 and no CORS
  headers, so the browser never sends the POST (a plain HTML form cannot set headers at all);
* Fetch Metadata: `Sec-Fetch-Site` must be `same-origin` when the browser sends it (all current
  ones do); a `same-site` page (another port of the same host) is refused too;
* without it (an older browser), an `Origin` header must name this host (the `Host` header).

Clients that are not browsers (curl, scripts) send neither header and need only the custom one.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import re
from typing import Mapping
from urllib.parse import urlsplit

ACTION_HEADER = "X-Scribewatch-Action"
RETRY_PATH = re.compile(r"/api/jobs/([0-9]{1,18})/retry")

# The dashboards mixin/ generates (grafana/dashboards/*.json): uid and title. The package does
# not ship them, so they are named here; tests/unit/web/test_status_page.py holds the two
# lists together.
DASHBOARDS = (
    ("scribewatch-overview", "Overview"),
    ("scribewatch-pipeline", "Pipeline"),
    ("scribewatch-gpu-host", "GPU & host"),
    ("scribewatch-cluster", "Cluster"),
)


def links(grafana_url: str | None) -> dict:
    """The page's links: /metrics, and each dashboard when a Grafana address is configured."""
    base = (grafana_url or "").rstrip("/")
    return {"metrics": "metrics",
            "grafana": [{"title": title, "url": f"{base}/d/{uid}"} for uid, title in DASHBOARDS]
            if base else []}


def cross_site(headers: Mapping[str, str]) -> str | None:
    """Why a state-changing request is refused as possibly cross-site, or None. `headers`:
    names lowercased."""
    if not headers.get(ACTION_HEADER.lower()):
        return f"the {ACTION_HEADER} header is missing (the status page sends it)"
    site = headers.get("sec-fetch-site")
    if site is not None:
        # The browser's own word: proxies that rewrite Host or terminate TLS do not change it.
        if site == "same-origin":
            return None
        return f"a {site if site in ('same-site', 'none') else 'cross-site'} request"
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
        return "a request from another origin"
    return None


class Page:
    """The HTML, read once, and the Content-Security-Policy that lets only its own inline
    style and script run (by their hashes) and forbids framing (no clickjacking of RETRY)."""

    def __init__(self):
        self.body = (importlib.resources.files(__package__) / "status_page.html").read_bytes()
        text = self.body.decode()
        scripts = re.findall(r"<script>(.*?)</script>", text, re.S)
        styles = re.findall(r"<style>(.*?)</style>", text, re.S)
        self.headers = {
            "Content-Security-Policy": (
                "default-src 'none'; connect-src 'self'; img-src 'self' data:; "
                f"script-src {_hashes(scripts)}; style-src {_hashes(styles)}; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }


def _hashes(blocks: list[str]) -> str:
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
        for b in blocks) or "'none'"
