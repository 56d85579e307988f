"""Sonarr's and Radarr's webhook routes on the real server: auth as the API's (basic auth from
the webhook's Username/Password, or a bearer token in a custom header), methods, body limits,
JSON, and the counter by app, event and result. Behind them, the real webhooks (a SQLite
store, intake, files); the bodies are built from Sonarr's and Radarr's own classes
(tests/harness/arr.py)."""

from __future__ import annotations

import hashlib
import socket
import types

import pytest

from scribewatch.pipeline.store.sqlite import SqliteStore
from scribewatch.web.hooks import MAX_BODY_BYTES
from tests.harness import arr
from tests.harness.status import request

USER, PASSWORD, TOKEN = "sonarr", "hook-secret", "radarr-token"
USERS = {USER: "sha256:" + hashlib.sha256(PASSWORD.encode()).hexdigest()}
TOKENS = ["sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()]


@pytest.fixture
def hooked(serve, tmp_path):
    tv = tmp_path / "tv"
    tv.mkdir()
    store = SqliteStore(tmp_path / "jobs.db")
    hooks = arr.webhooks_over(store, tv, {})
    server = serve(basic_auth_users=USERS, api_tokens=TOKENS, arr_hooks=hooks)
    yield types.SimpleNamespace(url=server.url, tv=tv, store=store, server=server)
    store.close()


def counted(server, app: str, event: str, result: str) -> float:
    key = ("scribewatch_arr_webhooks_total", (("app", app), ("event", event), ("result", result)))
    for metric in server.exporter.registry.collect():
        for sample in metric.samples:
            if (sample.name, tuple(sorted(sample.labels.items()))) == key:
                return sample.value
    return 0.0


def test_test_is_200_with_basic_auth_or_a_bearer_header(hooked):
    assert arr.post_hook(hooked.url, "sonarr", arr.sonarr_test(), USER, PASSWORD) == (
        200, {"event": "Test", "result": "ok"})
    status, _ = arr.post_hook(hooked.url, "radarr", arr.radarr_test(),
                              headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert counted(hooked.server, "sonarr", "test", "ok") == 1
    assert counted(hooked.server, "radarr", "test", "ok") == 1


@pytest.mark.parametrize("credentials", [(None, None), (USER, "wrong"), ("nobody", PASSWORD)])
def test_wrong_or_missing_credentials_are_401(hooked, credentials):
    status, body = arr.post_hook(hooked.url, "sonarr", arr.sonarr_test(), *credentials)
    assert status == 401
    assert counted(hooked.server, "sonarr", "unknown", "unauthorized") == 1


def test_an_import_is_queued_and_counted(hooked):
    video = hooked.tv / "e1.mkv"
    video.write_bytes(b"v" * 1000)
    status, body = arr.post_hook(hooked.url, "sonarr", arr.sonarr_download(
        str(video), str(hooked.tv)), USER, PASSWORD)
    assert status == 200 and body["files"][0]["result"] == "queued"
    assert hooked.store.counts()["queued"] == 1
    assert counted(hooked.server, "sonarr", "import", "queued") == 1


def test_only_post(hooked):
    status, headers, _ = request(f"{hooked.url}/hooks/sonarr")
    assert status == 405 and headers["Allow"] == "POST"


def test_a_body_that_is_not_json_or_too_large_is_refused(hooked):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, _, body = request(f"{hooked.url}/hooks/radarr", "POST", auth)   # no body
    assert status == 400
    with socket.create_connection(("127.0.0.1", int(hooked.url.rsplit(":", 1)[1]))) as s:
        s.sendall(f"POST /hooks/radarr HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}"
                  f"\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    with socket.create_connection(("127.0.0.1", int(hooked.url.rsplit(":", 1)[1]))) as s:
        s.sendall(f"POST /hooks/radarr HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}"
                  "\r\nContent-Length: 5\r\n\r\n{nope".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert counted(hooked.server, "radarr", "unknown", "bad_request") == 3
