"""The store itself: migrations on first use, SQLite setup, an append-only audit log."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from models.errors import ConfigurationError, Unavailable
from store import audit
from store.database import HEAD_REVISION, Database
from store.environments import get_or_create_workspace


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


async def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(tmp_path: object) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    try:
        async with db.read() as session:
            assert await session.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await session.scalar(text("PRAGMA foreign_keys")) == 1
            assert await session.scalar(text("PRAGMA busy_timeout")) >= 5000
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
