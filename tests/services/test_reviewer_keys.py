"""Signed approvals without Temporal: the canonical message, signing and verifying, key
files, and the key store (registration, revocation, verification) on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from models.errors import BadInput, Conflict, NotFound
from models.review import DecisionToVerify, ReviewerKeyView, SignatureCheck
from models.settings import Settings
from services import signatures
from services.unit import Units
from store.database import Database

RUN: dict[str, Any] = {
    "namespace": "default",
    "workflow_id": "promote-web-1.0.0-production",
    "run_id": "0192f7a0-run-a",
    "kind": "approve",
    "reviewer": "bob",
    "comment": "LGTM",
}


def signed(key: Ed25519PrivateKey, **changes: Any) -> str:
    return signatures.sign(key, signatures.decision_message(**{**RUN, **changes}))


def check(signature: str, **changes: Any) -> DecisionToVerify:
    return DecisionToVerify(**{**RUN, **changes}, signature=signature)


# -- the canonical message --------------------------------------------------------------------


def test_the_message_is_canonical_json_naming_every_bound_field() -> None:
    message = signatures.decision_message(**RUN)
    assert message == (
        b'{"comment":"LGTM","kind":"approve","namespace":"default","purpose":'
        b'"stageline-decision-v1","reviewer":"bob","run_id":"0192f7a0-run-a",'
        b'"workflow_id":"promote-web-1.0.0-production"}'
    )
    # The same fields in any order give the same bytes; the bytes are plain ASCII.
    assert signatures.decision_message(**dict(reversed(list(RUN.items())))) == message
    accented = signatures.decision_message(**{**RUN, "comment": "prêt"})
    assert accented.isascii() and json.loads(accented)["comment"] == "prêt"


@pytest.mark.parametrize(
    "change",
    [
        {"namespace": "other"},
        {"workflow_id": "promote-web-1.0.1-production"},
        {"run_id": "0192f7a0-run-b"},
        {"kind": "reject"},
        {"reviewer": "carol"},
        {"comment": "LGTM!"},
        {"comment": None},
        {"comment": ""},
    ],
)
def test_every_field_changes_the_message(change: dict[str, Any]) -> None:
    assert signatures.decision_message(**{**RUN, **change}) != signatures.decision_message(**RUN)


def test_a_signature_verifies_only_for_its_key_and_its_message() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = signatures.public_key_of(key)
    message = signatures.decision_message(**RUN)
    raw = signatures.decode_signature(signatures.sign(key, message))
    assert raw is not None and len(raw) == 64
    assert signatures.verifies(public, message, raw)
    assert not signatures.verifies(signatures.public_key_of(other), message, raw)
    replayed = signatures.decision_message(**{**RUN, "run_id": "another-run"})
    assert not signatures.verifies(public, replayed, raw)
    flipped = bytes([raw[0] ^ 1]) + raw[1:]
    assert not signatures.verifies(public, message, flipped)


@pytest.mark.parametrize(
    "bad", ["", "not base64!", base64.b64encode(b"x" * 63).decode(), "A" * 200]
)
def test_a_signature_that_is_not_64_base64_bytes_is_not_decoded(bad: str) -> None:
    assert signatures.decode_signature(bad) is None


# -- public keys and key files ----------------------------------------------------------------


def test_public_keys_round_trip_through_their_text_form() -> None:
    raw = signatures.public_key_of(Ed25519PrivateKey.generate())
    text_form = signatures.public_key_text(raw)
    assert text_form.startswith("ed25519:")
    assert signatures.parse_public_key(text_form) == raw
    assert signatures.parse_public_key(f"  {text_form.removeprefix('ed25519:')}\n") == raw


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "0 bytes, not 32"),
        ("garbage!", "not valid"),
        ("ed25519:" + base64.b64encode(b"x" * 31).decode(), "31 bytes, not 32"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB", "not valid"),
    ],
)
def test_bad_public_key_text_is_refused_clearly(bad: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        signatures.parse_public_key(bad)


def test_a_pasted_private_key_is_refused_without_being_echoed(tmp_path: Path) -> None:
    path = tmp_path / "bob.ed25519"
    signatures.write_private_key(path)
    pem = path.read_text()
    with pytest.raises(BadInput, match="that is a private key") as caught:
        signatures.parse_public_key(pem)
    assert pem.splitlines()[1] not in str(caught.value)


def test_key_files_are_private_never_overwritten_and_checked_when_read(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "bob.ed25519"
    key = signatures.write_private_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    loaded = signatures.read_private_key(path)
    assert signatures.public_key_of(loaded) == signatures.public_key_of(key)
    before = path.read_bytes()
    with pytest.raises(BadInput, match="already exists"):
        signatures.write_private_key(path)
    assert path.read_bytes() == before

    with pytest.raises(BadInput, match="does not exist"):
        signatures.read_private_key(tmp_path / "nobody.ed25519")
    with pytest.raises(BadInput, match="is a directory"):
        signatures.read_private_key(tmp_path / "keys")
    path.chmod(0o644)
    with pytest.raises(BadInput, match="readable by other users"):
        signatures.read_private_key(path)
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    junk.chmod(0o600)
    with pytest.raises(BadInput, match="does not hold a private key"):
        signatures.read_private_key(junk)


def test_default_key_file_only_for_names_that_are_safe_file_names(tmp_path: Path) -> None:
    assert signatures.default_key_file(tmp_path, "bob@acme.com") == (
        tmp_path / "keys" / "bob@acme.com.ed25519"
    )
    for unsafe in ("../bob", "a/b", ".hidden", "", "@group"):
        assert signatures.default_key_file(tmp_path, unsafe) is None


# -- the key store ----------------------------------------------------------------------------


class Keys:
    """The key store as the CLI and the activities use it: each call a unit of work of its own."""

    def __init__(self, units: Units) -> None:
        self.units = units

    async def add_key(self, reviewer: str, public_key: str, *, actor: str) -> ReviewerKeyView:
        async with self.units.write() as w:
            return await w.reviewers.add_key(reviewer, public_key, actor=actor)

    async def revoke_key(self, reviewer: str, fingerprint: str, *, actor: str) -> ReviewerKeyView:
        async with self.units.write() as w:
            return await w.reviewers.revoke_key(reviewer, fingerprint, actor=actor)

    async def list_keys(self, reviewer: str | None = None) -> list[ReviewerKeyView]:
        async with self.units.read() as w:
            return await w.reviewers.list_keys(reviewer)

    async def without_keys(self, reviewers: list[str]) -> list[str]:
        async with self.units.read() as w:
            return await w.reviewers.without_keys(reviewers)

    async def verify_decision(self, decision: DecisionToVerify) -> SignatureCheck:
        async with self.units.read() as w:
            return await w.reviewers.verify_decision(decision)


@pytest.fixture
def keys(db: Database, settings: Settings) -> Keys:
    return Keys(Units(db, settings))


async def audit_actions(db: Database) -> list[str]:
    async with db.read() as session:
        return list((await session.scalars(text("SELECT action FROM audit_event"))).all())


async def test_keys_are_registered_listed_and_revoked_with_audit(keys: Keys, db: Database) -> None:
    bob = signatures.public_key_text(signatures.public_key_of(Ed25519PrivateKey.generate()))
    view = await keys.add_key("bob", bob, actor="admin")
    assert view.reviewer == "bob" and view.public_key == bob and view.active
    assert len(view.fingerprint) == 16
    assert [k.fingerprint for k in await keys.list_keys("bob")] == [view.fingerprint]
    assert await keys.list_keys("carol") == []
    assert await keys.without_keys(["bob", "carol"]) == ["carol"]

    revoked = await keys.revoke_key("bob", view.fingerprint[:8].upper(), actor="admin")
    assert revoked.revoked_by == "admin" and not revoked.active
    assert await keys.without_keys(["bob"]) == ["bob"]
    assert [k.active for k in await keys.list_keys()] == [False]  # kept, for the record
    assert await audit_actions(db) == ["reviewer.key.add", "reviewer.key.revoke"]


async def test_mistakes_are_refused_and_store_nothing(keys: Keys, db: Database) -> None:
    public = signatures.public_key_text(signatures.public_key_of(Ed25519PrivateKey.generate()))
    for who, key, error, message in [
        ("bob", "nonsense", BadInput, "not valid"),
        ("@managers", public, BadInput, "is a group"),
        ("bob smith", public, BadInput, "is not valid"),
        ("", public, BadInput, "is not valid"),
    ]:
        with pytest.raises(error, match=message):
            await keys.add_key(who, key, actor="admin")
    assert await keys.list_keys() == []
    assert await audit_actions(db) == []

    await keys.add_key("bob", public, actor="admin")
    with pytest.raises(Conflict, match=r"already registered for bob$"):
        await keys.add_key("bob", public, actor="admin")
    with pytest.raises(Conflict, match="already registered for bob; each key belongs to one"):
        await keys.add_key("carol", public, actor="admin")
    with pytest.raises(BadInput, match="at least 8 hex digits"):
        await keys.revoke_key("bob", "abc", actor="admin")
    with pytest.raises(NotFound, match="carol has no key"):
        await keys.revoke_key("carol", "0123456789abcdef", actor="admin")
    fingerprint = (await keys.list_keys("bob"))[0].fingerprint
    await keys.revoke_key("bob", fingerprint, actor="admin")
    with pytest.raises(Conflict, match="already revoked"):
        await keys.revoke_key("bob", fingerprint, actor="admin")
    with pytest.raises(Conflict, match="never registered again"):
        await keys.add_key("bob", public, actor="admin")
    assert len(await keys.list_keys()) == 1
    assert await audit_actions(db) == ["reviewer.key.add", "reviewer.key.revoke"]


async def test_verification_names_the_key_or_says_why_not(keys: Keys) -> None:
    bob, old, eve = (Ed25519PrivateKey.generate() for _ in range(3))

    unknown = await keys.verify_decision(check(signed(bob)))
    assert not unknown.verified
    assert unknown.reason.startswith("signature does not verify: bob has no active signing key")

    view = await keys.add_key(
        "bob", signatures.public_key_text(signatures.public_key_of(bob)), actor="admin"
    )
    ok = await keys.verify_decision(check(signed(bob)))
    assert ok.verified and ok.fingerprint == view.fingerprint
    assert ok.reason == f"signed with key {view.fingerprint} of bob"

    for forged in (
        check(signed(eve)),  # another person's key
        check(signed(bob, run_id="another-run")),  # made for another run
        check(signed(bob, workflow_id="promote-web-2.0.0-production")),
        check(signed(bob), kind="reject"),  # an approval sent as a rejection
        check(signed(bob), comment="changed on the way"),
        check(signed(bob, reviewer="carol")),  # bob's key, carol's name inside
    ):
        verdict = await keys.verify_decision(forged)
        assert not verdict.verified
        assert verdict.reason.startswith("signature does not verify: no registered key of bob")

    garbled = await keys.verify_decision(check("bm90IGEgc2lnbmF0dXJl"))
    assert garbled.reason == (
        "signature does not verify: it is not a base64-encoded Ed25519 signature"
    )

    old_view = await keys.add_key(
        "bob", signatures.public_key_text(signatures.public_key_of(old)), actor="admin"
    )
    assert (await keys.verify_decision(check(signed(old)))).verified
    await keys.revoke_key("bob", old_view.fingerprint, actor="admin")
    revoked = await keys.verify_decision(check(signed(old)))
    assert not revoked.verified
    assert f"made with key {old_view.fingerprint} of bob, revoked on" in revoked.reason
    assert (await keys.verify_decision(check(signed(bob)))).verified  # the other key still works


async def test_signed_mode_is_part_of_the_protection_and_audited(
    db: Database, settings: Settings, master_key: Any
) -> None:
    units = Units(db, settings, master_key)
    async with units.write() as w:
        await w.environments.create_environment("production", actor="t")
    async with units.read() as w:
        shown = await w.environments.show_environment("production")
    assert not shown.protection.require_signed_approvals
    async with units.write() as w:
        view = await w.environments.protect_environment(
            "production", actor="t", require_signed_approvals=True
        )
    assert view.protection.require_signed_approvals
    # Changing something else leaves it on; turning it off is explicit.
    async with units.write() as w:
        view = await w.environments.protect_environment("production", actor="t", wait_minutes=5)
    assert view.protection.require_signed_approvals
    async with units.write() as w:
        view = await w.environments.protect_environment(
            "production", actor="t", require_signed_approvals=False
        )
    assert not view.protection.require_signed_approvals
    async with db.read() as session:
        details = (
            await session.scalars(
                text("SELECT detail FROM audit_event WHERE action = 'environment.protect'")
            )
        ).all()
    flags = [
        (json.loads(d) if isinstance(d, str) else d)["after"]["require_signed_approvals"]
        for d in details
    ]
    assert flags == [True, True, False]
