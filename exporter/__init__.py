"""scribewatch exporter: the pipeline's events, the daemon's state, GPU and host on /metrics.

    reporter, gpu = PrometheusReporter(), GpuSampler()
    daemon = Daemon(cfg, reporter=reporter, gpu_probe=gpu.sample, gpu_inventory=gpu.inventory)
    exp = Exporter(daemon, reporter=reporter, gpu_sampler=gpu, listen=cfg.listen,
                   tls_cert_file=…, tls_key_file=…, basic_auth_users=cfg.basic_auth_users,
                   job_control=daemon, grafana_url=cfg.grafana_url,
                   api_queue=daemon.api, api_tokens=cfg.api_tokens, …)
    exp.start()
    …
    exp.stop()
"""

from __future__ import annotations

from typing import Mapping

from prometheus_client import CollectorRegistry, ProcessCollector

from ..pipeline.contract import ApiQueue, JobControl, StatusSource
from ..web.api import TranscriptionApi
from ..web.server import MetricsServer
from .exposition import Exposition
from .gpu import GpuCollector, GpuSampler
from .host import HostCollector
from .instrumentation import PrometheusReporter, StateCollector
from .sampling import SampledCollector, Sampler

__all__ = ["Exporter", "GpuSampler", "PrometheusReporter", "StateCollector"]


class Exporter:
    """Everything the daemon exposes. Configuration errors (a plain password, unreadable TLS
    files, a bad listen address) raise ValueError here; start() binds.

    `registry` holds every family: the reporter's (changed only by its events, so their text is
    kept between them), the daemon's state (read at each scrape, from memory), and the host,
    process and GPU figures (read once a second by the sampler).

    `reporter` and `gpu_sampler` are made by the caller when the status source needs them
    first (the daemon takes both at construction); by default the exporter makes its own.
    `job_control` (the daemon) lets the status page retry failed jobs; `grafana_url` adds links
    to the dashboards there."""

    def __init__(self, status_source: StatusSource, *, listen: str,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 basic_auth_users: Mapping[str, str] | None = None,
                 reporter: PrometheusReporter | None = None,
                 gpu_sampler: GpuSampler | None = None,
                 job_control: JobControl | None = None, grafana_url: str | None = None,
                 api_queue: ApiQueue | None = None, api_tokens=(), metrics_auth: bool = True,
                 api_max_upload_bytes: int = 2 * 1024**3):
        self.reporter = PrometheusReporter() if reporter is None else reporter
        events = self.reporter.registry
        live = CollectorRegistry()
        live.register(StateCollector(status_source))
        self.gpu_sampler = GpuSampler() if gpu_sampler is None else gpu_sampler
        nvml = self.gpu_sampler.nvml
        sampled = [SampledCollector(GpuCollector(nvml), "GPU"),
                   SampledCollector(HostCollector(status_source), "host"),
                   SampledCollector(ProcessCollector(registry=None), "process")]
        for collector in sampled:
            live.register(collector)
        self._sampler = Sampler(sampled)
        self.registry = Exposition(events, lambda: self.reporter.version, live)
        # The transcription API, when the daemon takes its requests (`api_queue`).
        api = None if api_queue is None else TranscriptionApi(
            api_queue, max_upload_bytes=api_max_upload_bytes, record=self.reporter.api_request)
        self._server = MetricsServer(
            self.registry, status_source, listen=listen, tls_cert_file=tls_cert_file,
            tls_key_file=tls_key_file, basic_auth_users=basic_auth_users,
            job_control=job_control, grafana_url=grafana_url,
            count_retry=self.reporter.retry_requested, api_tokens=api_tokens,
            metrics_auth=metrics_auth, api=api)

    def start(self) -> None:
        self._sampler.start()
        self._server.start()

    def stop(self) -> None:
        self._server.stop()
        self._sampler.stop()

    @property
    def url(self) -> str:
        """Base URL a local client reaches the server at (the real port once started)."""
        return self._server.url
