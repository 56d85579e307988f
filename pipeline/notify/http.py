"""One HTTP request with the standard library, and what its outcome means for a retry.

No client library: the three targets need a GET and a POST with headers, and urllib keeps the
daemon's dependencies as they are.
"""

from __future__ import annotations

import dataclasses
import http.client
import urllib.error
import urllib.parse
import urllib.request

from ... import __version__

USER_AGENT = f"scribewatch/{__version__}"
TIMEOUT_SECONDS = 10.0
# Statuses worth another attempt: the server may answer differently later (overloaded,
# restarting behind a proxy, rate limiting). Any other 4xx (a bad token, a wrong section id)
# answers the same way every time.
_RETRIED = {408, 425, 429}


class DeliveryError(Exception):
    """A request that did not succeed; `retry`: whether trying again later may help."""

    def __init__(self, message: str, *, retry: bool):
        super().__init__(message)
        self.retry = retry


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: bytes


def request(method: str, url: str, *, headers: dict[str, str], body: bytes | None = None,
            timeout: float = TIMEOUT_SECONDS, secret_path: bool = False) -> Response:
    """The answer of a 2xx; raises DeliveryError for anything else (never another exception).
    `secret_path`: the URL's path is a credential (a webhook's), never written in a message."""
    shown = shown_url(url, secret_path=secret_path)
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"User-Agent": USER_AGENT, **headers})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return Response(answer.status, answer.read())
    except urllib.error.HTTPError as e:
        status = e.code
        detail = e.read(200).decode(errors="replace").strip()
        e.close()
        raise DeliveryError(f"{method} {shown}: HTTP {status}"
                            + (f": {detail}" if detail else ""),
                            retry=status >= 500 or status in _RETRIED) from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        # refused, unreachable, DNS, TLS, timeout, not speaking HTTP: may be fine later
        reason = getattr(e, "reason", e)
        raise DeliveryError(f"{method} {shown}: {reason}", retry=True) from None


def shown_url(url: str, *, secret_path: bool = False) -> str:
    """A URL for a log line or `scribewatch check`: no user:password, query or fragment (a
    token may be there), and with `secret_path` only scheme, host and port — a Slack,
    Discord or Home Assistant webhook's path is its secret."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    where = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    if secret_path:
        return where + ("/…" if parts.path.strip("/") else "")
    return where + parts.path
