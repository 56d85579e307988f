"""scribewatch: drop media in a watched folder, get subtitles; every step on /metrics.

Two packages and the composition root that wires them:

* `scribewatch.pipeline` — watcher, job store, the stages, the daemon (no metrics, no HTTP);
* `scribewatch.exporter` — Prometheus, GPU and host figures, the HTTP server (no Whisper);
* `scribewatch.cli` — the command line; the only module that builds both.
"""

__version__ = "0.1.0"
