"""The bounded domain of every label a metric family may carry: the patterns its values must
match (the tests check scrapes against them), so no path, file name or free text ever becomes a
label. Used by the catalog (`catalog.py`), which re-exports these names."""

from __future__ import annotations

import re

from ..pipeline.contract import (
    ARR_APPS,
    ARR_EVENTS,
    ARR_OUTCOMES,
    FAILURE_REASONS,
    LANGUAGE_LABELS,
    LANGUAGE_SOURCES,
    NOTIFY_RESULTS,
    NOTIFY_TARGETS,
    OUTCOMES,
    OUTPUT_KINDS,
    RETRY_RESULTS,
    SKIP_REASONS,
    SOURCES,
    STAGES,
)

ROLES = ("watch", "output", "store")
# What a retry request from the status page came to: the daemon's answers, or refused as
# possibly cross-site (web.status_page) before it reached the daemon.
RETRY_REQUEST_RESULTS = (*RETRY_RESULTS, "refused")
# The HTTP API's endpoints (`endpoint` label) and the statuses it answers with (`code`; any
# other is counted as "other"). 499: the client hung up before its answer.
API_ENDPOINTS = ("asr", "detect_language", "transcriptions", "translations")
API_CODES = ("200", "400", "401", "411", "413", "422", "499", "500", "503", "507")
GPU_LABELS = ("gpu", "uuid", "name")

# NVML clock event ("throttle") reason bits (nvmlClocksEventReason*). A fixed, bounded set:
# one series per bit, so a new reason in a future driver never adds an unknown label value.
THROTTLE_REASONS: dict[str, int] = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}

def _one_of(values) -> str:
    return "|".join(re.escape(v) for v in values)


# Every label a family may carry, with the pattern its values must match: the bounded domain
# that keeps paths, file names and free text out of labels (the tests check scrapes against it).
LABEL_PATTERNS: dict[str, str] = {
    "stage": _one_of(STAGES),
    "target": _one_of(NOTIFY_TARGETS),
    # what a notification, a retry request or a Sonarr/Radarr webhook came to
    "result": _one_of(sorted({*NOTIFY_RESULTS, *RETRY_REQUEST_RESULTS, *ARR_OUTCOMES})),
    "app": _one_of(ARR_APPS),
    "event": _one_of(ARR_EVENTS),
    "outcome": _one_of(OUTCOMES),
    "reason": _one_of([*FAILURE_REASONS, *SKIP_REASONS, *THROTTLE_REASONS]),
    "worker": r"[0-9]{1,3}",
    # `source`: a job's origin (folder|api) on the outcome metrics, and where a language
    # decision came from on scribewatch_language_decisions_total. Two fixed sets, one name.
    "source": _one_of([*SOURCES, *LANGUAGE_SOURCES]),
    "endpoint": _one_of(API_ENDPOINTS),
    "code": _one_of([*API_CODES, "other"]),
    "language": _one_of(sorted(LANGUAGE_LABELS)),
    "kind": _one_of(OUTPUT_KINDS),
    "role": _one_of(ROLES),
    "model": r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    "device": r"[a-z]+(:[0-9]+)?",
    "compute_type": r"[a-z0-9_]{1,32}",
    "version": r"[A-Za-z0-9.+_-]{1,40}",
    "faster_whisper": r"[A-Za-z0-9.+_-]{1,40}",
    "ctranslate2": r"[A-Za-z0-9.+_-]{1,40}",
    "python": r"[0-9]+\.[0-9]+\.[0-9]+[a-z0-9]*",
    "gpu": r"([0-9]{1,2})?",   # empty on a CPU worker's scribewatch_worker_info
    "uuid": r"(GPU|MIG)-[0-9a-fA-F-]{8,64}",
    "name": r"[A-Za-z0-9][A-Za-z0-9 ._()-]{0,63}",
}
