"""The dashboards: file name in grafana/dashboards/ -> builder (Config -> dashboard dict)."""

from __future__ import annotations

from . import cluster, gpu_host, overview, pipeline

DASHBOARDS = {
    "overview.json": overview.build,
    "pipeline.json": pipeline.build,
    "gpu-host.json": gpu_host.build,
    "cluster.json": cluster.build,
}
