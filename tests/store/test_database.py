"""The store itself: migrations on first use, SQLite setup, an append-only audit log."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from models.errors import ConfigurationError, Unavailable
from store import audit
from store.database import HEAD_REVISION, Database
from store.environments import get_or_create_workspace
from store.sqlite_inline import BUSY_TIMEOUT_MS


async def test_schema_is_migrated_on_first_use(db: Database) -> None:
    async with db.read() as session:
        revision = await session.scalar(text("SELECT version_num FROM alembic_version"))
    assert revision == HEAD_REVISION


async def test_migrations_run_once_even_with_concurrent_first_users(database_url: str) -> None:
    first, second = Database(database_url), Database(database_url)
    try:
        await asyncio.gather(first.migrate(), second.migrate())
        async with first.read() as session:
            assert await session.scalar(text("SELECT count(*) FROM alembic_version")) == 1
    finally:
        await first.close()
        await second.close()


async def test_audit_log_refuses_updates_and_deletes(db: Database) -> None:
    async with db.write() as session:
        ws = await get_or_create_workspace(session, "default")
        audit.record(session, ws.id, "t", "test.event", "something")
    for statement in ("UPDATE audit_event SET actor = 'mallory'", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.write() as session:
                await session.execute(text(statement))
    async with db.read() as session:
        assert await session.scalar(text("SELECT actor FROM audit_event")) == "t"


async def test_sqlite_runs_with_wal_foreign_keys_and_a_short_busy_timeout(
    tmp_path: object,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    try:
        async with db.read() as session:
            assert await session.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await session.scalar(text("PRAGMA foreign_keys")) == 1
            # Statements run on the event loop: SQLite's own busy wait must stay short.
            assert await session.scalar(text("PRAGMA busy_timeout")) == BUSY_TIMEOUT_MS
    finally:
        await db.close()


class LoopGaps:
    """The longest the event loop went without running a 5 ms ticker."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> LoopGaps:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_a_write_waits_for_a_foreign_writer_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    try:
        await db.migrate()
        blocker = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another program (a sqlite3 shell) writing
        asyncio.get_running_loop().call_later(0.6, blocker.execute, "COMMIT")
        began = time.monotonic()
        with LoopGaps() as gaps:
            async with db.write() as session:
                ws = await get_or_create_workspace(session, "default")
                audit.record(session, ws.id, "t", "test.event", "after the foreign writer")
        assert time.monotonic() - began >= 0.6
        assert gaps.longest < 0.2, f"the event loop stalled for {gaps.longest:.3f} s"
        async with db.read() as session:
            assert await session.scalar(text("SELECT count(*) FROM audit_event")) == 1
        blocker.close()
    finally:
        await db.close()


WRITER = """
import asyncio, sys
from store import audit
from store.database import Database
from store.environments import get_or_create_workspace

async def main(url: str, name: str, count: int) -> None:
    db = Database(url)
    for i in range(count):
        async with db.write() as session:
            ws = await get_or_create_workspace(session, "default")
            audit.record(session, ws.id, name, "test.event", str(i))
    await db.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_writers_of_several_processes_take_turns(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    db = Database(url)
    try:
        await db.migrate()
        # This process holds the writers' lock file: the others queue on it, not in SQLite.
        async with db.write() as session:
            processes = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    WRITER,
                    url,
                    f"p{n}",
                    "150",
                    cwd=Path(__file__).parents[2],
                    stderr=asyncio.subprocess.PIPE,
                )
                for n in range(3)
            ]
            await asyncio.sleep(1.0)
            ws = await get_or_create_workspace(session, "default")
            audit.record(session, ws.id, "holder", "test.event", "first")
        errors = [(await p.communicate())[1].decode() for p in processes]
        assert [p.returncode for p in processes] == [0, 0, 0], errors
        async with db.read() as session:
            rows = (
                await session.execute(text("SELECT actor, subject FROM audit_event ORDER BY id"))
            ).all()
        assert rows[0] == ("holder", "first")
        for n in range(3):
            assert [d for a, d in rows if a == f"p{n}"] == [str(i) for i in range(150)]
    finally:
        await db.close()


async def test_sqlite_writers_take_the_write_lock_up_front(tmp_path: object) -> None:
    # Two read-then-write units of work: with BEGIN IMMEDIATE the second waits for the
    # first instead of failing with "database is locked" when it upgrades its lock.
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    order: list[str] = []

    async def unit(name: str) -> None:
        async with db.write() as session:
            ws = await get_or_create_workspace(session, "default")
            order.append(f"{name}-start")
            await asyncio.sleep(0.2)
            audit.record(session, ws.id, name, "test", name)
            order.append(f"{name}-end")

    try:
        await db.migrate()
        await asyncio.gather(unit("a"), unit("b"))
    finally:
        await db.close()
    assert order in (
        ["a-start", "a-end", "b-start", "b-end"],
        ["b-start", "b-end", "a-start", "a-end"],
    )


async def test_unreachable_database_is_reported_as_unavailable() -> None:
    db = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(Unavailable, match="cannot reach the database at postgresql"):
            await db.migrate()
    finally:
        await db.close()


def test_unsupported_database_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a database URL"):
        Database("not a url")
    with pytest.raises(ConfigurationError, match="not supported"):
        Database("mysql://x@y/z")


async def test_migrations_build_exactly_the_schema_of_the_tables(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from store.tables import Base

    await db.migrate()
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert diff == []
