"""The HTTP API's requests in the job store: jobs of source `api`, and their answers kept by
content. A mixin of both stores (`sql.SqlStore`); the tables are schema version 6 (SQLite,
`sqlite_schema.py`) and 3 (PostgreSQL, `postgres.py`).

The store is where requests meet, on one node or several: a unique index allows one active
(queued or running) job per answer key, so a second request for the same answer joins the job
in flight instead of making another; `api_answers` keeps each answer by its key, bounded by
bytes and age, for every node of a shared store. An API job is claimed only by the node that
holds its spooled audio (`claim_next_api`), so `claim_next`'s folder order is left alone.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid

from ..job import Job

# The `library` of an API job: its `rel_path` is the answer key. No watch root is named so
# (a root's library is its absolute path; a named library is a word).
API_LIBRARY = "@api"
_ACTIVE = "status IN ('queued', 'running')"


@dataclasses.dataclass(frozen=True)
class StoredAnswer:
    key: str
    body: bytes
    content_type: str
    language: str
    audio_seconds: float
    job_id: int | None


@dataclasses.dataclass(frozen=True)
class Submitted:
    """What `submit_api_job` found: the answer already kept, or the active job for the key
    (`created`: this request made it, and its spooled audio is the job's now)."""
    answer: StoredAnswer | None = None
    job: Job | None = None
    created: bool = False


@dataclasses.dataclass(frozen=True)
class Evicted:
    age: int = 0
    bytes: int = 0


class ApiJobsSql:
    """Needs the engine's `_exec`, `_transaction`, `_NOW`/`_now_params` and `lease`."""

    def submit_api_job(self, key: str, endpoint: str, request: dict, *, size: int,
                       use_answer: bool = True) -> Submitted:
        """One transaction: the kept answer for `key` (its use noted), else the job in flight
        for it, else a new queued job of this node holding `request` (its parameters and the
        name of its spooled audio). `use_answer=False`: never answer from what is kept."""
        now = time.time()
        with self._transaction():
            if use_answer:
                answer = self._answer(key, now)
                if answer is not None:
                    return Submitted(answer=answer)
            row = self._exec(
                "INSERT INTO jobs (path, root, library, rel_path, size, status, detected_at, "
                "source, endpoint, answer_key, api_request, node) "
                "VALUES (?, 'api', ?, ?, ?, 'queued', ?, 'api', ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING *",
                (f"api:{endpoint}:{key[:16]}", API_LIBRARY, key, size, now, endpoint, key,
                 json.dumps(request), self.lease.node)).fetchone()
            if row is not None:
                return Submitted(job=Job.from_row(row), created=True)
            row = self._exec(f"SELECT * FROM jobs WHERE answer_key = ? AND {_ACTIVE}",
                             (key,)).fetchone()
            return Submitted(job=Job.from_row(row))

    def _answer(self, key: str, now: float) -> StoredAnswer | None:
        row = self._exec("SELECT answer_key, body, content_type, language, audio_seconds, "
                         "job_id FROM api_answers WHERE answer_key = ?", (key,)).fetchone()
        if row is None:
            return None
        self._exec("UPDATE api_answers SET used_at = ? WHERE answer_key = ?", (now, key))
        return StoredAnswer(row[0], bytes(row[1]), row[2], row[3], row[4], row[5])

    def api_answer(self, key: str) -> StoredAnswer | None:
        """The answer kept for `key` (its use noted: eviction takes the least recently used)."""
        with self._transaction():
            return self._answer(key, time.time())

    def record_api_answered(self, key: str, endpoint: str, answer: StoredAnswer,
                            size: int) -> int:
        """A request answered without a transcription of its own (a kept answer, or a job in
        flight it joined): a finished job, in `history` like any other."""
        now = time.time()
        return self._exec(
            "INSERT INTO jobs (path, root, library, rel_path, size, status, detected_at, "
            "started_at, finished_at, source, endpoint, answer_key, answered_by, language, "
            "audio_seconds, node) VALUES (?, 'api', ?, ?, ?, 'succeeded', ?, ?, ?, 'api', ?, ?, "
            "?, ?, ?, ?) RETURNING id",
            (f"api:{endpoint}:{key[:16]}", API_LIBRARY, key, size, now, now, now, endpoint, key,
             answer.job_id, answer.language, answer.audio_seconds,
             self.lease.node)).fetchall()[0][0]

    def claim_next_api(self, worker: str) -> Job | None:
        """The oldest queued API job whose audio this node holds, as `claim_next` claims
        (running, attempts + 1, a lease). API jobs go before any folder job: the daemon's
        workers ask here first."""
        token = uuid.uuid4().hex
        with self._transaction():
            row = self._exec(
                "SELECT id FROM jobs WHERE status = 'queued' AND source = 'api' AND node = ? "
                f"ORDER BY id LIMIT 1{self._lock_rows()}", (self.lease.node,)).fetchone()
            if row is None:
                return None
            return Job.from_row(self._exec(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, "
                f"worker = ?, lease_token = ?, lease_expires_at = {self._NOW} + ? "
                "WHERE id = ? RETURNING *",
                (time.time(), worker, token, *self._now_params(), self.lease.lease_seconds,
                 row[0])).fetchall()[0])

    def withdraw_api_job(self, job_id: int, reason: str, message: str) -> bool:
        """End a job no worker has taken yet (its wait ran out, its clients hung up). False: a
        worker has it already."""
        return self._exec(
            "UPDATE jobs SET status = 'failed', finished_at = ?, reason = ?, error_message = ? "
            "WHERE id = ? AND status = 'queued'",
            (time.time(), reason, message, job_id)).rowcount == 1

    def finish_api_job(self, job: Job, answer: StoredAnswer, *, max_bytes: int,
                       max_age_seconds: float, token: str | None = None, **fields) -> Evicted:
        """The job succeeded: its answer kept under its key and the job finished, in one
        transaction (a kill leaves both or neither); then what is over the bounds evicted."""
        now = time.time()
        with self._transaction():
            if max_bytes > 0 and max_age_seconds > 0 and len(answer.body) <= max_bytes:
                self._exec(
                    "INSERT INTO api_answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (answer_key) DO UPDATE SET body = excluded.body, "
                    "content_type = excluded.content_type, language = excluded.language, "
                    "audio_seconds = excluded.audio_seconds, bytes = excluded.bytes, "
                    "job_id = excluded.job_id, created_at = excluded.created_at, "
                    "used_at = excluded.used_at",
                    (answer.key, answer.body, answer.content_type, answer.language,
                     answer.audio_seconds, len(answer.body), job.id, now, now))
            self.finish(job.id, "succeeded", token=token, language=answer.language,
                        audio_seconds=answer.audio_seconds, **fields)
            return self.evict_api_answers(max_bytes, max_age_seconds, now)

    def evict_api_answers(self, max_bytes: int, max_age_seconds: float,
                          now: float | None = None) -> Evicted:
        """Answers older than `max_age_seconds`, then the least recently used ones until the
        rest fit in `max_bytes`."""
        now = time.time() if now is None else now
        with self._transaction():
            aged = self._exec("DELETE FROM api_answers WHERE created_at < ?",
                              (now - max_age_seconds,)).rowcount
            total = self._exec("SELECT COALESCE(SUM(bytes), 0) FROM api_answers").fetchone()[0]
            dropped = 0
            if total > max_bytes:
                over = total - max_bytes
                for key, size in self._exec("SELECT answer_key, bytes FROM api_answers "
                                            "ORDER BY used_at, answer_key").fetchall():
                    self._exec("DELETE FROM api_answers WHERE answer_key = ?", (key,))
                    dropped += 1
                    over -= size
                    if over <= 0:
                        break
            return Evicted(age=aged, bytes=dropped)

    def api_answers_size(self) -> tuple[int, int]:
        """(answers kept, their bytes)."""
        row = self._exec("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM api_answers").fetchone()
        return int(row[0]), int(row[1])

    def active_api_spools(self) -> set[str]:
        """The spooled audio this node's active API jobs still need (the rest is an orphan)."""
        names = set()
        for (request,) in self._exec(
                f"SELECT api_request FROM jobs WHERE source = 'api' AND node = ? AND {_ACTIVE}",
                (self.lease.node,)).fetchall():
            if request:
                names.add(json.loads(request).get("spool"))
        return names


__all__ = ["API_LIBRARY", "ApiJobsSql", "Evicted", "StoredAnswer", "Submitted"]
