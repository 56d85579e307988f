"""OpenMetrics rendering that remembers each series' escaped `name{labels}` prefix.

prometheus-client re-escapes every metric and label name character by character on every
scrape: about two thirds of a render's 2 ms of GIL time, which twenty scrapers at once feel.
Our series are few and fixed (bounded labels by design), so the prefix of each is built once,
with prometheus-client's own escaping functions, and only the values are formatted per scrape.
The bytes are the same as `prometheus_client.openmetrics.exposition.generate_latest` (a test
compares them); anything this encoder does not handle (exemplars, timestamps, native
histograms) falls back to that function.

`Exposition` puts the daemon's families together for a scrape and keeps the text of those that
change only on pipeline events until the next event.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics import exposition as om
from prometheus_client.utils import floatToGoString

# A safety net, not a tuning knob: the catalog keeps series bounded, so the cache never fills
# unless a collector misbehaves; then it starts over rather than growing without limit.
MAX_CACHED_SERIES = 20_000


class Unsupported(Exception):
    """A sample this encoder does not write (exemplar, timestamp, native histogram)."""


class CachedOpenMetricsEncoder:
    """`encoder(registry) -> bytes`, OpenMetrics 1.0.0 with the default (underscores) escaping."""

    def __init__(self):
        self._headers: dict[tuple, str] = {}
        self._prefixes: dict[tuple, str] = {}
        self._lock = threading.Lock()     # renders of one server may overlap (text and gzip)

    @staticmethod
    def can_replace(encoder) -> bool:
        """True for the encoder `prometheus_client.exposition.choose_encoder` picks for an
        OpenMetrics 1.0.0 request with the default escaping (what Prometheus asks for)."""
        return (isinstance(encoder, functools.partial) and encoder.func is om.generate_latest
                and not encoder.args
                and encoder.keywords.get("escaping", om.UNDERSCORES) == om.UNDERSCORES
                and encoder.keywords.get("version", "1.0.0") == "1.0.0")

    def __call__(self, registry: CollectorRegistry) -> bytes:
        try:
            return (self.families(registry.collect()) + "# EOF\n").encode("utf-8")
        except Unsupported:
            return om.generate_latest(registry)

    def families(self, metrics) -> str:
        """The text of `metrics` (collected families), without the closing `# EOF`. Raises
        Unsupported for what only prometheus-client's own encoder writes."""
        out: list[str] = []
        headers, prefixes = self._headers, self._prefixes
        with self._lock:
            if len(prefixes) > MAX_CACHED_SERIES:
                headers.clear()
                prefixes.clear()
            for metric in metrics:
                key = (metric.name, metric.documentation, metric.type, metric.unit)
                head = headers.get(key)
                if head is None:
                    head = headers[key] = _header(*key)
                out.append(head)
                for s in metric.samples:
                    if (s.exemplar or s.timestamp is not None or s.native_histogram
                            or s.value is None):
                        raise Unsupported
                    series = (s.name, tuple(s.labels.items()))
                    prefix = prefixes.get(series)
                    if prefix is None:
                        prefix = prefixes[series] = _prefix(s.name, s.labels)
                    out.append(f"{prefix} {floatToGoString(s.value)}\n")
        return "".join(out)


class Exposition:
    """What /metrics shows, as one registry (`collect()`, for prometheus-client's other formats)
    with a fast path for OpenMetrics, the format Prometheus asks for.

    The pipeline's families change only when the reporter records something (a few times a
    job), so their text is kept until `version()` moves; only the live families (the daemon's
    state, host, process, GPU) are rendered at every scrape. That takes the costliest part of a
    render — the histograms' buckets — off the scrape.
    """

    def __init__(self, events: CollectorRegistry, version: Callable[[], int],
                 live: CollectorRegistry):
        self.events, self.live = events, live
        self._version = version
        self._encoder = CachedOpenMetricsEncoder()
        self._events_text: tuple[int | None, bytes] = (None, b"")   # (version, encoded)
        self._lock = threading.Lock()

    def collect(self):
        yield from self.events.collect()
        yield from self.live.collect()

    def openmetrics(self) -> bytes:
        try:
            with self._lock:
                # Read before collecting: a change recorded during the render moves the version
                # on, so text that may lack it is not reused.
                version = self._version()
                if self._events_text[0] != version:
                    text = self._encoder.families(self.events.collect())
                    self._events_text = (version, text.encode("utf-8"))
                live = self._encoder.families(self.live.collect())
                events = self._events_text[1]
            return events + (live + "# EOF\n").encode("utf-8")
        except Unsupported:
            return om.generate_latest(self)


def _header(name: str, documentation: str, mtype: str, unit: str) -> str:
    esc = om.escape_metric_name(name)
    help_text = om._escape(documentation, om.ALLOWUTF8, om._is_legacy_labelname_rune)
    head = f"# HELP {esc} {help_text}\n# TYPE {esc} {mtype}\n"
    if unit:
        head += f"# UNIT {esc} {unit}\n"
    return head


def _prefix(name: str, labels: dict) -> str:
    labelstr = ",".join(
        '{}="{}"'.format(om.escape_label_name(k),
                         om._escape(v, om.ALLOWUTF8, om._is_legacy_labelname_rune))
        for k, v in sorted(labels.items()))
    # Sample names go through the label-name escaping, as in prometheus-client's encoder.
    sample_name = om._escape(name, om.UNDERSCORES, om._is_legacy_labelname_rune)
    return sample_name + ("{" + labelstr + "}" if labelstr else "")
