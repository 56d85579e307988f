"""Several real daemons sharing one PostgreSQL job store and one folder (a cluster on one
machine): each `ClusterNode` is a `Daemon` with its own node name, work folder and port, the
shared folder as the library `media`, short leases, and the store read through PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from tests.harness.daemon import Daemon
from tests.harness.postgres import PostgresServer

# Short leases keep takeovers quick in tests; the heartbeat stays well inside one.
LEASE_SECONDS = 3.0
HEARTBEAT_SECONDS = 0.5


class ClusterNode(Daemon):
    def __init__(self, tmp: Path, server: PostgresServer, store_url: str, node: str,
                 library: Path, overrides: dict | None = None, **kw):
        self.server, self.store_url = server, store_url
        super().__init__(tmp, {
            "store_url": store_url, "node_name": node, "watch_dirs": [],
            "libraries": {"media": str(library)}, "lease_seconds": LEASE_SECONDS,
            "heartbeat_seconds": HEARTBEAT_SECONDS, "cpu_threads": 1,
            **(overrides or {})}, **kw)
        self.node = node

    def query(self, sql: str, params=()) -> list[dict]:
        return self.server.query(self.store_url, sql.replace("?", "%s"), params)


def cluster(tmp: Path, server: PostgresServer, store_url: str, library: Path, model: str,
            names=("a", "b"), overrides: dict | None = None) -> list[ClusterNode]:
    """Nodes (not started) on one store and one library folder."""
    return [ClusterNode(tmp / name, server, store_url, name, library,
                        {"model": model, **(overrides or {})}) for name in names]
