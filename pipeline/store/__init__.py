"""The job store: the queue and the history. `interface.py` says what a store does
(`JobStore`); `sqlite.py` (one machine) and `postgres.py` (several) do it, sharing `sql.py`.
`open_store(url)` picks the engine; callers import the interface's names from here.

The engines import `interface.py`, never this module, so the arrows point one way:
`store` → engines → `sql` → `interface`.
"""

from __future__ import annotations

import os

from .interface import (
    ACTIVE,
    FINAL,
    JobStore,
    LeaseSettings,
    StoreUnavailable,
    describe,
    is_postgres_url,
    sqlite_path,
)
from .sqlite import SqliteStore

__all__ = ["ACTIVE", "FINAL", "JobStore", "LeaseSettings", "SqliteStore", "StoreUnavailable",
           "describe", "is_postgres_url", "open_store", "sqlite_path"]


def open_store(url: str | os.PathLike, lease: LeaseSettings | None = None) -> JobStore:
    """The store a URL names: `postgresql://…` or `sqlite:///path` (or a bare path)."""
    url = os.fspath(url)
    lease = lease or LeaseSettings()
    if is_postgres_url(url):
        # psycopg (the `postgres` extra) is imported only where PostgreSQL is used: the
        # engine's module is loaded here, at run time, and nothing imports it back.
        from .postgres import PostgresStore
        return PostgresStore(url, lease)
    return SqliteStore(sqlite_path(url), lease)
