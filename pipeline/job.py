"""`Job`: one row of the job store's `jobs` table, typed. What the store hands out; the CLI's
`history --json` prints `as_dict()`, whose keys are the table's columns, in the table's order.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

# Stored as JSON text; empty → these values (a dict, a list, None).
_JSON_DEFAULTS: dict[str, Any] = {"stage_seconds": {}, "outputs": [], "suspect": None,
                                  "stage_spans": {}, "language_hint": None, "api_request": None}


@dataclasses.dataclass(frozen=True)
class Job:
    # Field order is the table's column order (sqlite_schema.SCHEMA, then the migrations), so
    # `as_dict()` prints what `SELECT *` printed before there was a type.
    id: int
    path: str
    root: str                               # the watch folder it came from (mount health)
    size: int | None
    mtime_ns: int | None
    fingerprint: str | None
    status: str                             # queued running succeeded failed skipped
    attempts: int
    not_before: float                       # retry backoff, unix time
    worker: str | None
    detected_at: float
    started_at: float | None
    finished_at: float | None
    current_stage: str | None
    stage_seconds: dict[str, float]
    audio_seconds: float | None
    language: str | None
    language_probability: float | None
    model: str | None
    device: str | None
    compute_type: str | None
    outputs: list[str]                      # subtitle files this job wrote
    error_stage: str | None
    reason: str | None
    error_message: str | None
    suspect: list[str] | None               # hallucination-guard findings
    cpu_avg_ratio: float | None
    cpu_max_ratio: float | None
    rss_max_bytes: int | None
    gpu_util_max_ratio: float | None
    gpu_memory_max_bytes: int | None
    # Crash accounting (schema version 2; see JobStore.recover_after_crash).
    checkpoint: float = 0.0                 # progress within current_stage (s of audio)
    crashes: int = 0                        # deaths of the daemon during this job
    strikes: int = 0                        # of them, in a row at one point
    crash_point: str | None = None          # where the last one was: 'transcribe@60'
    crash_seq: int | None = None            # which death of the daemon that was
    # Schema version 3: forced, tag, hint, model, vote or default (language/decision.py).
    language_source: str | None = None
    # Schema version 4: when each stage ran, {stage: [start, end]} in unix time
    stage_spans: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    # Libraries and leases (schema version 3; see pipeline/store/interface.py).
    library: str | None = None              # the named watch root (or the root's path)
    rel_path: str | None = None             # the file below it: (library, rel_path) is the key
    node: str | None = None                 # the node that claimed it last
    lease_token: str | None = None          # that claim's token: fencing for its writes
    lease_expires_at: float | None = None   # on the store's clock; renewed by a heartbeat
    takeovers: int = 0                      # times another node took it over (lease expired)
    # Schema version 6: API requests are jobs too (pipeline/api/queue.py).
    source: str = "folder"                  # folder, or api (contract.SOURCES)
    endpoint: str | None = None             # the API's endpoint label: asr, transcriptions, …
    answer_key: str | None = None           # the answer's key: audio hash + what changes it
    api_request: dict | None = None         # the request's parameters and its spooled audio
    answered_by: int | None = None          # the job whose answer it got (no run of its own)
    # Schema version 7 (pipeline/arr/): imports before the folder backlog, and what the import
    # said of the language: {"language": "ja", "note": "Sonarr: series.originalLanguage …"}.
    priority: int = 0                       # store/sqlite_schema.py: FOLDER_/IMPORT_PRIORITY
    language_hint: dict[str, str] | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Job":
        """From a row of `SELECT *` (sqlite3.Row, or the PostgreSQL store's rows). Columns a
        newer release added are left out."""
        values = {}
        for name in _FIELDS:
            value = row[name]
            if name in _JSON_DEFAULTS:
                value = json.loads(value) if value else _copy(_JSON_DEFAULTS[name])
            values[name] = value
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _copy(value):
    return type(value)() if value is not None else None


_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
