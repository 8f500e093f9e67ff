"""Configuration lifecycle in the services, on SQLite and on PostgreSQL: tombstones, group
rename and delete, app environments, certificate expiry, and audited refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from models.errors import BadInput, Conflict, MissingConfiguration, NotFound, Refused
from models.pipeline import Reference
from models.settings import Settings
from models.workspace import SecretView
from services.base import RefusedIn, Service
from services.configuration import (
    CERTIFICATE_WARNING_DAYS,
    ConfigurationService,
    expiry_warning,
)
from services.environments import EnvironmentService
from store import audit
from store.database import Database
from store.tables import AuditEvent, Secret, Variable
from tests.conftest import certificate_pem
from vault.secret_value import SecretValue


@pytest.fixture
async def envs(db: Database, settings: Settings) -> EnvironmentService:
    service = EnvironmentService(db, settings)
    for name in ("dev", "staging", "production"):
        await service.create_environment(name, actor="t")
    await service.create_app("web", ["dev", "staging", "production"], actor="t")
    return service


@pytest.fixture
def config(db: Database, settings: Settings, envs: EnvironmentService) -> ConfigurationService:
    return ConfigurationService(db, settings)


async def actions(db: Database) -> list[tuple[str, str | None, str]]:
    async with db.read() as session:
        rows = await session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(e.action, e.environment, e.subject) for e in rows]


async def test_a_tombstone_hides_the_key_but_keeps_every_version(
    config: ConfigurationService, db: Database
) -> None:
    await config.set_variable("dev", "MODE", "one", actor="t")
    await config.set_secret("dev", "TOKEN", SecretValue("token-value-1"), actor="t")
    recorded = (await config.resolve("dev", "web")).versions()
    await config.delete_variable("dev", "MODE", actor="t")
    await config.delete_secret("dev", "TOKEN", actor="t")

    assert await config.list_variables("dev") == []
    assert await config.list_secrets("dev") == []
    with pytest.raises(MissingConfiguration) as missing:
        await config.resolve(
            "dev", "web", {Reference(kind="vars", name="MODE"), Reference(kind="secrets",
                                                                           name="TOKEN")}
        )  # fmt: skip
    assert missing.value.missing == ["secrets.TOKEN", "vars.MODE"]
    then = await config.resolve("dev", "web", decrypt=True, pinned=recorded)
    assert then.vars["MODE"].value == "one"
    assert then.secrets["TOKEN"].value == SecretValue("token-value-1")
    async with db.read() as session:
        versions = [
            (v.version, v.deleted) for v in await session.scalars(select(Variable).order_by("id"))
        ]
        tombstone = (await session.scalars(select(Secret).where(Secret.deleted))).one()
    assert versions == [(1, False), (2, True)]
    assert tombstone.ciphertext == b"" and tombstone.version == 2

    again = await config.delete_variable("dev", "MODE", actor="t")
    assert again.already_deleted and again.version == 2
    assert (await config.set_variable("dev", "MODE", "two", actor="t")).version == 3
    assert (await config.resolve("dev", "web")).vars["MODE"].value == "two"


async def test_a_deleted_key_no_longer_blocks_its_case_twin(config: ConfigurationService) -> None:
    await config.set_variable("dev", "FEATURE", "on", actor="t")
    with pytest.raises(Conflict, match="differs only by case"):
        await config.set_secret("dev", "feature", SecretValue("secret-value"), actor="t")
    await config.delete_variable("dev", "FEATURE", actor="t")
    await config.set_secret("dev", "feature", SecretValue("secret-value"), actor="t")


async def test_deleting_what_is_not_set_names_the_closest_key_and_the_scope(
    config: ConfigurationService, db: Database
) -> None:
    await config.set_variable("dev", "BASE_URL", "x", actor="t")
    await config.set_variable("dev", "ONLY_WEB", "x", actor="t", app="web")
    before = await actions(db)
    with pytest.raises(NotFound, match=r"'BASE_UR' is not set in dev \(did you mean BASE_URL\?\)"):
        await config.delete_variable("dev", "BASE_UR", actor="t")
    with pytest.raises(NotFound, match="set for app web only: add --app web"):
        await config.delete_variable("dev", "ONLY_WEB", actor="t")
    with pytest.raises(NotFound, match="set for all of dev: drop --app"):
        await config.delete_variable("dev", "BASE_URL", actor="t", app="web")
    assert await actions(db) == before


async def test_certificate_expiry_is_stored_and_warned_about_within_the_threshold(
    config: ConfigurationService, db: Database
) -> None:
    view = await config.set_secret(
        "production", "TLS", SecretValue(certificate_pem(10)), actor="t", kind="certificate"
    )
    assert view.expires_at is not None
    assert timedelta(days=9) < view.expires_at - datetime.now(UTC) <= timedelta(days=10)
    with pytest.raises(BadInput, match="not a PEM certificate"):
        await config.set_secret(
            "production", "TLS", SecretValue("x" * 40), actor="t", kind="certificate"
        )
    async with db.read() as session:
        chain = [await config.environment(session, n) for n in ("dev", "production")]
        warnings = await config.certificate_warnings(session, chain)
    assert len(warnings) == 1 and warnings[0].startswith(
        "certificate secrets.TLS in production expires in 10 days"
    )

    def at(days: float) -> SecretView:
        return view.model_copy(update={"expires_at": datetime.now(UTC) + timedelta(days=days)})

    assert expiry_warning(at(CERTIFICATE_WARNING_DAYS + 1)) is None
    assert "expires in 30 days" in (expiry_warning(at(CERTIFICATE_WARNING_DAYS - 0.5)) or "")
    assert "expires in 1 day " in (expiry_warning(at(0.2)) or "")
    assert "expired on" in (expiry_warning(at(-2)) or "")


async def test_group_rename_rewrites_reviewer_lists_and_delete_waits_for_them(
    envs: EnvironmentService, db: Database
) -> None:
    await envs.create_group("rm", ["erin", "frank"], actor="t")
    await envs.protect_environment(
        "production", actor="t", required_approvals=1, reviewers=["alice", "@rm"]
    )
    renamed = await envs.rename_group("rm", "approvers", actor="t")
    assert renamed.environments == ["production"]
    assert (await envs.show_environment("production")).protection.reviewers == [
        "alice",
        "@approvers",
    ]
    async with db.read() as session:
        env = await envs.environment(session, "production")
        assert await envs.eligible_reviewers(session, env) == ["alice", "erin", "frank"]
    with pytest.raises(Conflict):
        await envs.create_group("approvers", ["x"], actor="t")
    with pytest.raises(Refused, match="environment\\(s\\) production list @approvers"):
        await envs.delete_group("approvers", actor="t")
    assert [g.name for g in await envs.list_groups()] == ["approvers"]
    assert (await actions(db))[-1] == (
        "group.delete.refused",
        "production",
        "group @approvers in production",
    )
    await envs.protect_environment("production", actor="t", reviewers=["alice"])
    await envs.delete_group("approvers", actor="t")
    assert await envs.list_groups() == []


async def test_app_environments_change_as_a_set(envs: EnvironmentService, db: Database) -> None:
    change = await envs.set_app_environments("web", ["production", "dev"], actor="t")
    assert (change.environments, change.added, change.removed) == (
        ["dev", "production"],
        [],
        ["staging"],
    )
    same = await envs.set_app_environments("web", ["dev", "production"], actor="t")
    assert not same.changed
    with pytest.raises(BadInput, match="at least one environment"):
        await envs.set_app_environments("web", [], actor="t")
    with pytest.raises(NotFound, match="environment 'qa' does not exist"):
        await envs.set_app_environments("web", ["dev", "qa"], actor="t")
    assert [a.environments for a in await envs.list_apps()] == [["dev", "production"]]


async def test_refusals_are_audited_after_the_refused_work_rolled_back(
    db: Database, settings: Settings, envs: EnvironmentService
) -> None:
    service = Service(db, settings)
    with pytest.raises(RefusedIn, match="no"):
        async with (
            service.refusals_audited("thing.refused", "thing x", actor="bob", app="web"),
            db.write() as session,
        ):
            audit.record(session, await service.workspace_id(session), "bob", "thing.do", "x")
            raise RefusedIn("no", environment="staging")
    assert (await actions(db))[-1] == ("thing.refused", "staging", "thing x in staging")
    assert "thing.do" not in [a for a, _, _ in await actions(db)]
    async with db.read() as session:
        event = (
            await session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1))
        ).one()
    assert (event.actor, event.app, event.detail) == ("bob", "web", {"reason": "no"})
    # Other errors are not refusals and are not audited as such.
    count = len(await actions(db))
    with pytest.raises(BadInput):
        async with service.refusals_audited("thing.refused", "thing x", actor="bob"):
            raise BadInput("typo")
    assert len(await actions(db)) == count
