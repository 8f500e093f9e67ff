"""Data namespaces: per environment unless shared, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from models.errors import BadInput, NotFound, Refused
from models.settings import Settings
from services.data import DataItem
from services.unit import Units
from store import audit
from store import data as data_repo
from store.database import Database
from store.tables import App


@pytest.fixture
async def units(db: Database, settings: Settings) -> Units:
    units = Units(db, settings)
    async with units.write() as w:
        for name in ("dev", "staging", "production"):
            await w.environments.create_environment(name, actor="t")
        await w.environments.create_app("web", ["dev", "staging", "production"], actor="t")
    return units


async def keys(units: Units, env: str, kind: str = "threads") -> list[str]:
    async with units.read() as w:
        return [i.key for i in await w.data.entries(env, "web", kind)]


async def get(units: Units, env: str, kind: str, key: str) -> DataItem:
    async with units.read() as w:
        return await w.data.get(env, "web", kind, key)


async def test_data_written_in_one_environment_is_invisible_from_the_others(
    units: Units,
) -> None:
    async with units.write() as w:
        await w.data.put("dev", "web", "threads", "t-dev", "test conversation", actor="t")
    async with units.write() as w:
        await w.data.put(
            "production", "web", "threads", "t-prod", "customer conversation", actor="t"
        )
    assert await keys(units, "dev") == ["t-dev"]
    assert await keys(units, "staging") == []
    assert await keys(units, "production") == ["t-prod"]
    with pytest.raises(NotFound):
        await get(units, "staging", "threads", "t-dev")
    item = await get(units, "production", "threads", "t-prod")
    assert (item.namespace, item.value) == ("production/web", "customer conversation")


async def test_a_shared_kind_is_visible_to_all_environments(units: Units) -> None:
    async with units.write() as w:
        await w.data.share("web", "sources", True, actor="t")
    async with units.write() as w:
        await w.data.put("dev", "web", "sources", "handbook", "v1", actor="t")
    for env in ("dev", "staging", "production"):
        item = await get(units, env, "sources", "handbook")
        assert (item.namespace, item.value) == ("shared/web", "v1")
    assert await keys(units, "staging", "memory") == []  # other kinds stay per environment
    async with units.read() as w:
        assert (await w.data.namespaces("staging", "web")) == {
            "threads": "staging/web",
            "sources": "shared/web",
            "memory": "staging/web",
            "artifacts": "staging/web",
        }


async def test_copy_is_explicit_selective_and_audited(units: Units, db: Database) -> None:
    async with units.write() as w:
        await w.data.put("production", "web", "memory", "faq", "sanitised answers", actor="t")
        await w.data.put("production", "web", "memory", "pii", "do not copy", actor="t")
    async with units.write() as w:
        copied = await w.data.copy(
            "web", "memory", "production", "staging", actor="alice", keys=["faq"]
        )
    assert copied == 1
    assert await keys(units, "staging", "memory") == ["faq"]
    assert await keys(units, "dev", "memory") == []
    async with db.read() as session:
        ws = (await session.scalars(select(App))).one().workspace_id
        actions = [(e.actor, e.action) for e in await audit.events(session, ws)]
    assert ("alice", "data.copy") in actions
    async with units.write() as w:
        await w.data.share("web", "sources", True, actor="t")
    with pytest.raises(Refused, match="shared by all environments"):
        async with units.write() as w:
            await w.data.copy("web", "sources", "dev", "staging", actor="t")


async def test_the_repository_cannot_be_called_without_an_environment(
    units: Units, db: Database
) -> None:
    async with db.read() as session:
        app = (await session.scalars(select(App))).one()
        with pytest.raises(TypeError):
            await data_repo.records(session, app=app, kind="threads")  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            await data_repo.put(session, app, "threads", "k", "v", "t")  # type: ignore[call-arg]


async def test_bad_kinds_and_keys_are_refused(units: Units) -> None:
    with pytest.raises(BadInput, match="data kind 'files' is not known"):
        async with units.write() as w:
            await w.data.put("dev", "web", "files", "k", "v", actor="t")
    with pytest.raises(BadInput, match="data key"):
        async with units.write() as w:
            await w.data.put("dev", "web", "threads", "bad\nkey", "v", actor="t")
