"""Requesters the stageline server vouches for, against a real dev server: the server signs
each request it starts with its own key (registered as it starts); an environment with
`require_verified_requester` lets through only promotions and rollbacks whose signature the
key store verifies for that very workflow, and refuses the rest at the gates with a reason
saying what to do. A train passes its proof to its stages; a forged stage gets nothing from
it. The server's signature on a decision counts for the reviewer it names, and the requester
still may not approve their own promotion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle
from temporalio.worker import Replayer

from models.promotion import (
    PromotionInput,
    PromotionResult,
    RollbackInput,
    RollbackResult,
    SignedFor,
    TrainInput,
    TrainResult,
    promotion_workflow_id,
    rollback_workflow_id,
    train_workflow_id,
)
from models.review import DecisionKind, DecisionOutcome, DecisionRequest
from services import signatures
from tests.http_recorder import recorder
from tests.stack import Stack, outcome, stack, until_phase
from tests.workflows import scenario
from worker.main import WORKFLOWS
from workflows import contract
from workflows.contract import PromotionHandle

REFUSAL = (
    "production accepts only requests made through the stageline server (signed in); start "
    "it with the CLI in remote mode or the console"
)


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    """web 1.0.0 verified in dev and staging; production needs one approval from alice, bob
    or carol, signed decisions, and a verified requester."""
    with recorder() as hooks:
        async with stack(temporal, tmp_path / "home") as s:
            await scenario.build(s, hooks.url, production_approvals=1)
            for version in ("1.0.0", "1.1.0"):
                await s.releases.create_release("web", version, scenario.pipeline(), actor="t")
            for env in ("dev", "staging"):
                assert (await s.promote("web", "1.0.0", env)).status == "deployed"
            await s.envs.protect_environment(
                "production",
                actor="t",
                require_signed_approvals=True,
                require_verified_requester=True,
            )
            yield s


async def server_key(s: Stack) -> Ed25519PrivateKey:
    """What the server does as it starts: register the public half of its key."""
    key = Ed25519PrivateKey.generate()
    public = signatures.public_key_text(signatures.public_key_of(key))
    async with s.units.write() as w:
        await w.reviewers.register_server_key(public, actor="stageline server")
    return key


def request_signature(s: Stack, key: Ed25519PrivateKey, **fields: Any) -> str:
    """The server's signature of a request by alice for web: `fields` name the workflow, its
    kind, version and environment (and anything else that differs)."""
    signed: dict[str, Any] = {
        "namespace": s.client.namespace,
        "app": "web",
        "requested_by": "alice",
        "on_behalf_of": None,
        **fields,
    }
    return signatures.sign(key, signatures.request_message(**signed))


async def start_signed_promotion(
    s: Stack, key: Ed25519PrivateKey | None, version: str, /, **made_for: Any
) -> WorkflowHandle[Any, Any]:
    """As the server starts a promotion into production for alice, who signed in;
    `made_for` alters what is signed (a signature made for another request)."""
    workflow_id = promotion_workflow_id("web", version, "production")
    fields = {
        "workflow_id": workflow_id,
        "kind": "promotion",
        "version": version,
        "environment": "production",
    }
    signature = None if key is None else request_signature(s, key, **{**fields, **made_for})
    return await s.start_promotion(
        "web", version, "production", requested_by="alice", requester_signature=signature
    )


async def decide_as(
    s: Stack,
    key: Ed25519PrivateKey,
    workflow_id: str,
    reviewer: str,
    kind: DecisionKind = "approve",
) -> DecisionOutcome:
    """As the server sends a decision for a reviewer who signed in: signed with its key."""
    handle = s.client.get_workflow_handle(workflow_id)
    run_id = (await handle.describe()).run_id
    message = signatures.decision_message(
        namespace=s.client.namespace,
        workflow_id=workflow_id,
        run_id=run_id,
        kind=kind,
        reviewer=reviewer,
        comment=None,
    )
    return await PromotionHandle(handle).decide(
        DecisionRequest(kind=kind, reviewer=reviewer, signature=signatures.sign(key, message))
    )


async def deploy_to_production(s: Stack, key: Ed25519PrivateKey, version: str) -> None:
    handle = await start_signed_promotion(s, key, version)
    await until_phase(handle, "awaiting_approval")
    assert (await decide_as(s, key, handle.id, "bob")).accepted
    assert (await outcome(handle)).status == "deployed"


async def replays(s: Stack, handle: WorkflowHandle[Any, Any]) -> None:
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=s.client.data_converter)
    await replayer.replay_workflow(await handle.fetch_history())


async def test_an_unverified_request_is_refused_at_the_gates(ws: Stack) -> None:
    # As the Temporal UI or the embedded CLI start it: no signature.
    unsigned = await outcome(await start_signed_promotion(ws, None, "1.0.0"))
    assert unsigned.status == "rejected" and not unsigned.requester_verified
    assert unsigned.reason is not None and unsigned.reason.startswith(REFUSAL)
    assert "carries no signature of the stageline server" in unsigned.reason
    gate = unsigned.gates[0]
    assert gate.name == "verified-requester" and not gate.passed

    key = await server_key(ws)
    stranger = Ed25519PrivateKey.generate()  # not the server's
    for signer, made_for in (
        (stranger, {}),
        (key, {"app": "api"}),
        (key, {"version": "1.1.0"}),
        (key, {"environment": "staging"}),
        (key, {"requested_by": "bob"}),
        (key, {"workflow_id": "promote-web-1.0.0-production-2"}),
        (key, {"kind": "rollback"}),
    ):
        handle = await start_signed_promotion(ws, signer, "1.0.0", **made_for)
        refused = await outcome(handle)
        assert refused.status == "rejected" and not refused.requester_verified, made_for
        assert refused.reason is not None and refused.reason.startswith(REFUSAL), made_for
        assert "the stageline server did not sign this promotion request" in refused.reason
    status = await PromotionHandle(handle).status()
    assert status.phase == "rejected" and not status.requester_verified

    async with ws.units.read() as w:
        requests = [
            e.detail
            for e in await w.views.audit_log(environment="production")
            if e.action == "promotion.request"
        ]
    assert len(requests) == 8 and not any(d["requester_verified"] for d in requests)


async def test_a_server_signed_promotion_deploys_and_its_requester_may_not_approve_it(
    ws: Stack,
) -> None:
    key = await server_key(ws)
    handle = await start_signed_promotion(ws, key, "1.0.0")
    status = await until_phase(handle, "awaiting_approval")
    assert status["requester_verified"] is True  # the raw JSON the UI shows
    assert status["gates"][0]["name"] == "verified-requester" and status["gates"][0]["passed"]
    # The UI's current details say so beside the requester.
    meta: WorkflowMetadata = await handle.query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    assert (
        "requested by alice (verified: signed in to the stageline server)" in meta.current_details
    )

    # Names are authenticated on both sides now: alice asked, so alice may not approve,
    # even with a decision the server signed for her.
    own = await decide_as(ws, key, handle.id, "alice")
    assert not own.accepted
    assert own.reason == "alice requested this promotion and may not approve it"
    approved = await decide_as(ws, key, handle.id, "bob")
    assert approved.accepted and approved.reason == "approved by bob (1/1)"

    result = await outcome(handle)
    assert result.status == "deployed" and result.requester_verified
    async with ws.units.read() as w:
        decisions = [
            (e.actor, e.action, e.detail.get("reason"))
            for e in await w.views.audit_log(environment="production")
            if e.action in ("promotion.approve", "promotion.refused")
        ]
    assert [(who, action) for who, action, _ in decisions] == [
        ("alice", "promotion.refused"),
        ("bob", "promotion.approve"),
    ]
    assert "signed by the stageline server (key " in str(decisions[1][2])
    assert str(decisions[1][2]).endswith("for bob, who signed in")
    await replays(ws, handle)


async def test_a_server_signed_train_verifies_its_stages_and_a_forged_stage_gains_nothing(
    ws: Stack,
) -> None:
    key = await server_key(ws)
    train_id = train_workflow_id("web", "1.1.0", "production")
    signature = request_signature(
        ws, key, kind="train", workflow_id=train_id, version="1.1.0", environment="production"
    )
    train = await contract.start(
        ws.client,
        contract.TRAIN,
        TrainInput(
            app="web",
            version="1.1.0",
            through="production",
            requested_by="alice",
            requester_signature=signature,
        ),
        id=train_id,
        task_queue=ws.settings.task_queue,
    )
    stage_id = promotion_workflow_id("web", "1.1.0", "production")
    stage = ws.client.get_workflow_handle(stage_id)
    assert (await until_phase(stage, "awaiting_approval"))["requester_verified"] is True
    assert (await decide_as(ws, key, stage_id, "carol")).accepted
    result = await outcome(train, TrainResult)
    assert result.status == "deployed" and result.requester_verified
    assert [(r.environment, r.requester_verified) for r in result.stages] == [
        ("dev", True),
        ("staging", True),
        ("production", True),
    ]
    await replays(ws, train)

    # The train's signature and proof copied into a promotion it did not start.
    forged = await contract.start(
        ws.client,
        contract.PROMOTION,
        PromotionInput(
            app="web",
            version="1.1.0",
            target="production",
            requested_by="alice",
            source="train",
            force=False,
            requester_signature=signature,
            signed_for=SignedFor(workflow_id=train_id, through="production"),
        ),
        id=stage_id,
        task_queue=ws.settings.task_queue,
    )
    refused = await outcome(forged, PromotionResult)
    assert refused.status == "rejected" and not refused.requester_verified
    assert refused.reason is not None and refused.reason.startswith(REFUSAL)
    assert f"made for the train {train_id}, which did not start this promotion" in refused.reason

    # An unsigned train: its stages are not verified, and production refuses it.
    await ws.releases.create_release("web", "1.2.0", scenario.pipeline(), actor="t")
    plain = await contract.start(
        ws.client,
        contract.TRAIN,
        TrainInput(app="web", version="1.2.0", through="production", requested_by="alice"),
        id=train_workflow_id("web", "1.2.0", "production"),
        task_queue=ws.settings.task_queue,
    )
    stopped = await outcome(plain, TrainResult)
    assert stopped.status == "rejected" and not stopped.requester_verified
    assert [(r.environment, r.status, r.requester_verified) for r in stopped.stages] == [
        ("dev", "deployed", False),
        ("staging", "deployed", False),
        ("production", "rejected", False),
    ]
    assert stopped.reason is not None and REFUSAL in stopped.reason


async def test_a_rollback_into_production_needs_the_servers_signature(ws: Stack) -> None:
    key = await server_key(ws)
    await deploy_to_production(ws, key, "1.0.0")
    for env in ("dev", "staging"):
        assert (await ws.promote("web", "1.1.0", env)).status == "deployed"
    await deploy_to_production(ws, key, "1.1.0")

    async def roll_back(suffix: str, **signed: Any) -> RollbackResult:
        workflow_id = rollback_workflow_id("web", "production", suffix)
        fields = {
            "workflow_id": workflow_id,
            "kind": "rollback",
            "version": None,
            "environment": "production",
        }
        signature = (
            request_signature(ws, key, **{**fields, **signed}) if signed.pop("sign", True) else None
        )
        handle = await contract.start(
            ws.client,
            contract.ROLLBACK,
            RollbackInput(
                app="web",
                environment="production",
                requested_by="alice",
                requester_signature=signature,
            ),
            id=workflow_id,
            task_queue=ws.settings.task_queue,
        )
        return await outcome(handle, RollbackResult)

    for suffix, signed in (("1", {"sign": False}), ("2", {"version": "1.0.0"})):
        refused = await roll_back(suffix, **signed)
        assert refused.status == "refused" and not refused.requester_verified
        assert refused.reason is not None and refused.reason.startswith(REFUSAL)
    async with ws.units.read() as w:
        assert (await w.views.status("production", "web")).cells[0].version == "1.1.0"

    rolled = await roll_back("3")
    assert rolled.status == "rolled_back" and rolled.to_version == "1.0.0"
    assert rolled.requester_verified
    async with ws.units.read() as w:
        history = await w.views.history("web", "production")
        refusals = [
            e.detail["reason"]
            for e in await w.views.audit_log(environment="production")
            if e.action == "rollback.refused"
        ]
    assert history[-1].kind == "rollback" and history[-1].version == "1.0.0"
    assert len(refusals) == 2 and all(r.startswith(REFUSAL) for r in refusals)


@pytest.mark.parametrize("copied", [False, True])
async def test_a_start_from_the_temporal_cli_is_unverified_and_refused(
    ws: Stack, copied: bool
) -> None:
    """Someone with the Temporal namespace types the start into the real `temporal` CLI: plain
    JSON, or with a server signature copied from another request. Production refuses both at
    its gate, naming the way in; nothing is deployed."""
    import asyncio
    import json

    from tests.stack import TEMPORAL

    payload: dict[str, Any] = {
        "app": "web",
        "version": "1.1.0",
        "target": "production",
        "requested_by": "alice",
    }
    if copied:  # a genuine server signature, made for 1.0.0
        key = await server_key(ws)
        payload["requester_signature"] = request_signature(
            ws,
            key,
            workflow_id=promotion_workflow_id("web", "1.0.0", "production"),
            kind="promotion",
            version="1.0.0",
            environment="production",
        )
    workflow_id = promotion_workflow_id("web", "1.1.0", "production")
    proc = await asyncio.create_subprocess_exec(
        TEMPORAL, "workflow", "start",
        "--address", ws.settings.temporal_address,
        "--namespace", ws.settings.temporal_namespace,
        "--type", contract.PROMOTION.name,
        "--task-queue", ws.settings.task_queue,
        "--workflow-id", workflow_id,
        "--input", json.dumps(payload),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result = await outcome(ws.client.get_workflow_handle(workflow_id))
    assert result.status == "rejected" and result.requester_verified is False
    assert "accepts only requests made through the stageline server" in (result.reason or "")
    assert next(g.name for g in result.gates if not g.passed) == "verified-requester"
    status = await ws.views.status(environment="production")
    assert status.cells[0].version is None
