"""The engine, its per-connection setup, units of work, and automatic migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from models.errors import ConfigurationError, Unavailable
from store import sqlite_inline
from store.sqlite_writers import WriterLock

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD_REVISION = "0011"


def redact(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _sqlite_setup(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy, not the driver, decide when transactions begin, so writes can take
    # the write lock up front with BEGIN IMMEDIATE instead of failing on upgrade.
    # (The in-place driver opens its connections that way already.)
    if dbapi_connection.isolation_level is not None:
        dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={sqlite_inline.BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    mode = "IMMEDIATE" if conn.get_execution_options().get("stageline_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """One per process. `write()` and `read()` each give one session, one transaction."""

    def __init__(self, url: str) -> None:
        try:
            self.url = make_url(url)
        except ArgumentError:
            raise ConfigurationError(
                f"STAGELINE_DATABASE_URL {url!r} is not a database URL; use "
                "sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/db"
            ) from None
        self.dialect = self.url.get_backend_name()
        if self.url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ConfigurationError(
                f"database driver {self.url.drivername!r} is not supported; use "
                "sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        options: dict[str, Any] = {}
        self._writers: WriterLock | None = None
        if self.dialect == "sqlite" and not self.url.query:
            options["async_creator"] = self._sqlite_connect
        if self.dialect == "sqlite" and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            self._writers = WriterLock(self.url.database)
        if self.dialect == "postgresql":
            # No pre-ping: it cost three round trips per unit of work (BEGIN, a ping,
            # ROLLBACK). A connection the server dropped fails its unit once, SQLAlchemy
            # then replaces every pooled connection older than the failure, and the
            # activity is retried (tests/workflows/test_store_outages.py).
            options = {"pool_size": 10, "max_overflow": 10}
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_setup)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self._migrated = False
        self._migrate_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()

    @property
    def where(self) -> str:
        return redact(self.url)

    async def close(self) -> None:
        await self.engine.dispose()
        if self._writers is not None:
            self._writers.close()

    async def _sqlite_connect(self) -> sqlite_inline.Connection:
        return sqlite_inline.connect(self.url.database or ":memory:")

    def _unavailable(self, exc: BaseException) -> Unavailable:
        reason = str(getattr(exc, "orig", exc) or type(exc).__name__).splitlines()[0]
        return Unavailable(
            f"cannot reach the database at {self.where} ({reason}); check "
            "STAGELINE_DATABASE_URL and that the database is running"
        )

    @asynccontextmanager
    async def _session(
        self, write: bool, one_statement: bool = False
    ) -> AsyncIterator[AsyncSession]:
        await self.migrate()
        if write and self.dialect == "sqlite":
            # One writer at a time in this process, then across processes: SQLite allows
            # one anyway, and writers that queue here wait in order, without the busy
            # handler's sleep-and-retry backoff (which the benchmark showed costing most of
            # a busy worker's time) and without blocking the event loop.
            async with (
                self._write_lock,
                self._writers or nullcontext(),
                self._open(write) as session,
            ):
                yield session
        else:
            async with self._open(write, one_statement) as session:
                yield session

    @asynccontextmanager
    async def _open(self, write: bool, one_statement: bool = False) -> AsyncIterator[AsyncSession]:
        try:
            async with self.engine.connect() as conn:
                if write and not (one_statement and self.dialect == "postgresql"):
                    conn = await conn.execution_options(stageline_write=True)
                elif self.dialect == "postgresql":
                    # PostgreSQL (READ COMMITTED) gives each statement its own snapshot,
                    # in a transaction or not: a reading unit's BEGIN and COMMIT were two
                    # round trips that changed nothing. A writing unit of one statement is
                    # atomic without them too.
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                async with (
                    AsyncSession(bind=conn, expire_on_commit=False) as session,
                    session.begin(),
                ):
                    yield session
        except (OSError, ConnectionError) as exc:
            raise self._unavailable(exc) from None
        except OperationalError as exc:
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                raise
            raise self._unavailable(exc) from None

    def write(self, *, one_statement: bool = False) -> AbstractAsyncContextManager[AsyncSession]:
        """A unit of work that changes state; committed once when the block ends.
        `one_statement`: the unit sends a single statement, which PostgreSQL then runs
        without BEGIN and COMMIT (two round trips fewer); never for more than one."""
        return self._session(write=True, one_statement=one_statement)

    def read(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A unit of work that only reads. On SQLite one transaction, so all it reads is one
        snapshot; on PostgreSQL each statement reads what was committed when it began (READ
        COMMITTED, as in a transaction there), without BEGIN and COMMIT."""
        return self._session(write=False)

    async def migrate(self) -> None:
        """Bring the schema to the head revision, once per process, only when behind."""
        if self._migrated:
            return
        async with self._migrate_lock:
            if self._migrated:
                return
            try:
                async with self.engine.connect() as conn:
                    behind = await self._current_revision(conn) != HEAD_REVISION
                if behind:
                    async with self.engine.connect() as conn:
                        conn = await conn.execution_options(stageline_write=True)
                        await conn.run_sync(_upgrade)
                        await conn.commit()
            except (OSError, ConnectionError) as exc:
                raise self._unavailable(exc) from None
            except (OperationalError, DBAPIError) as exc:
                raise self._unavailable(exc) from None
            self._migrated = True

    @staticmethod
    async def _current_revision(conn: AsyncConnection) -> str | None:
        def read(sync_conn: Any) -> str | None:
            from sqlalchemy import inspect

            if not inspect(sync_conn).has_table("alembic_version"):
                return None
            row = sync_conn.execute(text("SELECT version_num FROM alembic_version")).first()
            return None if row is None else str(row[0])

        return await conn.run_sync(read)


def _upgrade(sync_conn: Any) -> None:
    # Imported here: alembic costs ~100 ms to import and is needed only on a schema change.
    from alembic import command
    from alembic.config import Config

    # Two processes starting at once against a new database must not both migrate: take the
    # write lock (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), then look again.
    if sync_conn.dialect.name == "postgresql":
        sync_conn.execute(text("SELECT pg_advisory_xact_lock(7423001)"))
    else:
        sync_conn.execute(text("SELECT 1"))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = sync_conn
    command.upgrade(config, "head")
