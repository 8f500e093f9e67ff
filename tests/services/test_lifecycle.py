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
from services.secrets import CERTIFICATE_WARNING_DAYS, expiry_warning
from services.unit import Units
from store.database import Database
from store.tables import AuditEvent, Secret, Variable
from tests.conftest import certificate_pem
from vault.secret_value import SecretValue


@pytest.fixture
async def units(db: Database, settings: Settings) -> Units:
    units = Units(db, settings)
    async with units.write() as w:
        for name in ("dev", "staging", "production"):
            await w.environments.create_environment(name, actor="t")
        await w.environments.create_app("web", ["dev", "staging", "production"], actor="t")
    return units


async def actions(db: Database) -> list[tuple[str, str | None, str]]:
    async with db.read() as session:
        rows = await session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(e.action, e.environment, e.subject) for e in rows]


async def test_a_tombstone_hides_the_key_but_keeps_every_version(
    units: Units, db: Database
) -> None:
    async with units.write() as w:
        await w.variables.set_variable("dev", "MODE", "one", actor="t")
        await w.secrets.set_secret("dev", "TOKEN", SecretValue("token-value-1"), actor="t")
    async with units.read() as w:
        recorded = (await w.resolution.resolve("dev", "web")).versions()
    async with units.write() as w:
        await w.variables.delete_variable("dev", "MODE", actor="t")
        await w.secrets.delete_secret("dev", "TOKEN", actor="t")

    async with units.read() as w:
        assert await w.variables.list_variables("dev") == []
        assert await w.secrets.list_secrets("dev") == []
        with pytest.raises(MissingConfiguration) as missing:
            await w.resolution.resolve(
                "dev", "web", {Reference(kind="vars", name="MODE"),
                               Reference(kind="secrets", name="TOKEN")}
            )  # fmt: skip
    assert missing.value.missing == ["secrets.TOKEN", "vars.MODE"]
    async with units.read() as w:
        then = await w.resolution.resolve("dev", "web", decrypt=True, pinned=recorded)
    assert then.vars["MODE"].value == "one"
    assert then.secrets["TOKEN"].value == SecretValue("token-value-1")
    async with db.read() as session:
        versions = [
            (v.version, v.deleted) for v in await session.scalars(select(Variable).order_by("id"))
        ]
        tombstone = (await session.scalars(select(Secret).where(Secret.deleted))).one()
    assert versions == [(1, False), (2, True)]
    assert tombstone.ciphertext == b"" and tombstone.version == 2

    async with units.write() as w:
        again = await w.variables.delete_variable("dev", "MODE", actor="t")
    assert again.already_deleted and again.version == 2
    async with units.write() as w:
        assert (await w.variables.set_variable("dev", "MODE", "two", actor="t")).version == 3
    async with units.read() as w:
        assert (await w.resolution.resolve("dev", "web")).vars["MODE"].value == "two"


async def test_a_deleted_key_no_longer_blocks_its_case_twin(units: Units) -> None:
    async with units.write() as w:
        await w.variables.set_variable("dev", "FEATURE", "on", actor="t")
    with pytest.raises(Conflict, match="differs only by case"):
        async with units.write() as w:
            await w.secrets.set_secret("dev", "feature", SecretValue("secret-value"), actor="t")
    async with units.write() as w:
        await w.variables.delete_variable("dev", "FEATURE", actor="t")
    async with units.write() as w:
        await w.secrets.set_secret("dev", "feature", SecretValue("secret-value"), actor="t")


async def test_deleting_what_is_not_set_names_the_closest_key_and_the_scope(
    units: Units, db: Database
) -> None:
    async with units.write() as w:
        await w.variables.set_variable("dev", "BASE_URL", "x", actor="t")
        await w.variables.set_variable("dev", "ONLY_WEB", "x", actor="t", app="web")
    before = await actions(db)
    with pytest.raises(NotFound, match=r"'BASE_UR' is not set in dev \(did you mean BASE_URL\?\)"):
        async with units.write() as w:
            await w.variables.delete_variable("dev", "BASE_UR", actor="t")
    with pytest.raises(NotFound, match="set for app web only: add --app web"):
        async with units.write() as w:
            await w.variables.delete_variable("dev", "ONLY_WEB", actor="t")
    with pytest.raises(NotFound, match="set for all of dev: drop --app"):
        async with units.write() as w:
            await w.variables.delete_variable("dev", "BASE_URL", actor="t", app="web")
    assert await actions(db) == before


async def test_certificate_expiry_is_stored_and_warned_about_within_the_threshold(
    units: Units,
) -> None:
    async with units.write() as w:
        view = await w.secrets.set_secret(
            "production", "TLS", SecretValue(certificate_pem(10)), actor="t", kind="certificate"
        )
    assert view.expires_at is not None
    assert timedelta(days=9) < view.expires_at - datetime.now(UTC) <= timedelta(days=10)
    with pytest.raises(BadInput, match="not a PEM certificate"):
        async with units.write() as w:
            await w.secrets.set_secret(
                "production", "TLS", SecretValue("x" * 40), actor="t", kind="certificate"
            )
    async with units.read() as w:
        chain = [await w.secrets.environment(n) for n in ("dev", "production")]
        warnings = await w.secrets.certificate_warnings(chain)
    assert len(warnings) == 1 and warnings[0].startswith(
        "certificate secrets.TLS in production expires in 10 days"
    )

    def at(days: float) -> SecretView:
        return view.model_copy(update={"expires_at": datetime.now(UTC) + timedelta(days=days)})

    assert expiry_warning(at(CERTIFICATE_WARNING_DAYS + 1)) is None
    assert "expires in 30 days" in (expiry_warning(at(CERTIFICATE_WARNING_DAYS - 0.5)) or "")
    assert "expires in 1 day " in (expiry_warning(at(0.2)) or "")
    assert "expired on" in (expiry_warning(at(-2)) or "")


async def group_names(units: Units) -> list[str]:
    async with units.read() as w:
        return [g.name for g in await w.environments.list_groups()]


async def test_group_rename_rewrites_reviewer_lists_and_delete_waits_for_them(
    units: Units, db: Database
) -> None:
    async with units.write() as w:
        await w.environments.create_group("rm", ["erin", "frank"], actor="t")
        await w.environments.protect_environment(
            "production", actor="t", required_approvals=1, reviewers=["alice", "@rm"]
        )
    async with units.write() as w:
        renamed = await w.environments.rename_group("rm", "approvers", actor="t")
    assert renamed.environments == ["production"]
    async with units.read() as w:
        shown = await w.environments.show_environment("production")
        assert shown.protection.reviewers == ["alice", "@approvers"]
        env = await w.environments.environment("production")
        assert await w.environments.eligible_reviewers(env) == ["alice", "erin", "frank"]
    with pytest.raises(Conflict):
        async with units.write() as w:
            await w.environments.create_group("approvers", ["x"], actor="t")
    with pytest.raises(Refused, match="environment\\(s\\) production list @approvers"):
        async with units.write() as w:
            await w.environments.delete_group("approvers", actor="t")
    assert await group_names(units) == ["approvers"]
    assert (await actions(db))[-1] == (
        "group.delete.refused",
        "production",
        "group @approvers in production",
    )
    async with units.write() as w:
        await w.environments.protect_environment("production", actor="t", reviewers=["alice"])
    async with units.write() as w:
        await w.environments.delete_group("approvers", actor="t")
    assert await group_names(units) == []


async def test_app_environments_change_as_a_set(units: Units) -> None:
    async with units.write() as w:
        change = await w.environments.set_app_environments("web", ["production", "dev"], actor="t")
    assert (change.environments, change.added, change.removed) == (
        ["dev", "production"],
        [],
        ["staging"],
    )
    async with units.write() as w:
        same = await w.environments.set_app_environments("web", ["dev", "production"], actor="t")
    assert not same.changed
    with pytest.raises(BadInput, match="at least one environment"):
        async with units.write() as w:
            await w.environments.set_app_environments("web", [], actor="t")
    with pytest.raises(NotFound, match="environment 'qa' does not exist"):
        async with units.write() as w:
            await w.environments.set_app_environments("web", ["dev", "qa"], actor="t")
    async with units.read() as w:
        assert [a.environments for a in await w.environments.list_apps()] == [["dev", "production"]]


async def test_refusals_are_audited_after_the_refused_work_rolled_back(
    db: Database, units: Units
) -> None:
    with pytest.raises(RefusedIn, match="no"):
        async with units.write() as w:
            service = Service(w)
            with service.refusals_audited("thing.refused", "thing x", actor="bob", app="web"):
                # Written in the refused unit of work: rolled back with it.
                await service.audit("bob", "thing.do", "x")
                await w.environments.create_environment("qa", actor="bob")
                raise RefusedIn("no", environment="staging")
    assert (await actions(db))[-1] == ("thing.refused", "staging", "thing x in staging")
    assert "thing.do" not in [a for a, _, _ in await actions(db)]
    assert "environment.create" not in [a for a, env, _ in await actions(db) if env == "qa"]
    async with units.read() as w:
        assert "qa" not in [e.name for e in await w.environments.list_environments()]
    async with db.read() as session:
        event = (
            await session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1))
        ).one()
    assert (event.actor, event.app, event.detail) == ("bob", "web", {"reason": "no"})
    # Other errors are not refusals and are not audited as such.
    count = len(await actions(db))
    with pytest.raises(BadInput):
        async with units.write() as w:
            with Service(w).refusals_audited("thing.refused", "thing x", actor="bob"):
                raise BadInput("typo")
    assert len(await actions(db)) == count
