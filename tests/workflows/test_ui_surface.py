"""What a Temporal operator sees without a query: outcomes that are not successes end Failed
with a typed error, promotions carry a summary and live current details, and the handlers
explain themselves (internal ones say so). `stageline` keeps its exit codes and JSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from models.promotion import RollbackInput, RollbackResult
from tests.http_recorder import Recorder
from tests.stack import CONVERTER, Stack, outcome, until_phase
from tests.workflows import scenario
from workflows import contract
from workflows.search_attributes import STATUS


@pytest.fixture
async def scenario_ws(temporal: Any, tmp_path: Path) -> AsyncIterator[tuple[Stack, Recorder]]:
    async with scenario.workspace(
        temporal, tmp_path / "home", production_approvals=1, releases=("1.0.0",)
    ) as built:
        yield built


async def failure_of(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert isinstance(caught.value.cause, ApplicationError), caught.value.cause
    return caught.value.cause


async def metadata(handle: WorkflowHandle[Any, Any]) -> WorkflowMetadata:
    answer: WorkflowMetadata = await handle.query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return answer


async def test_a_rejected_promotion_ends_failed_and_the_cli_still_says_rejected(
    ws: Stack,
) -> None:
    cli = ws.cli()
    for env in ("dev", "staging"):
        assert (await cli.run("promote", "web", "1.0.0", "--to", env, "--wait")).code == 0
    started = await cli.run("promote", "web", "1.0.0", "--to", "production", "--json")
    handle = ws.client.get_workflow_handle(json.loads(started.out)["promotion_id"])
    await until_phase(handle, "awaiting_approval")
    assert (await cli.run("reject", handle.id, "--reviewer", "bob", "--comment", "no")).code == 0

    failure = await failure_of(handle)
    assert failure.type == "PromotionRejected" and failure.non_retryable
    assert failure.message == "rejected by bob: no"
    assert failure.details[0]["status"] == "rejected"
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.FAILED
    assert described.typed_search_attributes.get(STATUS) == "rejected"
    # Clients read the outcome back from the failure, typed as before.
    assert (await outcome(handle)).status == "rejected"


async def test_a_gate_refusal_ends_failed_and_promote_wait_exits_2(ws: Stack) -> None:
    refused = await ws.cli().run("promote", "web", "1.0.0", "--to", "staging", "--wait", "--json")
    assert refused.code == 2, refused.err
    assert json.loads(refused.out)["status"] == "rejected"
    handle = ws.client.get_workflow_handle("promote-web-1.0.0-staging")
    failure = await failure_of(handle)
    assert failure.type == "PromotionRejected"
    assert "has not been deployed and verified in dev" in failure.message
    # Without --wait: over within the second, so it says how it ended, not "started".
    quick = await ws.cli().run("promote", "web", "1.0.0", "--to", "production")
    assert quick.code == 2 and quick.out.startswith("rejected: web@1.0.0 -> production"), quick
    done = await ws.cli().run("promote", "web", "1.0.0", "--to", "dev", "--wait")
    assert done.code == 0, done
    again = await ws.cli().run("promote", "web", "1.0.0", "--to", "dev")
    assert again.code == 0 and again.out.count("nothing to do") == 1, again


async def test_a_compensated_promotion_ends_failed_with_its_rollback_completed(
    ws: Stack, hooks: Recorder
) -> None:
    await ws.releases.create_release(
        "web", "1.1.0", scenario.pipeline(verify="http://127.0.0.1:9/nothing-listens"), actor="t"
    )
    cli = ws.cli()
    assert (await cli.run("promote", "web", "1.0.0", "--to", "dev", "--wait")).code == 0
    failed = await cli.run("promote", "web", "1.1.0", "--to", "dev", "--wait", "--json")
    assert failed.code == 1, failed.err
    assert json.loads(failed.out)["compensation"]["status"] == "rolled_back"
    handle = ws.client.get_workflow_handle("promote-web-1.1.0-dev")
    failure = await failure_of(handle)
    assert failure.type == "PromotionFailed"
    assert "verification 'health' failed" in failure.message
    assert "dev is back on 1.0.0" in failure.message
    child = await ws.client.get_workflow_handle("promote-web-1.1.0-dev-compensation").describe()
    assert child.status == WorkflowExecutionStatus.COMPLETED


async def test_a_refused_rollback_ends_failed_and_rollback_wait_exits_2(ws: Stack) -> None:
    answer = await ws.cli().run("rollback", "web", "--env", "dev", "--wait", "--json")
    assert answer.code == 2, answer.err
    assert json.loads(answer.out)["status"] == "refused"
    handle = await contract.start(
        ws.client,
        contract.ROLLBACK,
        RollbackInput(app="web", environment="staging", requested_by="oncall"),
        id="rollback-from-the-ui",
        task_queue=ws.settings.task_queue,
    )
    failure = await failure_of(handle)
    assert failure.type == "RollbackRefused" and failure.message
    assert (await outcome(handle, RollbackResult)).status == "refused"


async def test_promotion_shows_summary_live_details_and_described_handlers(ws: Stack) -> None:
    cli = ws.cli()
    for env in ("dev", "staging"):
        assert (await cli.run("promote", "web", "1.0.0", "--to", env, "--wait")).code == 0
    started = await cli.run(
        "promote", "web", "1.0.0", "--to", "production", "--requested-by", "dave", "--json"
    )
    handle = ws.client.get_workflow_handle(json.loads(started.out)["promotion_id"])
    await until_phase(handle, "awaiting_approval")

    described = await handle.describe()
    assert await described.static_summary() == "web 1.0.0 -> production"
    # The requester is who ran the command; --requested-by names whom they act for.
    assert "Requested by tester for dave" in (await described.static_details() or "")
    meta = await metadata(handle)
    details = meta.current_details
    assert "**web 1.0.0 -> production**, requested by tester for dave" in details
    assert "**Phase:** awaiting approval" in details
    assert "**Approvals:** 0 of 1" in details
    assert "**May still approve:** alice, bob, carol" in details
    assert "○ steps/migrate: pending" in details

    handlers = {h.name: h.description for h in meta.definition.signal_definitions}
    assert handlers["approve"].startswith('A reviewer approves: {"reviewer": "alice"')
    for internal in ("supersede", "preempt", "queue_moved", "freeze_changed"):
        assert handlers[internal].startswith("Internal, sent by stageline"), internal
    [query] = [q for q in meta.definition.query_definitions if q.name == "status"]
    assert "who may still approve" in query.description
    [update] = meta.definition.update_definitions
    assert update.name == "decide" and update.description

    assert (await cli.run("approve", handle.id, "--reviewer", "alice")).code == 0
    assert (await outcome(handle)).status == "deployed"
    details = (await metadata(handle)).current_details
    assert "**Phase:** deployed" in details and "✓ verify/health: succeeded" in details
    assert "**Approvals:** 1 of 1 (alice)" in details
    # Each step is named in the history, so the UI's timeline reads as the pipeline does.
    summaries = [
        e.user_metadata.summary
        for e in (await handle.fetch_history()).events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    # Encrypted like every payload; the UI reads them through the codec server.
    names = await CONVERTER.decode(summaries, [str] * len(summaries))
    assert names == ["steps/migrate", "steps/notify", "verify/health"]
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
