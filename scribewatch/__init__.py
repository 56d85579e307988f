"""scribewatch: drop media in a watched folder, get subtitles; every step on /metrics.

Three packages and the composition root that wires them:

* `scribewatch.pipeline` — watcher, job store, the stages, the daemon (no metrics, no server);
* `scribewatch.exporter` — the metrics: Prometheus, GPU and host figures (no Whisper, no HTTP);
* `scribewatch.web` — the HTTP application: status page, /metrics, probes, transcription API;
* `scribewatch.cli` — the command line; the only module that builds them all.
"""

__version__ = "0.1.0"
