"""What Temporal stores for a stageline promotion is ciphertext: read back by a client
without the codec, no input, result, signal, update or failure says anything."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from models.promotion import PromotionInput, PromotionResult
from models.review import Decision
from models.workspace import Protection
from tests.http_recorder import recorder
from tests.stack import CONVERTER, Stack, outcome, payloads_in, stack, until_phase
from vault.codec import ENCODING, KEY_ID, data_converter
from vault.keys import MasterKey
from vault.secret_value import SecretValue
from worker.main import WORKFLOWS
from workflows import contract

FEATURE = "feature-dev-7f3a91"  # a variable value the run step prints (no secret, yet hidden)
TOKEN = "hook-token-5d0c22"
COMMENT = "checked the canary dashboards, alice-3c8e"
UPDATE_COMMENT = "rollout plan reviewed, bob-91d4"
BAD_FIELD = "unexpected_field_4b7e"
# What the SDK core records about a local activity (its LocalActivityMarkerData), no more.
CORE_MARKER_FIELDS = {
    "seq",
    "attempt",
    "activity_id",
    "activity_type",
    "complete_time",
    "backoff",
    "original_schedule_time",
    "activation_index",
}


def pipeline(verify_url: str) -> str:
    script = "import os; print('feature flag is', os.environ['FEATURE'])"
    return f"""\
steps:
  - name: configure
    run: [{sys.executable!r}, "-c", {script!r}]
    env: {{FEATURE: "${{{{ vars.FEATURE }}}}"}}
  - name: notify
    tool: deploy-hook
    with: {{version: "${{{{ release.version }}}}", feature: "${{{{ vars.FEATURE }}}}"}}
verify:
  - name: health
    http: {{url: "{verify_url}", expect_status: 200, deadline_seconds: 2, interval_seconds: 0.5}}
"""


@pytest.fixture
async def workspace(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    async with stack(temporal, tmp_path / "home") as s:
        await s.envs.create_environment("dev", actor="t")
        await s.envs.create_environment(
            "staging",
            actor="t",
            protection=Protection(required_approvals=2, reviewers=["alice", "bob"]),
        )
        await s.envs.create_app("web", ["dev", "staging"], actor="t")
        await s.config.create_tool("deploy-hook", kind="webhook", actor="t")
        for env in ("dev", "staging"):
            await s.config.set_variable(env, "FEATURE", FEATURE, actor="t")
            await s.config.set_secret(env, "HOOK_TOKEN", SecretValue(TOKEN), actor="t")
        yield s


# Every workflow.patched() name in the code (the *_PATCH constants of workflows/): what a
# version marker may hold in the clear.
PATCHES = {
    match.group(1)
    for module in (Path(__file__).resolve().parents[2] / "workflows").glob("*.py")
    for match in re.finditer(r'_PATCH = "([^"]+)"', module.read_text())
}


async def raw_histories(s: Stack) -> list[WorkflowHistory]:
    """The histories as Temporal stores them, through a client that has no codec."""
    plain = await Client.connect(
        s.settings.temporal_address,
        namespace=s.settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )
    histories = []
    async for execution in plain.list_workflows():
        handle = plain.get_workflow_handle(execution.id, run_id=execution.run_id)
        histories.append(await handle.fetch_history())
    return histories


def clear_by_design(event: HistoryEvent, path: str, payload: Payload) -> bool:
    """Payloads Temporal itself must read, or the SDK core writes without the codec:
    search attributes (the server indexes them), a local activity marker's bookkeeping
    (sequence number, activity type, time; its result payload is encrypted) and a version
    marker's patch name (`workflow.patched`: one of ours, fixed in the code)."""
    if ".search_attributes.indexed_fields[" in path:
        return True
    if event.marker_recorded_event_attributes.marker_name == "core_patch":
        assert path.endswith(".details[patch-data].payloads[0]"), path
        assert json.loads(payload.data)["id"] in PATCHES, payload.data
        assert set(json.loads(payload.data)) <= {"id", "deprecated"}, payload.data
        return True
    if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED or ".details[data]." not in path:
        return False
    assert set(json.loads(payload.data)) <= CORE_MARKER_FIELDS, payload.data
    return True


async def test_history_holds_only_ciphertext_and_the_codec_client_reads_it(
    workspace: Stack,
) -> None:
    s = workspace
    with recorder() as hooks:
        for env in ("dev", "staging"):
            await s.config.set_tool_profile(
                "deploy-hook",
                env,
                url=f"{hooks.url}/hooks/{env}",
                auth_secret="HOOK_TOKEN",
                actor="t",
            )
        await s.releases.create_release("web", "1.0.0", pipeline(f"{hooks.url}/health"), actor="t")
        dev = await s.promote("web", "1.0.0", "dev")
        assert dev.status == "deployed", dev.reason
        # Staging needs two approvals: one by signal, one through the CLI's update.
        handle = await s.start_promotion("web", "1.0.0", "staging")
        await until_phase(handle, "awaiting_approval")
        await contract.PromotionHandle(handle).approve(Decision(reviewer="alice", comment=COMMENT))
        approved = await s.cli().run(
            "approve", handle.id, "--reviewer", "bob", "--comment", UPDATE_COMMENT
        )
        assert approved.code == 0, approved.err
        staging = await outcome(handle)
        assert isinstance(staging, PromotionResult) and staging.status == "deployed"
        # A release that does not exist: an activity failure, then a workflow failure.
        with pytest.raises(WorkflowFailureError) as refused:
            await s.promote("web", "9.9.9", "dev")
    # A start input that does not validate fails the workflow with a message naming it.
    bad = await s.client.start_workflow(
        contract.PROMOTION.name,  # raw JSON, as typed into the UI
        {"app": "web", "version": "1.0.0", "target": "dev", "requested_by": "t", BAD_FIELD: 1},
        id="promote-bad-input",
        task_queue=s.settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await outcome(bad)
    # The codec client reads everything back: results, the step output, failure messages.
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and BAD_FIELD in cause.message
    configure = next(step for step in dev.steps if step.name == "configure")
    assert f"feature flag is {FEATURE}" in (configure.detail or "")
    missing = refused.value.cause
    assert isinstance(missing, ApplicationError) and "does not exist" in missing.message

    histories = await raw_histories(s)
    assert {h.workflow_id for h in histories} >= {
        "promote-web-1.0.0-dev",
        "promote-web-1.0.0-staging",
        "promote-web-9.9.9-dev",
        "promote-bad-input",
    }
    key_id = MasterKey.from_text(s.settings.master_key or "", "test").key_id.encode()
    seen: dict[EventType.ValueType, int] = {}
    failures = 0
    for history in histories:
        raw = b"".join(event.SerializeToString() for event in history.events)
        for clear in (FEATURE, TOKEN, COMMENT, UPDATE_COMMENT, BAD_FIELD, missing.message):
            assert clear.encode() not in raw, f"{clear!r} in {history.workflow_id}"
        for event in history.events:
            for path, payload in payloads_in(event):
                if clear_by_design(event, path, payload):
                    continue
                assert payload.metadata["encoding"] == ENCODING, (
                    f"{history.workflow_id}: {EventType.Name(event.event_type)} {path} is "
                    f"{payload.metadata.get('encoding')!r}"
                )
                assert payload.metadata[KEY_ID] == key_id
                seen[event.event_type] = seen.get(event.event_type, 0) + 1
            for path, _ in payloads_in(event):
                if path.endswith("encoded_attributes"):
                    failures += 1
            text = str(event)
            # Failure messages and stack traces travel encrypted, in encoded_attributes.
            assert "Traceback" not in text and 'File "' not in text
    # Every kind of payload the scenario produces was checked, not skipped.
    for kind in (
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        EventType.EVENT_TYPE_MARKER_RECORDED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    ):
        assert seen.get(kind), f"no payload of {EventType.Name(kind)} was checked"
    assert failures >= 2, "the scenario should have recorded encoded failures"

    # A reader without the key sees no query answer either, only that it is encrypted.
    plain = await Client.connect(
        s.settings.temporal_address,
        namespace=s.settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )
    with pytest.raises(Exception, match="binary/encrypted"):
        await plain.get_workflow_handle("promote-web-1.0.0-dev").query(contract.Query.STATUS)
    # And with the codec the stored histories replay, as a worker after a restart does.
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=CONVERTER)
    for history in histories:
        await replayer.replay_workflow(history)


async def test_a_worker_without_the_writers_key_names_the_key_it_lacks(workspace: Stack) -> None:
    s = workspace
    other = MasterKey(b"o" * 32)
    stranger = await Client.connect(
        s.settings.temporal_address,
        namespace=s.settings.temporal_namespace,
        data_converter=data_converter(other),
    )
    handle = await contract.start(
        stranger,
        contract.PROMOTION,
        PromotionInput(app="web", version="1.0.0", target="dev", requested_by="t", source="api"),
        id="promote-web-1.0.0-dev",
        task_queue=s.settings.task_queue,
    )
    try:
        failure = None
        for _ in range(100):
            events = (await handle.fetch_history()).events
            failed = [
                e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
            ]
            if failed:
                failure = failed[0].workflow_task_failed_event_attributes.failure
                break
            await asyncio.sleep(0.2)
        assert failure is not None, "the worker should fail the workflow task"
        # Stored encrypted (under the worker's key), like every failure message.
        assert failure.message == "Encoded failure"
        error = await CONVERTER.decode_failure(failure)
        assert other.key_id in str(error) and s.key.key_id in str(error)
        assert "STAGELINE_MASTER_KEY" in str(error)
    finally:
        await handle.terminate()
