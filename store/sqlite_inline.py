"""SQLite for SQLAlchemy's asyncio engine without a thread per connection.

aiosqlite runs each call on a connection's own thread: a statement costs four hand-offs
between that thread and the event loop (cursor, execute, fetch, close), each a wake-up of
the loop. The benchmark measured that at about 0.4 ms of CPU per statement, more than the
statement itself (tens of microseconds on a local file in WAL mode). This driver keeps
aiosqlite's interface, which SQLAlchemy's `sqlite+aiosqlite` dialect speaks, and runs each
call where it is awaited.

That is safe because nothing here waits on a lock while the loop is blocked: in WAL mode
readers never wait for a writer, writers of this process take turns on an asyncio lock
before they begin, and writers of different processes on a lock file
(`store.sqlite_writers`), so `BEGIN IMMEDIATE` finds SQLite's write lock free. For any other
writer (a `sqlite3` shell, say) SQLite's own busy wait is short (BUSY_TIMEOUT_MS) and a
busy `BEGIN` is retried with asyncio sleeps, never by blocking the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

# The names SQLAlchemy's aiosqlite adapter copies from the driver module.
DatabaseError = sqlite3.DatabaseError
Error = sqlite3.Error
IntegrityError = sqlite3.IntegrityError
NotSupportedError = sqlite3.NotSupportedError
OperationalError = sqlite3.OperationalError
ProgrammingError = sqlite3.ProgrammingError
sqlite_version = sqlite3.sqlite_version
sqlite_version_info = sqlite3.sqlite_version_info
__version__ = "inline"

# SQLite's own busy handler blocks whoever runs the statement, here the event loop: it may
# wait only briefly (a reader in the rare moments WAL makes one wait). A writer that finds
# the lock held by a foreign process waits up to BUSY_GIVE_UP_SECONDS in asyncio sleeps.
BUSY_TIMEOUT_MS = 20
BUSY_RETRY_SECONDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
BUSY_GIVE_UP_SECONDS = 10.0


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


class Cursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        params = () if parameters is None else parameters
        if sql.startswith("BEGIN"):  # only a foreign writer can hold the lock: see above
            await self._begin(sql, params)
        else:
            self._cursor.execute(sql, params)
        return self

    async def _begin(self, sql: str, params: Sequence[Any]) -> None:
        waited = 0.0
        step = 0
        while True:
            try:
                self._cursor.execute(sql, params)
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or waited >= BUSY_GIVE_UP_SECONDS:
                    raise
            delay = BUSY_RETRY_SECONDS[min(step, len(BUSY_RETRY_SECONDS) - 1)]
            step += 1
            waited += delay
            await asyncio.sleep(delay)

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Cursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany() if size is None else self._cursor.fetchmany(size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_: Any) -> None:
        return None

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class Connection:
    """The part of `aiosqlite.Connection` SQLAlchemy uses, run in place."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = conn

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def __await__(self) -> Any:
        async def itself() -> Connection:
            return self

        return itself().__await__()

    def cursor(self) -> Cursor:
        return Cursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def connect(database: str) -> Connection:
    """Open the file in autocommit mode (SQLAlchemy issues BEGIN itself)."""
    return Connection(sqlite3.connect(database, isolation_level=None, check_same_thread=False))
