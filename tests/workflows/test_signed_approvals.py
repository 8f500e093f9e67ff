"""Signed approvals against a real dev server: on an environment that requires them, only a
decision signed by a registered, unrevoked key of its reviewer, for this very promotion run,
counts; unsigned, forged, replayed and revoked ones are refused and audited. Off, nothing
changes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import WorkflowHandle
from temporalio.worker import Replayer

from models.promotion import Phase, PromotionResult, TrainResult
from models.review import Decision, DecisionKind, DecisionRequest, SignatureCheck
from services import signatures
from tests.conftest import Cli
from tests.http_recorder import recorder
from tests.stack import Stack, outcome, stack, until_phase
from tests.workflows import scenario
from worker.main import WORKFLOWS
from workflows.contract import PromotionHandle, TrainHandle
from workflows.review import Review


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    """production needs one approval from alice, bob or carol, and signatures."""
    with recorder() as hooks:
        async with stack(temporal, tmp_path / "home") as s:
            await scenario.build(s, hooks.url, production_approvals=1)
            await s.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
            for env in ("dev", "staging"):
                assert (await s.promote("web", "1.0.0", env)).status == "deployed"
            protected = await s.cli().run(
                "env", "protect", "production", "--require-signed-approvals"
            )
            assert protected.code == 0, protected.err
            assert "signed approvals required" in protected.out
            assert "alice, bob, carol have no signing key yet" in protected.err
            yield s


async def register(cli: Cli, who: str, key_file: Path | None = None) -> str:
    """Make `who` a key pair with the real CLI and register it; returns the fingerprint."""
    where = ["--key-file", str(key_file)] if key_file else []
    made = await cli.run("reviewer", "key", "generate", who, *where)
    assert made.code == 0, made.err
    public = made.out.strip()
    added = await cli.run("reviewer", "key", "add", who, public, "--json")
    assert added.code == 0, added.err
    fingerprint: str = json.loads(added.out)["fingerprint"]
    return fingerprint


def key_of(s: Stack, who: str) -> Ed25519PrivateKey:
    return signatures.read_private_key(s.home / "keys" / f"{who}.ed25519")


async def run_id(handle: WorkflowHandle[Any, Any]) -> str:
    return (await handle.describe()).run_id


def signature(
    s: Stack,
    key: Ed25519PrivateKey,
    workflow_id: str,
    run: str,
    kind: DecisionKind,
    **fields: Any,
) -> str:
    message = signatures.decision_message(
        namespace=s.client.namespace,
        workflow_id=workflow_id,
        run_id=run,
        kind=kind,
        reviewer=fields.get("reviewer", "bob"),
        comment=fields.get("comment"),
    )
    return signatures.sign(key, message)


async def refusals_after(
    handle: WorkflowHandle[Any, Any], count: int, timeout: float = 30
) -> list[str]:
    """The status query's refusals once there are at least `count` (signals are async)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        refusals = (await PromotionHandle(handle).status()).refusals
        if len(refusals) >= count or asyncio.get_running_loop().time() > deadline:
            return refusals
        await asyncio.sleep(0.1)


async def decisions(cli: Cli) -> list[tuple[str, str, str]]:
    shown = await cli.run("history", "web", "--env", "production", "--json")
    assert shown.code == 0, shown.err
    return [
        (e["actor"], e["action"], e["detail"].get("reason") or "")
        for e in json.loads(shown.out)["events"]
        if e["action"] in ("promotion.approve", "promotion.reject", "promotion.refused")
    ]


async def replays(s: Stack, handle: WorkflowHandle[Any, Any]) -> None:
    """The signed path is deterministic too: its own history replays."""
    history = await handle.fetch_history()
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=s.client.data_converter)
    await replayer.replay_workflow(history)


async def test_only_a_signature_for_this_run_by_the_reviewers_key_counts(ws: Stack) -> None:
    cli = ws.cli()
    handle = await ws.start_promotion("web", "1.0.0", "production", requested_by="alice")
    await until_phase(handle, "awaiting_approval")
    pid, run = handle.id, await run_id(handle)
    promotion = PromotionHandle(handle)

    # Unsigned: a plain signal (UI, temporal CLI), the update, and the CLI without a key.
    await promotion.approve(Decision(reviewer="bob", comment="ok"))
    answer = await promotion.decide(DecisionRequest(kind="approve", reviewer="bob"))
    assert not answer.accepted and answer.reason.startswith("unsigned: production")
    unsigned = await cli.run("approve", pid, "--reviewer", "bob")
    assert unsigned.code == 2 and "unsigned: production accepts only signed" in unsigned.err
    assert "no key file at" in unsigned.err and len(unsigned.err.strip().splitlines()) == 1

    bob_fingerprint = await register(cli, "bob")
    await register(cli, "eve", ws.home / "eve.ed25519")  # a key, but not bob's

    # Forged: bob's name, signed with eve's key.
    forged = await cli.run(
        "approve", pid, "--reviewer", "bob", "--key-file", str(ws.home / "eve.ed25519")
    )
    assert forged.code == 2 and "signature does not verify" in forged.err
    # Replayed: bob's real key, but signed for another run, another promotion, another kind.
    bob = key_of(ws, "bob")
    for other in (
        signature(ws, bob, pid, "another-run-id", "approve"),
        signature(ws, bob, "promote-web-9.9.9-production", run, "approve"),
        signature(ws, bob, pid, run, "reject"),
    ):
        await promotion.approve(Decision(reviewer="bob", signature=other))
        answer = await promotion.decide(
            DecisionRequest(kind="approve", reviewer="bob", signature=other)
        )
        assert not answer.accepted
        assert answer.reason.startswith("signature does not verify: no registered key of bob")
    garbled = await promotion.decide(
        DecisionRequest(kind="approve", reviewer="bob", signature="!!")
    )
    assert "not a base64-encoded Ed25519 signature" in garbled.reason

    refusals = await refusals_after(handle, 11)
    assert len(refusals) == 11, refusals
    assert sum("refused: unsigned" in r for r in refusals) == 3
    assert sum("refused: signature does not verify" in r for r in refusals) == 8
    status = await promotion.status()
    assert status.phase == "awaiting_approval" and status.approvals == []
    assert status.signed_approvals_required is True  # the UI's query says so up front

    # The real CLI signs with bob's key from $STAGELINE_HOME/keys and counts.
    approved = await cli.run("approve", pid, "--reviewer", "bob", "--comment", "LGTM")
    assert approved.code == 0, approved.err
    assert "approved by bob (1/1)" in approved.out and "(signed)" in approved.out
    result = await outcome(handle)
    assert result.status == "deployed"

    audited = await decisions(cli)
    refused = [reason for who, action, reason in audited if action == "promotion.refused"]
    assert len(refused) == 11 and all(who == "bob" for who, _, _ in audited)
    assert sum(r.startswith("unsigned") for r in refused) == 3
    assert sum(r.startswith("signature does not verify") for r in refused) == 8
    assert [reason for _, action, reason in audited if action == "promotion.approve"] == [
        f"approved by bob (1/1); signed with key {bob_fingerprint} of bob"
    ]
    await replays(ws, handle)


async def test_a_revoked_key_is_refused_and_a_signed_rejection_counts(ws: Stack) -> None:
    cli = ws.cli()
    carol = await register(cli, "carol")
    await register(cli, "bob")
    revoked = await cli.run("reviewer", "key", "revoke", "carol", carol[:8])
    assert revoked.code == 0 and f"revoked key {carol}" in revoked.out
    shown = await cli.run("reviewer", "key", "list", "--reviewer", "carol")
    assert "revoked" in shown.out

    waiting = asyncio.ensure_future(
        cli.run("promote", "web", "1.0.0", "--to", "production", "--wait", "--requested-by", "dave")
    )
    handle = ws.client.get_workflow_handle(
        "promote-web-1.0.0-production", result_type=PromotionResult
    )
    await until_phase(handle, "awaiting_approval")
    refused = await cli.run("approve", handle.id, "--reviewer", "carol")
    assert refused.code == 2
    assert f"signature does not verify: it was made with key {carol} of carol, revoked" in (
        refused.err
    )

    rejected = await cli.run("reject", handle.id, "--reviewer", "bob", "--comment", "not today")
    assert rejected.code == 0, rejected.err
    outcome = await waiting
    assert outcome.code == 2 and "rejected by bob: not today" in outcome.out
    actions = [(who, action) for who, action, _ in await decisions(cli)]
    assert actions == [("carol", "promotion.refused"), ("bob", "promotion.reject")]


async def test_a_train_forwards_a_signature_made_for_the_stage_run(ws: Stack) -> None:
    cli = ws.cli()
    await register(cli, "bob")
    bob = key_of(ws, "bob")
    train = await cli.run("train", "web", "1.0.0", "--through", "production", "--json")
    assert train.code == 0, train.err
    train_handle = ws.client.get_workflow_handle("train-web-1.0.0-production")
    stage = ws.client.get_workflow_handle("promote-web-1.0.0-production")
    await until_phase(stage, "awaiting_approval")

    # Signed for the train, not for the stage that decides: refused there.
    wrong = signature(ws, bob, train_handle.id, await run_id(train_handle), "approve")
    train_stages = TrainHandle(train_handle)
    await train_stages.approve(Decision(reviewer="bob", signature=wrong))
    assert "signature does not verify" in " ".join(await refusals_after(stage, 1))

    right = signature(ws, bob, stage.id, await run_id(stage), "approve", comment="ship it")
    await train_stages.approve(Decision(reviewer="bob", comment="ship it", signature=right))
    result = await outcome(train_handle, TrainResult)
    assert result.status == "deployed"


async def test_with_signed_mode_off_unsigned_approvals_keep_working(ws: Stack) -> None:
    cli = ws.cli()
    off = await cli.run("env", "protect", "production", "--no-require-signed-approvals")
    assert off.code == 0 and "signed approvals not required" in off.out
    shown = json.loads((await cli.run("env", "show", "production", "--json")).out)
    assert shown["protection"]["require_signed_approvals"] is False

    handle = await ws.start_promotion("web", "1.0.0", "production", requested_by="alice")
    assert (await until_phase(handle, "awaiting_approval"))["signed_approvals_required"] is False
    # Plain, as the Temporal UI sends it: {"reviewer": "bob"}.
    await PromotionHandle(handle).approve(Decision(reviewer="bob"))
    result = await outcome(handle)
    assert result.status == "deployed"
    assert [(w, a) for w, a, _ in await decisions(cli)] == [("bob", "promotion.approve")]


def test_cli_mistakes_are_one_line_errors_and_store_nothing(cli: Cli, tmp_path: Path) -> None:
    key_file = tmp_path / "bob.ed25519"
    assert cli("reviewer", "key", "generate", "bob", "--key-file", str(key_file)).code == 0
    private = key_file.read_text()
    cases: list[tuple[tuple[str, ...], str]] = [
        (("reviewer", "key", "add", "bob", "garbage!"), "the public key is not valid"),
        (("reviewer", "key", "add", "bob", "ed25519:AAAA"), "3 bytes, not 32"),
        (("reviewer", "key", "add", "bob", private), "that is a private key"),
        (("reviewer", "key", "add", "@ops", "ed25519:AAAA"), "is a group"),
        (("reviewer", "key", "add", "a/b", "ed25519:AAAA"), "is not valid"),
        (("reviewer", "key", "generate", "../bob"), "is not valid"),
        (("reviewer", "key", "generate", "bob", "--key-file", str(key_file)), "already exists"),
        (("reviewer", "key", "revoke", "bob", "xyz"), "at least 8 hex digits"),
        (("reviewer", "key", "revoke", "bob", "0123456789abcdef"), "bob has no key"),
        (
            ("approve", "promote-web-1.0.0-production", "--reviewer", "bob", "--key-file", "nope"),
            "key file nope does not exist",
        ),
        (
            ("reject", "promote-web-1.0.0-production", "--reviewer", "bob", "--key-file", "."),
            "is a directory",
        ),
        (("env", "protect", "nowhere", "--require-signed-approvals"), "'nowhere' does not exist"),
        # Checked before anything goes to Temporal (none runs here: these would exit 5).
        (("approve", "", "--reviewer", "bob"), "promotion id '' is not valid"),
        (("approve", "promote-web-1.0.0-dev", "--reviewer", "bo\nb"), "is not valid"),
        (("override", "promote-web-1.0.0-dev", "--reviewer", "@ops"), "is a group"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.code == 3, (args, result)
        assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
        assert "Traceback" not in result.err and private.splitlines()[1] not in result.err
    key_file.chmod(0o640)
    loose = cli("approve", "x", "--reviewer", "bob", "--key-file", str(key_file))
    assert loose.code == 3 and "readable by other users" in loose.err
    listed = cli("reviewer", "key", "list")
    assert listed.code == 0 and "no reviewer keys yet" in listed.out
    assert cli("audit").out.strip() == "(none)"


def test_the_policy_asks_for_a_check_only_where_one_can_count() -> None:
    def review(signed: bool) -> Review:
        return Review(
            requester="alice",
            environment="production",
            eligible=["alice", "bob"],
            required=1,
            allow_self_review=False,
            signed=signed,
        )

    waiting = Phase.AWAITING_APPROVAL
    plain, sealed = Decision(reviewer="bob"), Decision(reviewer="bob", signature="c2ln")
    assert review(False).decide("approve", plain, waiting).accepted
    assert not review(False).needs_verification("approve", sealed, waiting)

    strict = review(True)
    assert not strict.needs_verification("approve", plain, waiting)  # nothing to check
    assert not strict.needs_verification(  # refused anyway: no activity for it
        "approve", Decision(reviewer="mallory", signature="c2ln"), waiting
    )
    assert not strict.needs_verification("approve", sealed, Phase.DEPLOYING)
    assert strict.needs_verification("approve", sealed, waiting)
    unsigned = strict.decide("approve", plain, waiting)
    assert not unsigned.accepted and unsigned.reason.startswith("unsigned: production")
    bad = SignatureCheck(verified=False, reason="signature does not verify: no key")
    assert strict.decide("approve", sealed, waiting, bad).reason == bad.reason
    assert strict.approvals == []
    good = SignatureCheck(verified=True, reason="signed with key 0123 of bob", fingerprint="0123")
    assert strict.decide("approve", sealed, waiting, good).accepted
    assert strict.approved and len(strict.refusals) == 2
