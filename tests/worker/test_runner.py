"""The worker's workflow runner: Temporal's sandbox, answering payload contexts itself only
when the converter reads none; the sandbox still refuses what it refused, and payloads still
go through stageline's codec."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.converter import (
    DataConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
)
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from tests.conftest import KEY_TEXT
from tests.worker.clock_workflow import Greets, ReadsTheClock
from vault.codec import data_converter
from vault.keys import MasterKey
from worker.runner import reads_context, sandboxed_runner

CONVERTER = data_converter(MasterKey.from_text(KEY_TEXT, "test"))


class ContextAwareCodec(PayloadCodec, WithSerializationContext):
    """Encodes each payload for the command it belongs to (say, a key per activity)."""

    def __init__(self, context: SerializationContext | None = None) -> None:
        self.context = context

    def with_context(self, context: SerializationContext) -> ContextAwareCodec:
        return ContextAwareCodec(context)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


def test_the_sdk_answers_contexts_for_a_converter_that_reads_them() -> None:
    assert not reads_context(CONVERTER)
    assert not isinstance(sandboxed_runner(CONVERTER), SandboxedWorkflowRunner)
    aware = DataConverter(payload_codec=ContextAwareCodec())
    assert reads_context(aware)
    assert isinstance(sandboxed_runner(aware), SandboxedWorkflowRunner)


async def run_in_worker(temporal: Any, workflow: str, timeout: float) -> tuple[Any, list[Any]]:
    client = await Client.connect(
        temporal.client.service_client.config.target_host, data_converter=CONVERTER
    )
    queue = f"runner-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ReadsTheClock, Greets],
        workflow_runner=sandboxed_runner(CONVERTER),
    ):
        handle = await client.start_workflow(
            workflow, "web", id=f"{queue}-{workflow}", task_queue=queue
        )
        try:
            result = await asyncio.wait_for(handle.result(), timeout)
        except (TimeoutError, WorkflowFailureError) as exc:
            result = exc
        history = await handle.fetch_history()
    raw = await temporal.client.get_workflow_handle(handle.id).fetch_history()
    return result, [history, raw]


async def test_a_workflow_runs_and_its_payloads_are_encrypted(temporal: Any) -> None:
    result, (_, raw) = await run_in_worker(temporal, "Greets", 30)
    assert result == "hello web"
    started = raw.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    done = next(
        e for e in raw.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    ).workflow_execution_completed_event_attributes.result.payloads[0]
    for payload in (started, done):  # as the server holds them: ciphertext
        assert b"web" not in payload.data
        assert payload.metadata["encoding"] == b"binary/encrypted"


async def test_the_sandbox_still_refuses_the_wall_clock(temporal: Any) -> None:
    result, (history, _) = await run_in_worker(temporal, "ReadsTheClock", 3)
    assert isinstance(result, TimeoutError), result  # its task fails, and is retried
    failures = [
        str(await CONVERTER.decode_failure(e.workflow_task_failed_event_attributes.failure))
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert failures, "the workflow task should have failed"
    assert "Cannot access datetime.datetime.now" in failures[0], failures[0]


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
