"""Stable reason codes for failed and skipped jobs.

These strings are a public contract: they appear in the job store, in `history --json`, in log
lines and as the `reason` label of metrics. Add new codes; never rename or reuse one.
"""

from __future__ import annotations

# The four stages, in order. The exporter labels stage metrics with these names.
STAGES = ("probe", "decode", "transcribe", "write")

OUTCOMES = ("succeeded", "failed", "skipped")

# reason -> (stage it is reported under, transient?)  Transient failures are retried with
# backoff up to `max_attempts`; permanent ones fail at once.
FAILURE_REASONS: dict[str, tuple[str, bool]] = {
    "empty_file": ("probe", False),          # zero bytes
    "not_media": ("probe", False),           # no known container signature (text renamed .mp4)
    "corrupt_container": ("probe", False),   # looks like media, cannot be opened (truncated MP4)
    "no_audio_stream": ("probe", False),     # video without sound
    "unreadable": ("probe", True),           # permission denied / I/O error reading the source
    "vanished": ("probe", False),            # deleted or moved away before or during the job
    "decode_error": ("decode", False),       # container opens, audio data is broken
    "model_load_failed": ("transcribe", True),
    "transcribe_error": ("transcribe", True),
    "output_not_writable": ("write", True),  # output folder missing permissions / read-only
    "disk_full": ("write", True),            # ENOSPC / EDQUOT
    "write_error": ("write", True),          # any other OSError while writing outputs
    # the daemon died max_attempts times in a row at one point of this job
    "crashed_repeatedly": ("transcribe", False),
    "internal_error": ("transcribe", True),  # a bug: anything unexpected
}

SKIP_REASONS = (
    "subtitle_exists",      # Movie.en.srt (or .eng.srt, …) already beside the file / in output dir
    "embedded_subtitle",    # the container carries a subtitle stream in the target language
    "no_speech",            # VAD found no speech: no subtitle is written (an empty track is useless)
)

# Every (stage, reason) pair a failure can be reported with: the exporter pre-initialises them.
# `vanished` and `unreadable` can happen in every stage that touches the source file;
# `internal_error` and `crashed_repeatedly` in any stage.
FAILURE_LABELS: tuple[tuple[str, str], ...] = tuple(
    sorted(
        {(stage, reason) for reason, (stage, _) in FAILURE_REASONS.items()}
        | {("decode", "vanished"), ("decode", "unreadable"), ("write", "vanished")}
        | {(s, r) for s in STAGES for r in ("internal_error", "crashed_repeatedly")}
    )
)


class StageError(Exception):
    """A stage failed for a known reason. `reason` must be a key of FAILURE_REASONS."""

    def __init__(self, reason: str, message: str, stage: str | None = None):
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.stage = stage or FAILURE_REASONS[reason][0]
        self.message = message

    @property
    def transient(self) -> bool:
        return FAILURE_REASONS[self.reason][1]


class SkipJob(Exception):
    """The file needs no subtitle from us. `reason` must be one of SKIP_REASONS."""

    def __init__(self, reason: str, message: str):
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message
