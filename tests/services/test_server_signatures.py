"""Requests and decisions the stageline server signs, without Temporal: the canonical request
message, the server's key in the key store (registered at start-up, idempotent, rotated with
an audit trail), verifying requests and decisions against it, and the protection flag that
accepts only verified requesters, at a promotion's gates and a rollback's check (on SQLite
and on PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text

from models.errors import BadInput, Conflict
from models.promotion import (
    PromotionInput,
    RollbackInput,
    SignedFor,
    TrainInput,
    WorkflowRef,
)
from models.review import SERVER_KEY_OWNER, DecisionToVerify, RequestToVerify, SignatureCheck
from models.settings import Settings
from services import signatures
from services.reviewers import promotion_request, rollback_request, train_request
from services.unit import Units
from store.database import Database
from store.tables import Deployment, Promotion

REQUEST: dict[str, Any] = {
    "namespace": "default",
    "workflow_id": "promote-web-1.0.0-production",
    "kind": "promotion",
    "app": "web",
    "version": "1.0.0",
    "environment": "production",
    "requested_by": "alice",
    "on_behalf_of": None,
}
DECISION: dict[str, Any] = {
    "namespace": "default",
    "workflow_id": "promote-web-1.0.0-production",
    "run_id": "0192f7a0-run-a",
    "kind": "approve",
    "reviewer": "bob",
    "comment": "LGTM",
}


def public_text(key: Ed25519PrivateKey) -> str:
    return signatures.public_key_text(signatures.public_key_of(key))


def signed_request(key: Ed25519PrivateKey, **changes: Any) -> str:
    return signatures.sign(key, signatures.request_message(**{**REQUEST, **changes}))


def to_verify(signature: str | None, **changes: Any) -> RequestToVerify:
    return RequestToVerify(**{**REQUEST, **changes}, signature=signature)


def signed_decision(key: Ed25519PrivateKey, **changes: Any) -> str:
    return signatures.sign(key, signatures.decision_message(**{**DECISION, **changes}))


def decision(signature: str, **changes: Any) -> DecisionToVerify:
    return DecisionToVerify(**{**DECISION, **changes}, signature=signature)


# -- the canonical request message ------------------------------------------------------------


def test_the_request_message_is_canonical_json_with_a_purpose_of_its_own() -> None:
    message = signatures.request_message(**REQUEST)
    assert message == (
        b'{"app":"web","environment":"production","force":false,"kind":"promotion",'
        b'"namespace":"default","on_behalf_of":null,"purpose":"stageline-request-v1",'
        b'"requested_by":"alice","version":"1.0.0",'
        b'"workflow_id":"promote-web-1.0.0-production"}'
    )
    assert signatures.request_message(**dict(reversed(list(REQUEST.items())))) == message
    accented = signatures.request_message(**{**REQUEST, "requested_by": "zoë"})
    assert accented.isascii() and json.loads(accented)["requested_by"] == "zoë"
    assert json.loads(signatures.decision_message(**DECISION))["purpose"] == (
        "stageline-decision-v1"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"namespace": "other"},
        {"workflow_id": "promote-web-1.0.0-production-2"},
        {"kind": "train"},
        {"kind": "rollback"},
        {"app": "api"},
        {"version": "1.0.1"},
        {"version": None},
        {"environment": "staging"},
        {"requested_by": "bob"},
        {"on_behalf_of": "release-bot"},
        {"force": True},
    ],
)
def test_every_request_field_changes_the_message(change: dict[str, Any]) -> None:
    assert signatures.request_message(**{**REQUEST, **change}) != signatures.request_message(
        **REQUEST
    )


def test_a_decision_signature_never_passes_for_a_request_nor_the_other_way_round() -> None:
    key = Ed25519PrivateKey.generate()
    public = signatures.public_key_of(key)
    request, decided = (
        signatures.request_message(**REQUEST),
        signatures.decision_message(**DECISION),
    )
    assert request != decided
    for made_for, other in ((request, decided), (decided, request)):
        raw = signatures.decode_signature(signatures.sign(key, made_for))
        assert raw is not None
        assert signatures.verifies(public, made_for, raw)
        assert not signatures.verifies(public, other, raw)


def test_each_kind_of_request_binds_its_own_fields() -> None:
    promotion = PromotionInput(
        app="web",
        version="1.0.0",
        target="production",
        requested_by="alice",
        on_behalf_of="release-bot",
        force=True,
        requester_signature="c2ln",
    )
    built = promotion_request(
        promotion, namespace="ns", workflow_id="promote-web-1.0.0-production", parent=None
    )
    assert isinstance(built, RequestToVerify)
    assert (built.kind, built.environment, built.on_behalf_of, built.force) == (
        "promotion",
        "production",
        "release-bot",
        True,
    )
    assert (built.namespace, built.workflow_id, built.signature) == (
        "ns",
        "promote-web-1.0.0-production",
        "c2ln",
    )

    # A train's stage carries the train's signature: it counts only under that train.
    stage = promotion.model_copy(
        update={
            "force": False,
            "signed_for": SignedFor(workflow_id="train-web-1.0.0-production", through="production"),
        }
    )
    train = WorkflowRef(workflow_id="train-web-1.0.0-production", run_id="t1")
    as_stage = promotion_request(stage, namespace="ns", workflow_id="promote-x", parent=train)
    assert isinstance(as_stage, RequestToVerify)
    assert (as_stage.kind, as_stage.workflow_id, as_stage.environment) == (
        "train",
        "train-web-1.0.0-production",
        "production",
    )
    for parent in (None, WorkflowRef(workflow_id="train-web-9.9.9-production", run_id="t2")):
        refused = promotion_request(stage, namespace="ns", workflow_id="promote-x", parent=parent)
        assert refused == (
            "signature does not verify: it was made for the train train-web-1.0.0-production, "
            "which did not start this promotion"
        )

    trained = train_request(
        TrainInput(app="web", version="1.0.0", through="production", requested_by="alice"),
        namespace="ns",
        workflow_id="train-web-1.0.0-production",
    )
    assert (trained.kind, trained.environment, trained.signature) == ("train", "production", None)
    rolled = rollback_request(
        RollbackInput(app="web", environment="production", to_version="0.9.0", requested_by="a"),
        namespace="ns",
        workflow_id="rollback-web-production-7",
    )
    assert (rolled.kind, rolled.version, rolled.environment) == ("rollback", "0.9.0", "production")


def test_unset_signature_fields_stay_out_of_a_start_input() -> None:
    """What an unsigned start sends is exactly what it sent before these fields existed."""
    plain = PromotionInput(app="web", version="1.0.0", target="dev", requested_by="ci")
    assert "requester_signature" not in plain.model_dump_json()
    assert "signed_for" not in plain.model_dump(mode="json")
    signed = plain.model_copy(update={"requester_signature": "c2ln"})
    assert signed.model_dump(mode="json")["requester_signature"] == "c2ln"
    assert PromotionInput.model_validate_json(signed.model_dump_json()) == signed
    # Typed into the Temporal UI without them, each input still validates.
    RollbackInput.model_validate({"app": "web", "environment": "dev", "requested_by": "ops"})
    TrainInput.model_validate(
        {"app": "web", "version": "1.0.0", "through": "dev", "requested_by": "ci"}
    )
    with pytest.raises(ValueError, match="requester_signature"):
        PromotionInput.model_validate({**plain.model_dump(), "requester_signature": "x" * 201})


# -- the server's key in the key store --------------------------------------------------------


class Keys:
    """The key store as the server and the activities use it: one unit of work per call."""

    def __init__(self, units: Units) -> None:
        self.units = units

    async def register_server_key(self, public_key: str, actor: str = "stageline server") -> Any:
        async with self.units.write() as w:
            return await w.reviewers.register_server_key(public_key, actor=actor)

    async def add_key(self, reviewer: str, public_key: str) -> Any:
        async with self.units.write() as w:
            return await w.reviewers.add_key(reviewer, public_key, actor="admin")

    async def revoke_key(self, reviewer: str, fingerprint: str) -> Any:
        async with self.units.write() as w:
            return await w.reviewers.revoke_key(reviewer, fingerprint, actor="admin")

    async def list_keys(self, reviewer: str | None = None) -> Any:
        async with self.units.read() as w:
            return await w.reviewers.list_keys(reviewer)

    async def verify_request(self, request: RequestToVerify) -> SignatureCheck:
        async with self.units.read() as w:
            return await w.reviewers.verify_request(request)

    async def verify_decision(self, decided: DecisionToVerify) -> SignatureCheck:
        async with self.units.read() as w:
            return await w.reviewers.verify_decision(decided)


@pytest.fixture
def keys(db: Database, settings: Settings) -> Keys:
    return Keys(Units(db, settings))


async def audit_trail(db: Database) -> list[tuple[str, str, str]]:
    async with db.read() as session:
        rows = (
            await session.execute(
                text("SELECT actor, action, subject FROM audit_event ORDER BY id")
            )
        ).all()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


async def test_the_server_key_is_registered_once_and_replaced_by_a_new_one(
    keys: Keys, db: Database
) -> None:
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    view = await keys.register_server_key(public_text(first))
    assert view.reviewer == SERVER_KEY_OWNER and view.active
    # Started again with the same key: nothing changes, nothing is audited.
    assert (await keys.register_server_key(public_text(first))).fingerprint == view.fingerprint
    assert await audit_trail(db) == [
        ("stageline server", "reviewer.key.add", f"key {view.fingerprint} of the stageline server")
    ]
    listed = await keys.list_keys()
    assert [(k.reviewer, k.active) for k in listed] == [(SERVER_KEY_OWNER, True)]

    # A new key (its key file was replaced): the old one is revoked, the new one added.
    newer = await keys.register_server_key(public_text(second))
    states = {k.fingerprint: k.active for k in await keys.list_keys(SERVER_KEY_OWNER)}
    assert states == {view.fingerprint: False, newer.fingerprint: True}
    assert [action for _, action, _ in await audit_trail(db)] == [
        "reviewer.key.add",
        "reviewer.key.revoke",
        "reviewer.key.add",
    ]
    # The revoked one is never taken back.
    with pytest.raises(Conflict, match="remove the server's key file so that it makes a new"):
        await keys.register_server_key(public_text(first))


async def test_the_server_key_and_peoples_keys_never_mix(keys: Keys) -> None:
    server, bob = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    await keys.add_key("bob", public_text(bob))
    with pytest.raises(Conflict, match="registered for bob; the stageline server needs a key"):
        await keys.register_server_key(public_text(bob))
    view = await keys.register_server_key(public_text(server))
    with pytest.raises(Conflict, match="already registered for :server"):
        await keys.add_key("carol", public_text(server))
    with pytest.raises(BadInput, match="is not valid"):  # nobody registers as the server
        await keys.add_key(SERVER_KEY_OWNER, public_text(Ed25519PrivateKey.generate()))
    # An administrator revokes a compromised server key by its reserved name.
    revoked = await keys.revoke_key(SERVER_KEY_OWNER, view.fingerprint)
    assert not revoked.active


async def test_a_request_verifies_only_with_the_active_server_key(keys: Keys) -> None:
    server, other, newer = (Ed25519PrivateKey.generate() for _ in range(3))

    unsigned = await keys.verify_request(to_verify(None))
    assert not unsigned.verified and "carries no signature of the stageline server" in (
        unsigned.reason
    )
    none_yet = await keys.verify_request(to_verify(signed_request(server)))
    assert none_yet.reason == (
        "signature does not verify: the stageline server has no active signing key"
    )

    view = await keys.register_server_key(public_text(server))
    ok = await keys.verify_request(to_verify(signed_request(server)))
    assert ok.verified and ok.fingerprint == view.fingerprint
    assert ok.reason == (
        f"requested through the stageline server (key {view.fingerprint}) by alice, who signed in"
    )

    for forged in (
        to_verify(signed_request(other)),  # another key
        to_verify(signed_request(server, app="api")),  # made for another request...
        to_verify(signed_request(server, version="2.0.0")),
        to_verify(signed_request(server, environment="staging")),
        to_verify(signed_request(server, requested_by="bob")),
        to_verify(signed_request(server, workflow_id="promote-web-1.0.0-production-x")),
        to_verify(signed_request(server, kind="train")),
        to_verify(signed_request(server), force=True),  # ...or turned into a forced one
        to_verify(signed_decision(server)),  # a decision's signature
    ):
        verdict = await keys.verify_request(forged)
        assert not verdict.verified
        assert verdict.reason.startswith(
            "signature does not verify: the stageline server did not sign this"
        ), verdict.reason
    garbled = await keys.verify_request(to_verify("bm90IGEgc2lnbmF0dXJl"))
    assert garbled.reason.endswith("not a base64-encoded Ed25519 signature")

    # The server got a new key: what the old one signed no longer counts.
    await keys.register_server_key(public_text(newer))
    revoked = await keys.verify_request(to_verify(signed_request(server)))
    assert not revoked.verified
    assert f"made with key {view.fingerprint} of the stageline server, revoked on" in (
        revoked.reason
    )
    assert (await keys.verify_request(to_verify(signed_request(newer)))).verified


async def test_a_decision_the_server_signed_counts_for_whoever_it_names(keys: Keys) -> None:
    server, bob, eve = (Ed25519PrivateKey.generate() for _ in range(3))
    await keys.add_key("bob", public_text(bob))
    await keys.add_key("eve", public_text(eve))

    # Before the server has a key, its signature is nobody's.
    for_carol = decision(signed_decision(server, reviewer="carol"), reviewer="carol")
    early = await keys.verify_decision(for_carol)
    assert early.reason.startswith("signature does not verify: carol has no active signing key")

    view = await keys.register_server_key(public_text(server))
    for who in ("carol", "bob"):  # with a key of one's own or without
        ok = await keys.verify_decision(
            decision(signed_decision(server, reviewer=who), reviewer=who)
        )
        assert ok.verified and ok.fingerprint == view.fingerprint
        assert ok.reason == (
            f"signed by the stageline server (key {view.fingerprint}) for {who}, who signed in"
        )
    # bob's own key still counts, and is named as before.
    own = await keys.verify_decision(decision(signed_decision(bob)))
    assert own.verified and own.reason.startswith("signed with key ")

    # A person's key never signs for someone else; the server's signature binds the name.
    for forged in (
        decision(signed_decision(eve, reviewer="bob")),
        decision(signed_decision(server, reviewer="carol"), reviewer="bob"),
        decision(signed_decision(server, run_id="another-run")),
        decision(signed_request(server)),  # a request's signature
    ):
        verdict = await keys.verify_decision(forged)
        assert not verdict.verified
        assert verdict.reason.startswith("signature does not verify: no registered key of bob")
    as_server = await keys.verify_decision(
        decision(signed_decision(server, reviewer=SERVER_KEY_OWNER), reviewer=SERVER_KEY_OWNER)
    )
    assert not as_server.verified

    # Only the active server key: once replaced, what the old key signs is refused.
    await keys.register_server_key(public_text(Ed25519PrivateKey.generate()))
    revoked = await keys.verify_decision(for_carol)
    assert not revoked.verified
    assert revoked.reason.startswith(
        f"signature does not verify: it was made with key {view.fingerprint} of the stageline "
        "server, revoked on"
    )


# -- protection: only verified requesters -----------------------------------------------------


VERIFIED = SignatureCheck(verified=True, reason="requested through the stageline server")
UNVERIFIED = SignatureCheck(verified=False, reason="the request carries no signature")


async def test_the_flag_is_part_of_the_protection_and_audited(web_in_dev: Units) -> None:
    async with web_in_dev.write() as w:
        view = await w.environments.protect_environment(
            "dev", actor="t", require_verified_requester=True
        )
    assert view.protection.require_verified_requester
    async with web_in_dev.write() as w:
        kept = await w.environments.protect_environment("dev", actor="t", wait_minutes=1)
    assert kept.protection.require_verified_requester
    async with web_in_dev.read() as w:
        shown = await w.environments.show_environment("dev")
        log = await w.views.audit_log(environment="dev")
    assert shown.protection.require_verified_requester
    protects = [e.detail for e in log if e.action == "environment.protect"]
    assert [d["after"]["require_verified_requester"] for d in protects] == [True, True]


async def test_a_promotion_needs_a_verified_requester_where_the_target_says_so(
    web_in_dev: Units, db: Database
) -> None:
    request = PromotionInput(app="web", version="1.0.0", target="dev", requested_by="alice")
    async with web_in_dev.write() as w:
        before = await w.deployments.prepare_promotion(
            request, WorkflowRef(workflow_id="promote-web-1.0.0-dev", run_id="r0")
        )
    # Not required: no gate for it, and the run says it was not verified.
    assert before.passed and not before.requester_verified
    assert "verified-requester" not in [g.name for g in before.gates]

    async with web_in_dev.write() as w:
        await w.environments.protect_environment("dev", actor="t", require_verified_requester=True)
    for run_id, check in (("r1", None), ("r2", UNVERIFIED)):
        async with web_in_dev.write() as w:
            refused = await w.deployments.prepare_promotion(
                request, WorkflowRef(workflow_id="promote-web-1.0.0-dev", run_id=run_id), check
            )
        assert not refused.passed and not refused.requester_verified
        assert refused.gates[0].name == "verified-requester" and not refused.gates[0].passed
        assert refused.reason is not None and refused.reason.startswith(
            "dev accepts only requests made through the stageline server (signed in); start it "
            "with the CLI in remote mode or the console ("
        )
    async with web_in_dev.write() as w:
        accepted = await w.deployments.prepare_promotion(
            request, WorkflowRef(workflow_id="promote-web-1.0.0-dev", run_id="r3"), VERIFIED
        )
    assert accepted.passed and accepted.requester_verified
    assert accepted.gates[0].reason == VERIFIED.reason
    async with db.read() as session:
        recorded = await session.execute(select(Promotion.run_id, Promotion.requester_verified))
        assert {run_id: verified for run_id, verified in recorded.all()} == {
            "r0": False,
            "r1": False,
            "r2": False,
            "r3": True,
        }
    async with web_in_dev.write() as w:
        began = await w.deployments.begin_deployment(
            accepted.promotion_record_id,
            WorkflowRef(workflow_id="promote-web-1.0.0-dev", run_id="r3"),
        )
    async with db.read() as session:
        deployment = await session.get(Deployment, began.deployment_id)
        assert deployment is not None and deployment.requester_verified
    async with web_in_dev.read() as w:
        requests = [
            e.detail
            for e in await w.views.audit_log(environment="dev")
            if e.action == "promotion.request"
        ]
    assert [d["requester_verified"] for d in requests] == [False, False, False, True]


async def test_a_rollback_needs_a_verified_requester_but_a_compensation_never_does(
    web_in_dev: Units,
) -> None:
    async with web_in_dev.write() as w:
        await w.environments.protect_environment("dev", actor="t", require_verified_requester=True)
    rollback = RollbackInput(app="web", environment="dev", requested_by="ops")
    async with web_in_dev.write() as w:
        refused = await w.deployments.check_rollback(rollback, UNVERIFIED)
    assert refused.refused and not refused.possible and not refused.requester_verified
    assert refused.reason is not None and refused.reason.startswith(
        "dev accepts only requests made through the stageline server (signed in)"
    )
    async with web_in_dev.write() as w:
        allowed = await w.deployments.check_rollback(rollback, VERIFIED)
    # Past the requester check: refused for the usual reason (nothing deployed yet).
    assert allowed.refused and allowed.requester_verified
    assert allowed.reason == "web has no release in dev to roll back from"
    async with web_in_dev.read() as w:
        refusals = [
            e.detail["reason"]
            for e in await w.views.audit_log(environment="dev")
            if e.action == "rollback.refused"
        ]
    assert len(refusals) == 2 and "stageline server" in refusals[0]

    # A failed promotion's compensation is no request: it puts back what was there.
    run = WorkflowRef(workflow_id="promote-web-1.0.0-dev", run_id="r1")
    request = PromotionInput(app="web", version="1.0.0", target="dev", requested_by="alice")
    async with web_in_dev.write() as w:
        prepared = await w.deployments.prepare_promotion(request, run, VERIFIED)
    async with web_in_dev.write() as w:
        began = await w.deployments.begin_deployment(prepared.promotion_record_id, run)
    compensation = RollbackInput(
        app="web",
        environment="dev",
        requested_by="alice",
        source="compensation",
        compensating_deployment_id=began.deployment_id,
    )
    async with web_in_dev.write() as w:
        checked = await w.deployments.check_rollback(compensation, None)
    assert not checked.refused and checked.reason == "nothing to compensate"
