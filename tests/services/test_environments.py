"""The environment chain and apps, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from models.errors import BadInput, Conflict, NotFound, Refused
from models.names import InvalidName
from models.settings import Settings
from services.environments import EnvironmentService, check_reviewer
from services.releases import ReleaseService
from store.database import Database
from store.tables import Deployment

PIPELINE = 'steps:\n  - name: build\n    run: ["true"]\n'


@pytest.fixture
def envs(db: Database, settings: Settings) -> EnvironmentService:
    return EnvironmentService(db, settings)


async def names(envs: EnvironmentService) -> list[str]:
    return [e.name for e in await envs.list_environments()]


async def test_chain_keeps_its_order_through_inserts_and_removals(envs: EnvironmentService) -> None:
    await envs.create_environment("dev", actor="t")
    await envs.create_environment("production", actor="t")
    await envs.create_environment("staging", actor="t", after="dev")
    await envs.create_environment("qa", actor="t", after="staging")
    assert await names(envs) == ["dev", "staging", "qa", "production"]
    await envs.delete_environment("qa", actor="t")
    assert await names(envs) == ["dev", "staging", "production"]
    assert [e.position for e in await envs.list_environments()] == [0, 1, 2]


async def test_duplicate_and_invalid_environment_names_are_refused(
    envs: EnvironmentService,
) -> None:
    await envs.create_environment("dev", actor="t")
    with pytest.raises(Conflict, match="already exists"):
        await envs.create_environment("dev", actor="t")
    for bad in ["Dev", "../etc", "dev;rm", "", "a" * 64, "dev prod"]:
        with pytest.raises(InvalidName):
            await envs.create_environment(bad, actor="t")
    assert await names(envs) == ["dev"]


async def test_app_cannot_point_to_an_environment_that_does_not_exist(
    envs: EnvironmentService,
) -> None:
    await envs.create_environment("dev", actor="t")
    with pytest.raises(NotFound, match="environment 'qa' does not exist"):
        await envs.create_app("web", ["dev", "qa"], actor="t")
    assert await envs.list_apps() == []


async def test_environment_an_app_points_to_cannot_be_removed(envs: EnvironmentService) -> None:
    await envs.create_environment("dev", actor="t")
    await envs.create_app("web", ["dev"], actor="t")
    with pytest.raises(Refused, match="app\\(s\\) web point to it"):
        await envs.delete_environment("dev", actor="t")
    assert await names(envs) == ["dev"]


async def test_app_with_releases_cannot_be_removed(
    envs: EnvironmentService, db: Database, settings: Settings
) -> None:
    await envs.create_environment("dev", actor="t")
    await envs.create_app("web", ["dev"], actor="t")
    await ReleaseService(db, settings).create_release("web", "1.0.0", PIPELINE, actor="t")
    with pytest.raises(Refused, match="it has releases"):
        await envs.delete_app("web", actor="t")
    assert [a.name for a in await envs.list_apps()] == ["web"]


async def test_environment_with_deployments_cannot_be_renamed_or_removed(
    envs: EnvironmentService, db: Database, settings: Settings
) -> None:
    await envs.create_environment("dev", actor="t")
    await envs.create_environment("scratch", actor="t")
    await envs.create_app("web", ["dev"], actor="t")
    await ReleaseService(db, settings).create_release("web", "1.0.0", PIPELINE, actor="t")
    await envs.rename_environment("scratch", "sandbox", actor="t")  # no history: allowed
    async with db.write() as session:
        env = await envs.environment(session, "sandbox")
        app = await envs.app(session, "web")
        from store.releases import find_release

        release = await find_release(session, app.id, "1.0.0")
        assert release is not None
        session.add(
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
        await envs.rename_environment("sandbox", "other", actor="t")
    with pytest.raises(Refused, match="cannot be removed"):
        await envs.delete_environment("sandbox", actor="t")
    assert await names(envs) == ["dev", "sandbox"]


async def test_protected_environment_needs_enough_reviewers(envs: EnvironmentService) -> None:
    from models.errors import BadInput
    from models.workspace import Protection

    with pytest.raises(BadInput, match="names no reviewer"):
        await envs.create_environment(
            "production", actor="t", protection=Protection(required_approvals=1)
        )
    view = await envs.create_environment(
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
