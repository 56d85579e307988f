"""A real PostgreSQL 15 server for the tests and benchmarks: its own data folder under /tmp, a
free loopback port, trust authentication, stopped and removed at the end.

    with PostgresServer.start_new() as pg:      # or the `postgres` fixture (tests/conftest.py)
        url = pg.create_database()              # a fresh database per test

The server refuses to run as root, so as root it runs as the OS user `postgres` (runuser), in
a folder that user owns. Without the binaries the test skips with the package to install; under
CI=true it fails.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.harness import IN_CI, free_port

PG_BIN = Path(os.environ.get("SCRIBEWATCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
_names = itertools.count(1)


def unavailable_reason() -> str | None:
    """Why no server can be started here, or None."""
    if not (PG_BIN / "pg_ctl").exists():
        return f"PostgreSQL 15 server binaries not in {PG_BIN} (apt-get install postgresql)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without runuser: the server refuses to run as root"
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no OS user 'postgres' to run the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg not installed (pip install -e '.[postgres]')"
    return None


def require_postgres() -> None:
    why = unavailable_reason()
    if why:
        if IN_CI:
            pytest.fail(f"CI=true and {why}")
        pytest.skip(why)


class PostgresServer:
    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.data = folder / "data"

    @classmethod
    def start_new(cls) -> "PostgresServer":
        folder = Path(tempfile.mkdtemp(prefix="scribewatch-pg-", dir="/tmp"))
        server = cls(folder, free_port())
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        server._run("initdb", "-D", str(server.data), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8", "--locale", "C")
        server.start()
        return server

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(PG_BIN / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}):\n{result.stdout}\n"
                               f"{result.stderr}\n{self.log()}")
        return result

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        # fsync off: the tests kill nodes, not the server's machine.
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                  "-c max_connections=200", "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        cmd = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True).returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()

    # -- databases -------------------------------------------------------------------------
    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = name or f"t{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}"')
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def query(self, url: str, sql: str, params=()) -> list[dict]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(url, row_factory=dict_row, connect_timeout=5) as con:
            return list(con.execute(sql, params))
