"""The environment chain and apps, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from models.errors import BadInput, Conflict, NotFound, Refused
from models.names import InvalidName
from models.settings import Settings
from models.workspace import Protection
from services.environments import check_reviewer
from services.unit import Units
from store.database import Database
from store.releases import find_release
from store.tables import Deployment

PIPELINE = 'steps:\n  - name: build\n    run: ["true"]\n'


@pytest.fixture
def units(db: Database, settings: Settings) -> Units:
    return Units(db, settings)


async def names(units: Units) -> list[str]:
    async with units.read() as w:
        return [e.name for e in await w.environments.list_environments()]


async def app_names(units: Units) -> list[str]:
    async with units.read() as w:
        return [a.name for a in await w.environments.list_apps()]


async def test_chain_keeps_its_order_through_inserts_and_removals(units: Units) -> None:
    async with units.write() as w:
        await w.environments.create_environment("dev", actor="t")
        await w.environments.create_environment("production", actor="t")
        await w.environments.create_environment("staging", actor="t", after="dev")
    async with units.write() as w:
        await w.environments.create_environment("qa", actor="t", after="staging")
    assert await names(units) == ["dev", "staging", "qa", "production"]
    async with units.write() as w:
        await w.environments.delete_environment("qa", actor="t")
    assert await names(units) == ["dev", "staging", "production"]
    async with units.read() as w:
        assert [e.position for e in await w.environments.list_environments()] == [0, 1, 2]


async def test_duplicate_and_invalid_environment_names_are_refused(units: Units) -> None:
    async with units.write() as w:
        await w.environments.create_environment("dev", actor="t")
    with pytest.raises(Conflict, match="already exists"):
        async with units.write() as w:
            await w.environments.create_environment("dev", actor="t")
    for bad in ["Dev", "../etc", "dev;rm", "", "a" * 64, "dev prod"]:
        with pytest.raises(InvalidName):
            async with units.write() as w:
                await w.environments.create_environment(bad, actor="t")
    assert await names(units) == ["dev"]


async def test_app_cannot_point_to_an_environment_that_does_not_exist(units: Units) -> None:
    async with units.write() as w:
        await w.environments.create_environment("dev", actor="t")
    with pytest.raises(NotFound, match="environment 'qa' does not exist"):
        async with units.write() as w:
            await w.environments.create_app("web", ["dev", "qa"], actor="t")
    assert await app_names(units) == []


async def test_environment_an_app_points_to_cannot_be_removed(units: Units) -> None:
    async with units.write() as w:
        await w.environments.create_environment("dev", actor="t")
        await w.environments.create_app("web", ["dev"], actor="t")
    with pytest.raises(Refused, match="app\\(s\\) web point to it"):
        async with units.write() as w:
            await w.environments.delete_environment("dev", actor="t")
    assert await names(units) == ["dev"]


async def test_app_with_releases_cannot_be_removed(units: Units) -> None:
    async with units.write() as w:
        await w.environments.create_environment("dev", actor="t")
        await w.environments.create_app("web", ["dev"], actor="t")
        await w.releases.create_release("web", "1.0.0", PIPELINE, actor="t")
    with pytest.raises(Refused, match="it has releases"):
        async with units.write() as w:
            await w.environments.delete_app("web", actor="t")
    assert await app_names(units) == ["web"]


async def test_environment_with_deployments_cannot_be_renamed_or_removed(units: Units) -> None:
    async with units.write() as w:
        await w.environments.create_environment("dev", actor="t")
        await w.environments.create_environment("scratch", actor="t")
        await w.environments.create_app("web", ["dev"], actor="t")
        await w.releases.create_release("web", "1.0.0", PIPELINE, actor="t")
    async with units.write() as w:
        await w.environments.rename_environment("scratch", "sandbox", actor="t")  # no history
    async with units.write() as w:
        env = await w.environments.environment("sandbox")
        app = await w.environments.app("web")
        release = await find_release(w.session, app.id, "1.0.0")
        assert release is not None
        w.session.add(
            Deployment(
                app_id=app.id,
                environment_id=env.id,
                release_id=release.id,
                kind="promotion",
                workflow_id="promote-web-1.0.0-sandbox",
                run_id="r1",
                requested_by="t",
                source="cli",
                status="deployed",
            )
        )
    with pytest.raises(Refused, match="cannot be renamed"):
        async with units.write() as w:
            await w.environments.rename_environment("sandbox", "other", actor="t")
    with pytest.raises(Refused, match="cannot be removed"):
        async with units.write() as w:
            await w.environments.delete_environment("sandbox", actor="t")
    assert await names(units) == ["dev", "sandbox"]


async def test_protected_environment_needs_enough_reviewers(units: Units) -> None:
    with pytest.raises(BadInput, match="names no reviewer"):
        async with units.write() as w:
            await w.environments.create_environment(
                "production", actor="t", protection=Protection(required_approvals=1)
            )
    async with units.write() as w:
        view = await w.environments.create_environment(
            "production",
            actor="t",
            protection=Protection(required_approvals=2, reviewers=["alice", "bob"]),
        )
    assert view.protection.protected and view.protection.reviewers == ["alice", "bob"]


@pytest.mark.parametrize("name", ["alice\n", "alice bob", "../alice", "al;ice", "", "@"])
def test_reviewer_names_are_matched_whole(name: str) -> None:
    with pytest.raises(BadInput, match="is not valid"):
        check_reviewer(name)
    assert check_reviewer("alice@acme.com") == "alice@acme.com"
