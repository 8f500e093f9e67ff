"""Data namespaces: per environment unless shared, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from models.errors import BadInput, NotFound, Refused
from models.settings import Settings
from services.data import DataService
from services.environments import EnvironmentService
from store import audit
from store import data as data_repo
from store.database import Database
from store.tables import App


@pytest.fixture
async def data(db: Database, settings: Settings) -> DataService:
    envs = EnvironmentService(db, settings)
    for name in ("dev", "staging", "production"):
        await envs.create_environment(name, actor="t")
    await envs.create_app("web", ["dev", "staging", "production"], actor="t")
    return DataService(db, settings)


async def keys(data: DataService, env: str, kind: str = "threads") -> list[str]:
    return [i.key for i in await data.entries(env, "web", kind)]


async def test_data_written_in_one_environment_is_invisible_from_the_others(
    data: DataService,
) -> None:
    await data.put("dev", "web", "threads", "t-dev", "test conversation", actor="t")
    await data.put("production", "web", "threads", "t-prod", "customer conversation", actor="t")
    assert await keys(data, "dev") == ["t-dev"]
    assert await keys(data, "staging") == []
    assert await keys(data, "production") == ["t-prod"]
    with pytest.raises(NotFound):
        await data.get("staging", "web", "threads", "t-dev")
    item = await data.get("production", "web", "threads", "t-prod")
    assert (item.namespace, item.value) == ("production/web", "customer conversation")


async def test_a_shared_kind_is_visible_to_all_environments(data: DataService) -> None:
    await data.share("web", "sources", True, actor="t")
    await data.put("dev", "web", "sources", "handbook", "v1", actor="t")
    for env in ("dev", "staging", "production"):
        item = await data.get(env, "web", "sources", "handbook")
        assert (item.namespace, item.value) == ("shared/web", "v1")
    assert await keys(data, "staging", "memory") == []  # other kinds stay per environment
    assert (await data.namespaces("staging", "web")) == {
        "threads": "staging/web",
        "sources": "shared/web",
        "memory": "staging/web",
        "artifacts": "staging/web",
    }


async def test_copy_is_explicit_selective_and_audited(data: DataService, db: Database) -> None:
    await data.put("production", "web", "memory", "faq", "sanitised answers", actor="t")
    await data.put("production", "web", "memory", "pii", "do not copy", actor="t")
    assert (
        await data.copy("web", "memory", "production", "staging", actor="alice", keys=["faq"]) == 1
    )
    assert await keys(data, "staging", "memory") == ["faq"]
    assert await keys(data, "dev", "memory") == []
    async with db.read() as session:
        ws = (await session.scalars(select(App))).one().workspace_id
        actions = [(e.actor, e.action) for e in await audit.events(session, ws)]
    assert ("alice", "data.copy") in actions
    await data.share("web", "sources", True, actor="t")
    with pytest.raises(Refused, match="shared by all environments"):
        await data.copy("web", "sources", "dev", "staging", actor="t")


async def test_the_repository_cannot_be_called_without_an_environment(
    data: DataService, db: Database
) -> None:
    async with db.read() as session:
        app = (await session.scalars(select(App))).one()
        with pytest.raises(TypeError):
            await data_repo.records(session, app=app, kind="threads")  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            await data_repo.put(session, app, "threads", "k", "v", "t")  # type: ignore[call-arg]


async def test_bad_kinds_and_keys_are_refused(data: DataService) -> None:
    with pytest.raises(BadInput, match="data kind 'files' is not known"):
        await data.put("dev", "web", "files", "k", "v", actor="t")
    with pytest.raises(BadInput, match="data key"):
        await data.put("dev", "web", "threads", "bad\nkey", "v", actor="t")
