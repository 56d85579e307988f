"""The sender: one background thread that delivers what the targets make of finished jobs.

The daemon's workers only `submit()` (a lock held only to queue, no I/O): a media server
that is down, slow or misconfigured never holds up transcription. What waits is bounded
(`max_pending` items); past that, new items are dropped and counted. A refresh item (a folder)
waits `batch_seconds` so that a season finishing together is one refresh per folder; failed
requests are tried again after `backoff_seconds`, doubling, up to `max_attempts`. Nothing is
persisted: a notification still waiting when the daemon dies is lost (the subtitle is not).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import threading
import time
from typing import Callable, Hashable, Sequence

from ..contract import NullReporter, Reporter
from ..job import Job
from .http import DeliveryError
from .targets import Target

log = logging.getLogger(__name__)

# While the queue is full every finished job drops items: one log line per this many seconds
# (with the count since the last one) says so without flooding the log during an outage.
DROP_LOG_SECONDS = 60.0


@dataclasses.dataclass
class _Batch:
    due: float
    items: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(order=True)
class _Request:
    due: float
    seq: int
    target: Target = dataclasses.field(compare=False)
    payload: object = dataclasses.field(compare=False)
    size: int = dataclasses.field(compare=False)      # items it carries (the queue's unit)
    attempts: int = dataclasses.field(default=0, compare=False)


class Sender:
    def __init__(self, targets: Sequence[Target], *, reporter: Reporter | None = None,
                 batch_seconds: float = 5.0, max_pending: int = 1000, max_attempts: int = 5,
                 backoff_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.targets = list(targets)
        self.reporter: Reporter = reporter or NullReporter()
        self.batch_seconds, self.max_pending = batch_seconds, max_pending
        self.max_attempts, self.backoff_seconds = max_attempts, backoff_seconds
        self._clock = clock
        self._cond = threading.Condition()
        self._batches: dict[int, _Batch] = {}          # index of the target -> its open batch
        self._heap: list[_Request] = []
        self._seq = itertools.count()
        self._pending = 0
        self._flush = False        # stopping: send what waits now, no new batch windows
        self._abandon = False      # stopping, grace over: leave the rest
        self._thread: threading.Thread | None = None
        self._dropped_unlogged = 0
        self._drop_logged_at: float | None = None

    # -- the workers' side ----------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Hand over a finished job. Never blocks and never raises."""
        for index, target in enumerate(self.targets):
            try:
                items = target.items(job)
            except Exception:    # a bug in a target must not reach the worker
                log.exception("%s: cannot make a notification of job %d", target.name, job.id)
                continue
            dropped, say = 0, 0
            with self._cond:
                for item in items:
                    dropped += not self._add(index, target, item)
                pending = self._pending
                if dropped:
                    say = self._drop_to_log(dropped)
                self._cond.notify()
            for _ in range(dropped):
                self.reporter.notification_finished(target.name, "dropped")
            if say:
                log.warning("%d notification(s) dropped (%s, job %d the last): %d already "
                            "waiting (notify_queue_size)", say, target.name, job.id, pending)
            self.reporter.notification_queue(pending)

    def _drop_to_log(self, dropped: int) -> int:
        """How many drops to log now (0: not yet). Under the lock."""
        self._dropped_unlogged += dropped
        now = self._clock()
        if self._drop_logged_at is not None and now - self._drop_logged_at < DROP_LOG_SECONDS:
            return 0
        self._drop_logged_at, count, self._dropped_unlogged = now, self._dropped_unlogged, 0
        return count

    def _add(self, index: int, target: Target, item: Hashable) -> bool:
        now = self._clock()
        if target.batch:
            batch = self._batches.get(index)
            if batch is not None and item in batch.items:
                return True       # already on its way: coalesced
            if self._pending >= self.max_pending:
                return False
            if batch is None:
                batch = self._batches[index] = _Batch(now + self.batch_seconds)
            batch.items.append(item)
        else:
            if self._pending >= self.max_pending:
                return False
            for payload, size in target.requests([item]):
                heapq.heappush(self._heap, _Request(now, next(self._seq), target, payload, size))
        self._pending += 1
        return True

    @property
    def pending(self) -> int:
        with self._cond:
            return self._pending

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notify-sender", daemon=True)
        self._thread.start()

    def stop(self, grace: float = 5.0) -> None:
        """Send what waits (batch windows cut short) for up to `grace` seconds, then leave it."""
        with self._cond:
            self._flush = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(grace)
        with self._cond:
            self._abandon = True
            left = self._pending
            self._cond.notify()
        if left:
            log.warning("stopping: %d notification(s) not sent", left)

    # -- the sender's thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            request = self._next()
            if request is None:
                return
            self._attempt(request)

    def _next(self) -> _Request | None:
        """The next request that is due, waiting for it; None when stopping."""
        with self._cond:
            while not self._abandon:
                now = self._clock()
                for index, batch in list(self._batches.items()):
                    if batch.due <= now or self._flush:
                        del self._batches[index]
                        target = self.targets[index]
                        for payload, size in target.requests(batch.items):
                            heapq.heappush(self._heap, _Request(now, next(self._seq), target,
                                                                payload, size))
                if self._heap and self._heap[0].due <= now:
                    return heapq.heappop(self._heap)
                if self._flush and not self._heap:
                    return None
                dues = [b.due for b in self._batches.values()]
                if self._heap:
                    dues.append(self._heap[0].due)
                self._cond.wait(max(0.0, min(dues) - now) if dues else None)
            return None

    def _attempt(self, request: _Request) -> None:
        target = request.target
        request.attempts += 1
        started = time.perf_counter()
        try:
            target.send(request.payload)
        except DeliveryError as e:
            error, retry = str(e), e.retry
        except Exception as e:    # a bug, not the server: once, loudly
            log.exception("%s: unexpected error sending a notification", target.name)
            error, retry = f"{type(e).__name__}: {e}", False
        else:
            error, retry = None, False
        self.reporter.notification_request(target.name, time.perf_counter() - started)
        if error is None:
            log.debug("%s: notification sent (attempt %d)", target.name, request.attempts)
            return self._done(request, "sent")
        if retry and request.attempts < self.max_attempts:
            delay = self.backoff_seconds * 2 ** (request.attempts - 1)
            log.warning("%s: %s; trying again in %.1fs (attempt %d of %d)", target.name, error,
                        delay, request.attempts, self.max_attempts)
            with self._cond:
                request.due = self._clock() + delay
                heapq.heappush(self._heap, request)
            return
        log.error("%s: notification given up after %d attempt(s): %s", target.name,
                  request.attempts, error)
        self._done(request, "failed")

    def _done(self, request: _Request, result: str) -> None:
        with self._cond:
            self._pending -= request.size
            pending = self._pending
        self.reporter.notification_finished(request.target.name, result)
        self.reporter.notification_queue(pending)
