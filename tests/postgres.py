"""A throwaway PostgreSQL cluster in a temp dir, from the machine's initdb and pg_ctl."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    return None


def available() -> str | None:
    """None when a cluster can be started, else the reason why not."""
    missing = [b for b in ("initdb", "pg_ctl") if _binary(b) is None]
    if missing:
        return f"PostgreSQL binaries not found: {', '.join(missing)}"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    def __init__(self, root: Path, port: int, run_as: list[str]) -> None:
        self.root = root
        self.port = port
        self.run_as = run_as

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        psql = _binary("psql")
        assert psql is not None
        out = subprocess.run(
            [
                *self.run_as,
                psql,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            [
                *self.run_as,
                _binary("pg_ctl") or "pg_ctl",
                "-D",
                str(self.root / "data"),
                "-m",
                mode,
                "stop",
            ],
            capture_output=True,
            check=False,
        )

    def start(self) -> None:
        subprocess.run(
            [
                *self.run_as,
                _binary("pg_ctl") or "pg_ctl",
                "-D",
                str(self.root / "data"),
                "-l",
                str(self.root / "log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c max_connections=200",
                "start",
            ],
            check=True,
            capture_output=True,
        )


@contextmanager
def cluster() -> Iterator[Cluster]:
    """initdb refuses to run as root, so as root the cluster runs as the postgres user."""
    root = Path(tempfile.mkdtemp(prefix="stageline-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *run_as,
            _binary("initdb") or "initdb",
            "-D",
            str(root / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        check=True,
        capture_output=True,
    )
    pg = Cluster(root, _free_port(), run_as)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


class LockHolder:
    """A second PostgreSQL session holding a lock, as another program might; and a view of
    which of the worker's statements wait on it."""

    def __init__(self, url: str) -> None:
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        self.database = self.dsn.rsplit("/", 1)[1]
        self.conn: Any = None

    async def hold(self, sql: str, *args: Any) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        await self.conn.execute("BEGIN")
        await self.conn.execute(sql, *args)

    async def waiting(self, text: str, timeout: float = 60) -> str:
        """The worker's statement blocked on our lock, once it is. (Watched from a session
        of its own: statistics views are a snapshot within one transaction.)"""
        watcher = await asyncpg.connect(self.dsn)
        try:
            for _ in range(int(timeout * 10)):
                rows = await watcher.fetch(
                    "SELECT query FROM pg_stat_activity WHERE datname = $1 AND "
                    "wait_event_type = 'Lock'",
                    self.database,
                )
                for row in rows:
                    if text in row["query"]:
                        return str(row["query"])
                await asyncio.sleep(0.1)
        finally:
            await watcher.close()
        raise AssertionError(f"no statement with {text!r} ever waited on the lock")

    async def release(self) -> None:
        await self.conn.execute("COMMIT")
        await self.conn.close()
