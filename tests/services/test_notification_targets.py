"""Notification targets, on SQLite and on PostgreSQL: added with their URL sealed and never
shown, refused with one clear sentence when wrong, removed with an audit entry; and the
"approval needed" entry a protected promotion writes with its request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from models.errors import BadInput, ConfigurationError, Conflict, NotFound
from models.names import InvalidName
from models.promotion import PromotionInput, WorkflowRef
from models.settings import Settings
from models.workspace import Protection
from services.base import Service
from services.unit import Units
from store.database import Database
from store.tables import AuditEvent, NotificationTarget, utcnow
from vault.envelope import DecryptionError
from vault.secret_value import SecretValue

HOOK = "https://hooks.slack.com/services/T0000/B0000/s3cr3t-t0ken-value"


@pytest.fixture
async def units(web_in_dev: Units) -> Units:
    async with web_in_dev.write() as w:
        await w.environments.create_environment(
            "production",
            actor="t",
            protection=Protection(required_approvals=2, reviewers=["bob", "carol"]),
        )
        await w.environments.set_app_environments("web", ["dev", "production"], actor="t")
    return web_in_dev


async def actions(db: Database) -> list[tuple[str, str | None, dict[str, object]]]:
    async with db.read() as session:
        rows = await session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(r.action, r.environment, r.detail) for r in rows]


async def test_a_target_is_listed_by_host_and_its_url_is_sealed(units: Units, db: Database) -> None:
    async with units.write() as w:
        added = await w.notifications.add_target(
            "production", "ops", SecretValue(HOOK + "\n"), ["deployed", "failed"], actor="ana"
        )
    assert added.url_host == "https://hooks.slack.com"
    assert added.events == ["deployed", "failed"] and added.created_by == "ana"
    async with units.read() as w:
        [listed] = await w.notifications.list_targets("production")
        assert await w.notifications.list_targets("dev") == []
    assert listed.model_dump() == added.model_dump()
    assert "s3cr3t" not in listed.model_dump_json()
    async with db.read() as session:
        row = (await session.scalars(select(NotificationTarget))).one()
    assert b"s3cr3t" not in row.url_ciphertext and "s3cr3t" not in row.url_host
    added_entry = (await actions(db))[-1]
    assert added_entry == (
        "notification.add",
        "production",
        {"events": ["deployed", "failed"], "url_host": "https://hooks.slack.com"},
    )

    # The events default to all of them, in their usual order; a port is part of the host.
    async with units.write() as w:
        every = await w.notifications.add_target(
            "dev", "chat", SecretValue("http://user:pw@127.0.0.1:8065/hooks/abc?x=1"), actor="ana"
        )
    assert every.events == ["approval-needed", "deployed", "failed", "rolled-back"]
    assert every.url_host == "http://127.0.0.1:8065"


async def test_a_sealed_url_moved_to_another_target_does_not_decrypt(
    units: Units, db: Database
) -> None:
    async with units.write() as w:
        await w.notifications.add_target("production", "ops", SecretValue(HOOK), actor="ana")
        await w.notifications.add_target(
            "production", "other", SecretValue("https://example.com/x"), actor="ana"
        )
    async with db.write() as session:
        ops = await session.scalar(
            select(NotificationTarget).where(NotificationTarget.name == "ops")
        )
        assert ops is not None
        await session.execute(
            update(NotificationTarget)
            .where(NotificationTarget.name == "other")
            .values(url_ciphertext=ops.url_ciphertext)
        )
    with pytest.raises(DecryptionError, match="cannot be decrypted here"):
        async with units.read() as w:
            await w.notifications.test_target("production", "other")


@pytest.mark.parametrize(
    ("url", "events", "message"),
    [
        (
            "ftp://hooks.example.com/x",
            None,
            "must start with https:// (or http://), not with 'ftp:'",
        ),
        ("hooks.slack.com/services/x", None, "without http:// or https://"),
        ("https:///services/x", None, "has no host after https://"),
        ("https://hooks.example.com:99999/x", None, "port is not a number"),
        ("https://hooks.example.com/a b", None, "space, line break or control character"),
        ("   ", None, "the webhook URL is empty"),
        (HOOK, ["deploy"], "event 'deploy' is not known (did you mean deployed?); use one or more"),
        (HOOK, [], "no event named"),
    ],
)
async def test_bad_input_is_one_sentence_that_never_quotes_the_url(
    units: Units, url: str, events: list[str] | None, message: str
) -> None:
    with pytest.raises(BadInput) as caught:
        async with units.write() as w:
            await w.notifications.add_target(
                "production", "ops", SecretValue(url), events, actor="ana"
            )
    assert message in caught.value.message
    if "/" in url:
        assert url.split("/")[-1] not in caught.value.message
    async with units.read() as w:
        assert await w.notifications.list_targets("production") == []


async def test_names_duplicates_and_unknowns_are_refused(units: Units, db: Database) -> None:
    async with units.write() as w:
        await w.notifications.add_target("production", "ops", SecretValue(HOOK), actor="ana")
    with pytest.raises(Conflict, match="'ops' already exists in production; remove it first"):
        async with units.write() as w:
            await w.notifications.add_target("production", "ops", SecretValue(HOOK), actor="ana")
    with pytest.raises(InvalidName, match="notification target name 'Ops!'"):
        async with units.write() as w:
            await w.notifications.add_target("production", "Ops!", SecretValue(HOOK), actor="a")
    with pytest.raises(NotFound, match="environment 'prod' does not exist"):
        async with units.write() as w:
            await w.notifications.add_target("prod", "ops", SecretValue(HOOK), actor="ana")
    with pytest.raises(NotFound, match=r"target 'opz' does not exist in production \(did you"):
        async with units.write() as w:
            await w.notifications.remove_target("production", "opz", actor="ana")

    async with units.write() as w:
        await w.notifications.remove_target("production", "ops", actor="ana")
        assert await w.notifications.list_targets("production") == []
    assert (await actions(db))[-1][:2] == ("notification.remove", "production")


async def test_adding_needs_the_master_key_and_listing_does_not(
    units: Units, db: Database, settings: Settings
) -> None:
    async with units.write() as w:
        await w.notifications.add_target("production", "ops", SecretValue(HOOK), actor="ana")
    keyless = Units(db, settings.model_copy(update={"master_key": None}))
    async with keyless.read() as w:
        assert [t.name for t in await w.notifications.list_targets("production")] == ["ops"]
    with pytest.raises(ConfigurationError):
        async with keyless.write() as w:
            await w.notifications.add_target("production", "x", SecretValue(HOOK), actor="ana")


async def test_a_new_target_starts_after_what_the_log_already_holds(units: Units) -> None:
    async with units.write() as w:
        await Service(w).audit(
            "ci", "promotion.deployed", "web@0.9.0 -> production", environment="production",
            app="web", detail={"workflow_id": "old"},
        )  # fmt: skip
        await w.notifications.add_target("production", "ops", SecretValue(HOOK), actor="ana")
    async with units.read() as w:
        assert (await w.notifications.scan(utcnow())).fresh == []
    async with units.write() as w:
        await Service(w).audit(
            "ci", "promotion.deployed", "web@1.0.0 -> production", environment="production",
            app="web", detail={"workflow_id": "new"},
        )  # fmt: skip
        # Not of its environment, not an event, or an event it did not ask for: nothing.
        await Service(w).audit("ci", "promotion.deployed", "web@1.0.0 -> dev", environment="dev")
        await Service(w).audit("ci", "promotion.request", "web@1.1.0 -> production",
                               environment="production")  # fmt: skip
    async with units.read() as w:
        scan = await w.notifications.scan(utcnow())
    assert [c.event for c in scan.fresh] == ["deployed"]
    async with units.write() as w:
        [sending] = await w.notifications.claim(scan, now=utcnow(), lease=timedelta(minutes=1))
    assert sending.url.reveal() == HOOK and sending.event == "deployed"
    assert "web 1.0.0 deployed to production by ci" in sending.payload["text"]
    # Claimed: a second claim of the same scan gets nothing, a new scan finds nothing.
    async with units.write() as w:
        assert await w.notifications.claim(scan, now=utcnow(), lease=timedelta(minutes=1)) == []
    async with units.read() as w:
        assert (await w.notifications.scan(utcnow())).fresh == []


async def test_a_protected_promotion_records_that_it_needs_approval_once(
    units: Units, db: Database
) -> None:
    async with units.write() as w:
        await w.releases.create_release("web", "2.0.0", 'steps:\n  - name: d\n    run: ["true"]\n',
                                        actor="t")  # fmt: skip
    run = WorkflowRef(workflow_id="promote-web-2.0.0-dev", run_id="r")
    request = PromotionInput(app="web", version="2.0.0", target="dev", requested_by="ci")
    async with units.write() as w:
        prepared = await w.deployments.prepare_promotion(request, run)
        started = await w.deployments.begin_deployment(prepared.promotion_record_id, run)
        await w.deployments.finish_deployment(started.deployment_id, True, None, caller=run)
    run = WorkflowRef(workflow_id="promote-web-2.0.0-production", run_id="r")
    request = PromotionInput(
        app="web", version="2.0.0", target="production", requested_by="ci", on_behalf_of="team"
    )
    for _ in range(2):  # a retried local activity
        async with units.write() as w:
            prepared = await w.deployments.prepare_promotion(request, run)
        assert prepared.passed, prepared.reason
    entries = [(a, d) for a, env, d in await actions(db) if env == "production"]
    asked = [d for a, d in entries if a == "promotion.awaiting_approval"]
    assert asked == [
        {
            "workflow_id": "promote-web-2.0.0-production",
            "version": "2.0.0",
            "required_approvals": 2,
            "reviewers": ["bob", "carol"],
            "on_behalf_of": "team",
        }
    ]
    # Right after its request; unprotected dev has none.
    names = [a for a, _ in entries]
    assert names.index("promotion.awaiting_approval") == names.index("promotion.request") + 1
    assert all(env != "dev" for a, env, _ in await actions(db) if a.endswith("awaiting_approval"))
