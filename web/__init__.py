"""scribewatch web: the daemon's HTTP application on one port: the status page and its client
(`scribewatch status`), /metrics (the exporter's registry), the probes, and the transcription
API, with TLS, basic auth and bearer tokens.

    exporter = Exporter(daemon, reporter=reporter, gpu_sampler=gpu)
    server = WebServer(exporter, daemon, listen=cfg.listen, tls_cert_file=…, tls_key_file=…,
                       basic_auth_users=cfg.basic_auth_users, job_control=daemon,
                       grafana_url=cfg.grafana_url, api_queue=daemon.api,
                       api_tokens=cfg.api_tokens, …)
    exporter.start(); server.start()
    …
    server.stop(); exporter.stop()

It imports the exporter (for /metrics) and the pipeline's contract, nothing else of the
pipeline; neither of them imports it.
"""

from __future__ import annotations

from .server import WebServer

__all__ = ["WebServer"]
