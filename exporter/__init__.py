"""scribewatch exporter: the pipeline's events, the daemon's state, GPU and host as Prometheus
metrics. It serves nothing itself: the web server (`scribewatch.web`) answers /metrics with
`registry`.

    reporter, gpu = PrometheusReporter(), GpuSampler()
    daemon = Daemon(cfg, reporter=reporter, gpu_probe=gpu.sample, gpu_inventory=gpu.inventory)
    exporter = Exporter(daemon, reporter=reporter, gpu_sampler=gpu)
    exporter.start()       # the once-a-second sampler of host, process and GPU figures
    …
    exporter.stop()
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, ProcessCollector

from ..pipeline.contract import StatusSource
from .exposition import Exposition
from .gpu import GpuCollector, GpuSampler
from .host import HostCollector
from .instrumentation import PrometheusReporter, StateCollector
from .sampling import SampledCollector, Sampler

__all__ = ["Exporter", "GpuSampler", "PrometheusReporter", "StateCollector"]


class Exporter:
    """Every metric the daemon exposes.

    `registry` holds every family: the reporter's (changed only by its events, so their text is
    kept between them), the daemon's state (read at each scrape, from memory), and the host,
    process and GPU figures (read once a second by the sampler, between start() and stop()).

    `reporter` and `gpu_sampler` are made by the caller when the status source needs them
    first (the daemon takes both at construction); by default the exporter makes its own."""

    def __init__(self, status_source: StatusSource, *,
                 reporter: PrometheusReporter | None = None,
                 gpu_sampler: GpuSampler | None = None):
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

    def start(self) -> None:
        self._sampler.start()

    def stop(self) -> None:
        self._sampler.stop()
