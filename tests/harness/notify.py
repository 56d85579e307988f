"""What the notification tests share: a finished `Job` as the store hands it out, and a
Reporter that records the notification events (the pipeline's side of the metrics)."""

from __future__ import annotations

import dataclasses
import threading
import time

from scribewatch.pipeline.contract import NullReporter
from scribewatch.pipeline.job import Job


def finished_job(path: str, *, id: int = 1, status: str = "succeeded",
                 outputs: list[str] | None = None, **fields) -> Job:
    """A job row after `store.finish`: succeeded with `<stem>.en.srt` beside it by default."""
    now = time.time()
    if outputs is None and status == "succeeded":
        outputs = [path.rsplit(".", 1)[0] + ".en.srt"]
    values = dict(
        id=id, path=path, root=path.rsplit("/", 1)[0], size=1000, mtime_ns=1, fingerprint="f",
        status=status, attempts=1, not_before=0.0, worker=None, detected_at=now - 12.5,
        started_at=now - 10.0, finished_at=now, current_stage="write",
        stage_seconds={"probe": 0.01, "decode": 0.2, "transcribe": 9.5, "write": 0.002},
        audio_seconds=11.0, language="en" if status == "succeeded" else None,
        language_probability=0.99, model="tiny.en", device="cpu", compute_type="int8",
        outputs=outputs or [], error_stage=None, reason=None, error_message=None, suspect=None,
        cpu_avg_ratio=None, cpu_max_ratio=None, rss_max_bytes=None, gpu_util_max_ratio=None,
        gpu_memory_max_bytes=None)
    values.update(fields)
    return Job(**values)


@dataclasses.dataclass
class NotifyEvents(NullReporter):
    """The notification events a Sender reported, in order."""
    finished: list = dataclasses.field(default_factory=list)     # (target, result)
    requests: list = dataclasses.field(default_factory=list)     # (target, seconds)
    queue: list = dataclasses.field(default_factory=list)        # lengths
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def notification_finished(self, target, result):
        with self.lock:
            self.finished.append((target, result))

    def notification_request(self, target, seconds):
        with self.lock:
            self.requests.append((target, seconds))

    def notification_queue(self, length):
        with self.lock:
            self.queue.append(length)

    def count(self, target: str, result: str) -> int:
        with self.lock:
            return self.finished.count((target, result))
