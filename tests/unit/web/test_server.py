"""The real HTTP server on a free loopback port, with a StatusSource the test controls:
endpoints, content negotiation, gzip, errors; TLS and basic auth; the `scribewatch status`
client."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import ssl
import subprocess
import time

import bcrypt
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from scribewatch.pipeline.contract import parse_listen
from scribewatch.web import auth, docs
from scribewatch.web.auth import BasicAuth
from scribewatch.web.status_cli import StatusError, fetch_status, format_status, url_for_listen
from tests.harness import require_binary
from tests.harness.status import Source, basic, request, snapshot, web_server

NOW = time.time()

# -- endpoints ----------------------------------------------------------------------------
def test_metrics_in_the_text_format(serve):
    exp = serve()
    exp.exporter.reporter.job_finished("failed", reason="empty_file")
    status, headers, body = request(exp.url + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert headers.get("Content-Encoding") is None
    families = {f.name: f for f in parse_text(body.decode())}
    failures = families["scribewatch_job_failures"]
    assert failures.type == "counter"
    assert any(s.labels == {"stage": "probe", "reason": "empty_file", "source": "folder"}
               and s.value == 1 for s in failures.samples)
    assert "scribewatch_queue_jobs" in families and "process_cpu_seconds" in families


def test_metrics_gzip_when_the_client_accepts_it(serve):
    exp = serve()
    _, _, plain = request(exp.url + "/metrics")
    status, headers, body = request(exp.url + "/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    unzipped = gzip.decompress(body).decode()
    assert len(body) < len(plain) / 3
    assert {f.name for f in parse_text(unzipped)} == {f.name for f in parse_text(plain.decode())}


def test_openmetrics_when_the_accept_header_asks_for_it(serve):
    exp = serve()
    accept = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
              "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")   # Prometheus 2.x
    status, headers, body = request(exp.url + "/metrics", headers={"Accept": accept})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_om(text)}
    assert families["scribewatch_jobs"].type == "counter"
    assert families["scribewatch_stage_duration_seconds"].type == "histogram"
    assert families["scribewatch_build_info"].type == "gauge"


def test_healthz_and_head(serve):
    exp = serve(Source(error=RuntimeError("store locked")))    # alive even when state is not
    assert request(exp.url + "/healthz")[::2] == (200, b"ok\n")
    status, headers, body = request(exp.url + "/healthz", method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == "3"


def test_readyz_ready(serve):
    exp = serve()
    status, headers, body = request(exp.url + "/readyz")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"ready": True}


def test_readyz_not_ready_says_why(serve):
    snap = snapshot(model_ready=False, model_error="model 'large-v9' not found",
                    watcher_up=False, watch_dirs_unavailable=2, store_writable=False)
    exp = serve(Source(snap))
    status, _, body = request(exp.url + "/readyz")
    assert status == 503
    doc = json.loads(body)
    assert doc["ready"] is False
    assert doc["reasons"] == snap.not_ready_reasons()
    assert any("large-v9" in r for r in doc["reasons"]) and len(doc["reasons"]) == 3


def test_a_failing_status_source_is_a_503_and_a_500_not_a_dead_server(serve):
    exp = serve(Source(error=RuntimeError("database is locked")))
    status, _, body = request(exp.url + "/readyz")
    assert status == 503 and json.loads(body)["reasons"] == ["status unavailable: RuntimeError"]
    assert request(exp.url + "/metrics")[0] == 500
    assert request(exp.url + "/api/status")[0] == 500
    assert request(exp.url + "/healthz")[0] == 200


def test_api_status(serve):
    source = Source()
    exp = serve(source)
    status, headers, body = request(exp.url + "/api/status")
    assert status == 200 and headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert doc["version"] == "0.1.0"
    assert 7190 < doc["uptime_seconds"] < 7300
    assert (doc["model"], doc["device"], doc["compute_type"]) == ("tiny.en", "cpu", "int8")
    assert doc["model_loaded"] is True and doc["ready"] is True and doc["watcher_up"] is True
    assert doc["queue_jobs"] == 4
    [job] = doc["running"]
    assert (job["id"], job["worker"], job["progress"]) == (12, "0", 0.375)
    assert 89 < job["elapsed_seconds"] < 200
    assert (job["path"], job["watch_dir"]) == ("/media/Films/Heat (1995)/Heat.mkv", "/media")
    assert doc["counts"] == {"succeeded": 10, "failed": 2, "skipped": 0}
    assert doc["startup_scan"] == {"done": False, "seconds": None, "files": None}
    source.snap = snapshot(startup_scan_seconds=3.6049, startup_scan_files=100000)
    _, _, body = request(exp.url + "/api/status")
    assert json.loads(body)["startup_scan"] == {"done": True, "seconds": 3.6, "files": 100000}


@pytest.mark.parametrize("path", ["/index.html", "/metric", "/metrics/extra", "/api",
                                  "/../etc/passwd", "/api/jobs/1/retry/x"])
def test_unknown_paths_are_404(serve, path):
    assert request(serve().url + path)[0] == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405(serve, method):
    status, headers, _ = request(serve().url + "/metrics", method=method)
    assert status == 405 and "GET" in headers["Allow"]


def test_query_strings_are_ignored(serve):
    assert request(serve().url + "/metrics?debug=1")[0] == 200


def test_ipv6_listen(serve):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    exp = serve(listen="[::1]:0")
    assert exp.url.startswith("http://[::1]:")
    assert request(exp.url + "/healthz")[0] == 200


@pytest.mark.parametrize("listen", ["9847", "::1:9847", "localhost:http", "host:70000", ":9847"])
def test_bad_listen_addresses_are_refused(listen):
    with pytest.raises(ValueError, match="listen"):
        parse_listen(listen)


def test_listen_addresses():
    assert parse_listen("0.0.0.0:9847") == ("0.0.0.0", 9847)
    assert parse_listen("[::]:9847") == ("::", 9847)
    assert url_for_listen("0.0.0.0:9847") == "http://127.0.0.1:9847"
    assert url_for_listen("[::]:9847", tls=True) == "https://[::1]:9847"
    assert url_for_listen("media.lan:9847") == "http://media.lan:9847"


# -- TLS and basic auth -------------------------------------------------------------------
PROM_PASSWORD = "correct horse battery staple"
GRAFANA_PASSWORD = "s3cret-grafana"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 / localhost, made with the openssl binary."""
    openssl = require_binary("openssl")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True, timeout=60)
    return str(d / "cert.pem"), str(d / "key.pem")


@pytest.fixture
def secure(serve, tls_files):
    cert, key = tls_files
    users = {
        "prometheus": bcrypt.hashpw(PROM_PASSWORD.encode(), bcrypt.gensalt(4)).decode(),
        "grafana": "sha256:" + hashlib.sha256(GRAFANA_PASSWORD.encode()).hexdigest(),
    }
    exp = serve(tls_cert_file=cert, tls_key_file=key, basic_auth_users=users)
    return exp, ssl.create_default_context(cafile=cert)


def test_tls_with_basic_auth(secure):
    exp, ctx = secure
    assert exp.url.startswith("https://127.0.0.1:")
    url = exp.url + "/metrics"
    status, headers, _ = request(url, context=ctx)
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="scribewatch"'
    assert request(url, headers=basic("prometheus", "wrong"), context=ctx)[0] == 401
    assert request(url, headers=basic("nobody", PROM_PASSWORD), context=ctx)[0] == 401
    assert request(url, headers=basic("grafana", PROM_PASSWORD), context=ctx)[0] == 401
    assert request(url, headers={"Authorization": "Bearer abc"}, context=ctx)[0] == 401
    assert request(url, headers={"Authorization": "Basic !!!"}, context=ctx)[0] == 401
    status, _, body = request(url, headers=basic("prometheus", PROM_PASSWORD), context=ctx)
    assert status == 200 and b"scribewatch_jobs_total" in body
    assert request(url, headers=basic("grafana", GRAFANA_PASSWORD), context=ctx)[0] == 200
    assert request(exp.url + "/api/status", context=ctx)[0] == 401
    assert request(exp.url + "/api/status", headers=basic("grafana", GRAFANA_PASSWORD),
                   context=ctx)[0] == 200
    # Orchestrator probes need no credentials.
    assert request(exp.url + "/healthz", context=ctx)[0] == 200
    assert request(exp.url + "/readyz", context=ctx)[0] == 200


def test_plain_http_to_the_tls_port_fails(secure):
    exp, _ = secure
    plain = exp.url.replace("https://", "http://")
    with pytest.raises((OSError, ConnectionError)):      # reset / remote end closed
        request(plain + "/healthz")
    host, port = plain[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = s.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/"), answer


def test_a_stalled_tls_handshake_does_not_block_other_clients(secure):
    exp, ctx = secure
    host, port = exp.url[len("https://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=10):   # connects, never speaks
        started = time.monotonic()
        assert request(exp.url + "/healthz", context=ctx)[0] == 200
        assert time.monotonic() - started < 5


def test_status_client_over_tls_with_auth(secure, tls_files):
    exp, _ = secure
    status = fetch_status(exp.url, user="grafana", password=GRAFANA_PASSWORD,
                          cafile=tls_files[0])
    assert status["queue_jobs"] == 4 and status["running"][0]["id"] == 12
    assert fetch_status(exp.url + "/api/status", user="grafana", password=GRAFANA_PASSWORD,
                        insecure=True)["version"] == "0.1.0"
    with pytest.raises(StatusError, match="401"):
        fetch_status(exp.url, user="grafana", password="nope", cafile=tls_files[0])
    with pytest.raises(StatusError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        fetch_status(exp.url, user="grafana", password=GRAFANA_PASSWORD)


def test_status_client_when_nothing_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StatusError, match="cannot reach"):
        fetch_status(f"http://127.0.0.1:{port}")


def test_format_status_is_readable():
    text = format_status({
        "version": "0.1.0", "uptime_seconds": 7260, "ready": False,
        "not_ready_reasons": ["watcher down (1 watch folder(s) unavailable)"],
        "model": "tiny.en", "device": "cpu", "compute_type": "int8", "model_loaded": True,
        "watcher_up": False, "watch_dirs_unavailable": 1, "workers": 2, "queue_jobs": 4,
        "running": [{"id": 12, "worker": "0", "progress": 0.375, "elapsed_seconds": 90,
                     "audio_seconds": 1800, "path": "/media/Films/Heat.mkv",
                     "watch_dir": "/media"}],
        "counts": {"succeeded": 10, "failed": 2, "skipped": 0}, "last_success_at": NOW - 300,
        "startup_scan": {"done": True, "seconds": 3.61, "files": 100000},
    }, now=NOW)
    lines = text.splitlines()
    assert lines[0] == "scribewatch 0.1.0 — NOT READY, up 2h 01m"
    assert "watcher down" in lines[1]
    assert "startup scan done in 3.6s (100000 media files)" in text
    assert "tiny.en on cpu (int8), loaded" in text
    assert "4 job(s) waiting" in text
    assert "job 12 on worker 0: 38% of 30m 00s audio, 1m 30s so far" in text
    assert "          Films/Heat.mkv  (in /media)" in lines   # the file, under its job
    assert "10 succeeded, 2 failed, 0 skipped" in text
    assert "(5m 00s ago)" in text
    assert "node " not in text   # one machine: no node line


def test_format_status_names_the_node_of_a_shared_store():
    text = format_status({
        "version": "0.1.0", "uptime_seconds": 60, "ready": False,
        "not_ready_reasons": ["job store unreachable: connection refused"],
        "model": "tiny.en", "device": "cpu", "compute_type": "int8", "model_loaded": True,
        "watcher_up": True, "watch_dirs_unavailable": 0, "workers": 1, "queue_jobs": 0,
        "running": [], "counts": {}, "last_success_at": None,
        "node": "gpu-box", "store": {"kind": "postgresql", "up": False, "error": "refused"},
        "leases_held": 1,
    }, now=NOW)
    assert "node      gpu-box on a shared store (UNREACHABLE), 1 lease(s) held" in text
    assert "job store unreachable: connection refused" in text


@pytest.mark.parametrize("users, message", [
    ({"prometheus": "hunter2"}, "never a plain password"),
    ({"prometheus": "$2b$12$tooshort"}, "bcrypt"),
    ({"prometheus": "sha256:abc"}, "sha256"),
    ({"a:b": "sha256:" + "0" * 64}, "user name"),
])
def test_plain_or_malformed_passwords_are_refused_at_start(users, message):
    with pytest.raises(ValueError, match=message):
        web_server(basic_auth_users=users)


def test_tls_needs_readable_cert_and_key(tmp_path, tls_files):
    with pytest.raises(ValueError, match="together"):
        web_server(tls_cert_file=tls_files[0])
    with pytest.raises(ValueError, match="cannot load"):
        web_server(tls_cert_file=str(tmp_path / "nope.pem"), tls_key_file=tls_files[1])


def test_bcrypt_success_is_cached_briefly(monkeypatch):
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(auth.bcrypt, "checkpw", lambda *a: (calls.append(1), real(*a))[1])
    now = [0.0]
    checker = BasicAuth({"p": bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()},
                        cache_seconds=300, clock=lambda: now[0])
    header = basic("p", "pw")["Authorization"]
    assert checker.check(header) and checker.check(header)
    assert len(calls) == 1, "the second check came from the cache"
    assert not checker.check(basic("p", "other")["Authorization"])
    assert len(calls) == 2, "a different password is checked for real"
    now[0] = 301
    assert checker.check(header) and len(calls) == 3, "the cache expires"
    # bcrypt>=5 raises for passwords beyond 72 bytes; they are simply wrong here.
    assert not checker.check(basic("p", "x" * 100)["Authorization"])


def test_format_status_shows_the_gpus_and_jobs_waiting_for_their_memory():
    text = format_status({
        "version": "0.1.0", "uptime_seconds": 60, "ready": True, "not_ready_reasons": [],
        "model": "tiny.en", "device": "cuda", "compute_type": "float16", "model_loaded": True,
        "watcher_up": True, "workers": 5, "queue_jobs": 3, "waiting_for_vram": 1,
        "running": [{"id": 7, "worker": "1", "gpu": 1, "progress": 0.5, "elapsed_seconds": 5,
                     "audio_seconds": 60}],
        "devices": {"mode": "cuda", "reasons": [], "cpu": None, "gpus": [
            {"index": 0, "name": "NVIDIA GeForce RTX 3060", "workers": ["0", "2", "3", "4"],
             "active_workers": 3, "batch_size": 8, "state": "active", "wait_reason": None},
            {"index": 1, "name": "NVIDIA GeForce GTX 1660 SUPER", "workers": ["1"],
             "active_workers": 0, "batch_size": 0, "state": "waiting_for_vram",
             "wait_reason": "CUDA out of memory"}]},
        "counts": {}, "last_success_at": None,
    }, now=NOW)
    assert "GPU 0     NVIDIA GeForce RTX 3060: 3 of 4 worker(s), batch 8" in text
    assert "GPU 1     NVIDIA GeForce GTX 1660 SUPER: waiting for memory: CUDA out of memory" in text
    assert "3 job(s) waiting, 1 for GPU memory" in text
    assert "job 7 on worker 1 (GPU 1): 50%" in text


def test_the_http_doc_says_how_to_scrape_and_how_long_a_password_check_is_remembered():
    # That docs/http.md is this text: tests/unit/test_generated.py.
    text = docs.render()
    assert "scrape_configs:" in text and "basic_auth" in text and "tls_config" in text
    assert f"remembered for {auth.CACHE_SECONDS:g} s" in text
