"""A unit of work looks an app or environment up by name once: later lookups in the same unit
reuse the row, but never one renamed or deleted since; the workspace id is kept across units
only once a unit that found it has committed. On SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from models.errors import NotFound
from models.settings import Settings
from services.unit import Units
from store.database import Database
from store.tables import Workspace


@pytest.fixture
async def units(db: Database, settings: Settings) -> Units:
    units = Units(db, settings)
    async with units.write() as w:
        for name in ("dev", "staging"):
            await w.environments.create_environment(name, actor="t")
        await w.environments.create_app("web", ["dev", "staging"], actor="t")
    return units


class Selects:
    """The SELECT statements the engine sends while counting."""

    def __init__(self, db: Database) -> None:
        self.sent: list[str] = []
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: object) -> None:
        statement = str(args[2]).lstrip()
        if statement.upper().startswith("SELECT"):
            self.sent.append(statement)

    def naming(self, table: str) -> int:
        return sum(1 for s in self.sent if f"FROM {table} " in s + " ")


async def test_a_second_lookup_in_one_unit_sends_no_query(units: Units, db: Database) -> None:
    selects = Selects(db)
    async with units.read() as w:
        first = await w.environments.environment("dev")
        app = await w.environments.app("web")
        assert await w.queue.environment("dev") is first
        assert await w.resolution.app("web") is app
    assert selects.naming("environment") == 1
    assert selects.naming("app") == 1
    # The workspace was found by an earlier unit: no unit of these asks for it again.
    assert selects.naming("workspace") == 0


async def test_a_renamed_environment_is_not_found_under_its_old_name(units: Units) -> None:
    async with units.write() as w:
        await w.environments.environment("staging")
        await w.environments.rename_environment("staging", "stage", actor="t")
        with pytest.raises(NotFound, match="environment 'staging' does not exist"):
            await w.environments.environment("staging")
        assert (await w.environments.environment("stage")).name == "stage"


async def test_a_deleted_app_is_not_found_in_the_unit_that_deleted_it(units: Units) -> None:
    async with units.write() as w:
        await w.environments.app("web")
        await w.environments.delete_app("web", actor="t")
        with pytest.raises(NotFound, match="app 'web' does not exist"):
            await w.environments.app("web")


async def test_the_workspace_id_is_kept_only_after_a_commit(
    db: Database, settings: Settings
) -> None:
    units = Units(db, settings)

    class Undone(Exception):
        pass

    with pytest.raises(Undone):
        async with units.write() as w:
            created = await w.workspace_id()  # the workspace row is made in this unit...
            raise Undone  # ...which rolls back
    async with db.read() as session:
        assert await session.scalar(select(Workspace)) is None
    async with units.write() as w:
        await w.environments.create_environment("dev", actor="t")
        kept = await w.workspace_id()
    async with db.read() as session:
        assert (await session.scalar(select(Workspace.id))) == kept
    async with units.read() as w:
        assert await w.workspace_id() == kept
    # On PostgreSQL the rolled-back row's id is not reused: keeping it would have been wrong.
    assert created is not None
