"""The job store's interface: what the daemon, intake and the command line may ask of a store,
whichever engine holds it. Two implementations pass the same contract tests
(tests/unit/pipeline/store/test_interface.py): SQLite (`sqlite.py`, one machine, the default)
and PostgreSQL (`postgres.py`, a queue several machines share). `open_store` (the package's
`__init__.py`) picks one by URL.

A job is keyed by (library, relative path): a named watch root and the file's path below it, so
two machines that mount one NAS at different places see one job per file.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Iterable, Protocol

from ..job import Job

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "skipped")


class StoreUnavailable(RuntimeError):
    """The store cannot be reached now (PostgreSQL stopped, the network down). Transient: the
    caller waits and tries again; nothing it holds is lost (leases decide who finishes)."""


@dataclasses.dataclass(frozen=True)
class LeaseSettings:
    """How long a claimed job is a node's own without a heartbeat, and when another node may
    take it over. See docs/architecture.md, "Several machines", for the trade-off."""
    node: str = dataclasses.field(default_factory=socket.gethostname)
    lease_seconds: float = 60.0
    takeover_delay_seconds: float = 0.0


class JobStore(Protocol):
    """The store is the queue and the history. Writes about a claimed job take its lease
    `token` (fencing): with a token that is no longer the job's, they change nothing and return
    False, so a node that lost its lease cannot overwrite the node that took the job over."""

    lease: LeaseSettings

    def close(self) -> None: ...
    def schema_version(self) -> int: ...
    def batch(self): ...   # a context manager: the writes inside as one transaction

    # -- intake ----------------------------------------------------------------------------
    def enqueue(self, path: str, root: str, size: int | None, mtime_ns: int | None,
                fingerprint: str, detected_at: float | None = None, *,
                library: str | None = None, rel_path: str | None = None,
                priority: int = 0, language_hint: dict | None = None,
                outputs: list[str] | None = None) -> int: ...
    def record_skipped(self, path: str, root: str, size, mtime_ns, fingerprint: str,
                       reason: str, message: str, *, library: str | None = None,
                       rel_path: str | None = None) -> int: ...
    def update_stat(self, job_id: int, size: int, mtime_ns: int) -> None: ...
    def latest_for_key(self, library: str, rel_path: str) -> Job | None: ...
    def latest_stat_for_key(self, library: str, rel_path: str) -> tuple | None: ...
    def move_key(self, library: str, rel_path: str, path: str, root: str, new_library: str,
                 new_rel_path: str, outputs: list[str]) -> Job | None: ...

    # -- workers ---------------------------------------------------------------------------
    def claim_next(self, worker: str, available_libraries: Iterable[str] | None = None,
                   now: float | None = None, *, suspects: bool = True) -> Job | None: ...
    def renew(self, job_id: int, token: str) -> bool: ...
    def holds(self, job_id: int, token: str) -> bool: ...
    def set_stage(self, job_id: int, stage: str, stage_seconds: dict | None = None,
                  token: str | None = None) -> bool: ...
    def set_checkpoint(self, job_id: int, checkpoint: float,
                       token: str | None = None) -> bool: ...
    def update(self, job_id: int, token: str | None = None, **fields) -> bool: ...
    def finish(self, job_id: int, status: str, *, reason: str | None = None,
               stage: str | None = None, message: str | None = None,
               token: str | None = None, **fields) -> bool: ...
    def requeue(self, job_id: int, *, not_before: float = 0.0, reason: str | None = None,
                stage: str | None = None, message: str | None = None,
                refund_attempt: bool = False, token: str | None = None) -> bool: ...
    def recover_after_crash(self, max_attempts: int) -> tuple[list[Job], list[Job]]: ...
    def take_over_expired(self, max_attempts: int) -> tuple[list[Job], list[Job]]: ...
    def next_wakeup(self) -> float | None: ...
    def check_writable(self) -> bool: ...

    # -- the command line ------------------------------------------------------------------
    def retry_failed(self, job_ids: Iterable[int] | None = None,
                     reason: str | None = None) -> list[int]: ...
    def redo(self, paths: Iterable[str] = (), under: str | None = None,
             statuses: Iterable[str] = FINAL) -> tuple[list[Job], list[Job]]: ...
    def get(self, job_id: int) -> Job | None: ...
    def latest_stat(self, path: str) -> tuple | None: ...
    def latest_for_path(self, path: str) -> Job | None: ...
    def counts(self) -> dict[str, int]: ...
    def oldest_queued_at(self) -> float | None: ...
    def last_success_at(self) -> float | None: ...
    def history(self, limit: int | None = 50, status: str | None = None) -> list[Job]: ...
    def all_jobs(self, after_id: int = 0, limit: int = 1000) -> list[Job]: ...
    def import_job(self, job: Job) -> bool: ...
    def stats(self) -> dict: ...


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> str:
    """`sqlite:///abs/path`, `sqlite:///rel/path` as SQLAlchemy reads it (three slashes, then
    the path: `sqlite:////abs`), or a plain path (today's `db` setting)."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://"):]
        return rest[1:] if rest.startswith("/") else rest
    return url


def describe(url: str) -> str:
    """The URL without a password, for logs and messages."""
    if not is_postgres_url(url):
        return url
    scheme, _, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
