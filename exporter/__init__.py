"""scribewatch exporter: the pipeline's events, the daemon's state, GPU and host on /metrics.

    exp = Exporter(daemon, listen=cfg.listen, tls_cert_file=…, tls_key_file=…,
                   basic_auth_users=cfg.basic_auth_users)
    daemon.reporter = exp.reporter
    exp.start()
    …
    exp.stop()
"""

from __future__ import annotations

from typing import Mapping

from prometheus_client import CollectorRegistry, ProcessCollector

from pipeline.events import StatusSource

from .gpu import GpuCollector, GpuSampler, Nvml
from .host import HostCollector
from .instrumentation import PrometheusReporter, StateCollector
from .server import MetricsServer

__all__ = ["Exporter", "GpuSampler", "PrometheusReporter", "StateCollector"]


class Exporter:
    """Everything the daemon exposes, on its own registry. Configuration errors (a plain
    password, unreadable TLS files, a bad listen address) raise ValueError here; start() binds."""

    def __init__(self, status_source: StatusSource, *, listen: str,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 basic_auth_users: Mapping[str, str] | None = None,
                 registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.reporter = PrometheusReporter(self.registry)
        self.registry.register(StateCollector(status_source))
        nvml = Nvml()
        self.registry.register(GpuCollector(nvml))
        self.gpu_sampler = GpuSampler(nvml)
        self.registry.register(HostCollector(status_source))
        ProcessCollector(registry=self.registry)
        self._server = MetricsServer(
            self.registry, status_source, listen=listen, tls_cert_file=tls_cert_file,
            tls_key_file=tls_key_file, basic_auth_users=basic_auth_users)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        """Base URL a local client reaches the server at (the real port once started)."""
        return self._server.url
