"""The database briefly unavailable mid-promotion: SQLite locked past its busy timeout, a
PostgreSQL connection dropped, PostgreSQL stopped and started again. The database activities
retry and the promotion completes; nothing is written twice or half."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select

from store.sqlite_inline import BUSY_GIVE_UP_SECONDS
from store.tables import StepRun
from tests import postgres
from tests.http_recorder import recorder
from tests.stack import Stack, stack
from tests.workflows import scenario

# Among the slowest suites (workers killed, databases stopped): `make test-fast` leaves
# them out; `make test` and CI run them.
pytestmark = pytest.mark.slow


@pytest.fixture
async def sqlite_ws(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    with recorder() as hooks:
        async with stack(temporal, tmp_path / "home") as s:
            await scenario.build(s, hooks.url)
            yield s


@pytest.fixture
async def pg_ws(
    temporal: Any, tmp_path: Path, pg: postgres.Cluster | None
) -> AsyncIterator[tuple[Stack, postgres.Cluster]]:
    assert pg is not None, postgres.available()
    url = pg.create_database(f"outage_{uuid.uuid4().hex[:12]}")
    with recorder() as hooks:
        async with stack(temporal, tmp_path / "home", database_url=url) as s:
            await scenario.build(s, hooks.url)
            yield s, pg


async def steps_run(s: Stack) -> list[tuple[str, str]]:
    async with s.db.read() as session:
        rows = (await session.scalars(select(StepRun).order_by(StepRun.id))).all()
    return [(r.name, r.status) for r in rows]


async def test_sqlite_locked_past_its_busy_timeout_the_promotion_retries_and_completes(
    sqlite_ws: Stack, tmp_path: Path
) -> None:
    s = sqlite_ws
    marker = tmp_path / "steps"
    await s.releases.create_release("web", "1.0.0", scenario.marked_pipeline(marker), actor="t")
    database = s.settings.database_url.removeprefix("sqlite+aiosqlite:///")
    held = BUSY_GIVE_UP_SECONDS + 2
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another program holding the write lock
    began = time.monotonic()
    try:
        handle = await s.start_promotion("web", "1.0.0", "dev")
        await asyncio.sleep(held)
        # The gates' write gave up on the lock once ("database is locked") and waits for
        # its retry; nothing of the promotion was written.
        assert not marker.exists()
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    await scenario.assert_deployed_once(s, handle)
    assert time.monotonic() - began > held
    assert scenario.counts(marker) == {
        "deploy start": 1,
        "deploy end": 1,
        "verify start": 1,
        "verify end": 1,
    }


async def block_recording(s: Stack, handle: Any, marker: Path) -> postgres.LockHolder:
    """Hold the deployment's row once its steps ran, and see the worker's write wait on it."""
    await scenario.wait_for_line(marker, "verify start")
    holder = postgres.LockHolder(s.settings.database_url)
    await holder.hold(
        "SELECT id FROM deployment WHERE workflow_id = $1 FOR NO KEY UPDATE", handle.id
    )
    await holder.waiting("UPDATE deployment")
    return holder


async def test_postgresql_connection_dropped_the_write_is_retried_and_completes(
    pg_ws: tuple[Stack, postgres.Cluster], tmp_path: Path
) -> None:
    s, _ = pg_ws
    marker = tmp_path / "steps"
    await s.releases.create_release(
        "web", "1.0.0", scenario.marked_pipeline(marker, verify_sleep=1), actor="t"
    )
    handle = await s.start_promotion("web", "1.0.0", "dev")
    holder = await block_recording(s, handle, marker)
    # Drop the worker's connections, the waiting one included, as a failover or a
    # network blip would.
    watcher = await asyncpg.connect(holder.dsn)
    try:
        dropped = await watcher.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 "
            "AND pid NOT IN (pg_backend_pid(), $2)",
            holder.database,
            holder.conn.get_server_pid(),
        )
    finally:
        await watcher.close()
    assert dropped >= 1
    await holder.release()
    await scenario.assert_deployed_once(s, handle)
    # The steps had run before the drop; only the database write was retried.
    assert await steps_run(s) == [("deploy", "succeeded"), ("smoke", "succeeded")]


async def test_postgresql_restarted_mid_promotion_it_completes(
    pg_ws: tuple[Stack, postgres.Cluster], tmp_path: Path
) -> None:
    s, cluster = pg_ws
    marker = tmp_path / "steps"
    await s.releases.create_release(
        "web", "1.0.0", scenario.marked_pipeline(marker, verify_sleep=1), actor="t"
    )
    handle = await s.start_promotion("web", "1.0.0", "dev")
    holder = await block_recording(s, handle, marker)
    # Down for a few seconds (every session ends, our lock with it), then back.
    await asyncio.to_thread(cluster.stop)
    await asyncio.sleep(3)
    await asyncio.to_thread(cluster.start)
    holder.conn.terminate()  # its session is gone with the server
    await scenario.assert_deployed_once(s, handle)
    assert await steps_run(s) == [("deploy", "succeeded"), ("smoke", "succeeded")]
