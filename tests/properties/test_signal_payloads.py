"""Reviewer decisions of any shape, sent to a promotion that waits for approval.

Through the UI's "Send signal" form, `temporal workflow signal --input` or the `decide`
update, any JSON may arrive. The promotion keeps waiting (its workflow task never fails);
every signal that cannot count shows as exactly one refusal in the `status` query; an
update with a malformed payload is rejected by its validator and leaves no trace; nobody
but the environment's reviewer, spelled exactly, can approve or reject. Afterwards the
reviewer's own approval still deploys it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError

from models.promotion import PromotionResult, TrainInput
from models.review import Decision, DecisionRequest
from models.workspace import Protection
from tests.properties.hostile import (
    as_received,
    examples,
    hostile_strings,
    json_values,
    object_inputs,
)
from tests.stack import Stack, outcome, stack, until_phase
from workflows.contract import TRAIN, Query, Signal, Update

REVIEWER = "alice"
PIPELINE = f"steps:\n  - name: noop\n    run: [{sys.executable!r}, '-c', 'pass']\n"
KINDS = [Signal.APPROVE, Signal.REJECT, Signal.OVERRIDE]
# Spelled almost like the reviewer: none of them is the reviewer.
NEAR_MISSES = [
    "Alice",
    "ALICE",
    " alice",
    "alice ",
    "alice\n",
    "\uff41\uff4c\uff49\uff43\uff45",
    "\u0430lice",
    "alice\x00",
]

reviewers = st.one_of(
    st.sampled_from(NEAR_MISSES), st.sampled_from(["bob", "tester", "mallory"]), hostile_strings
).filter(lambda name: name != REVIEWER)
decisions = object_inputs(
    {"reviewer": [*NEAR_MISSES, "bob", "tester"]},
    {"comment": [None, "looks good", "x" * 2001]},
)
well_shaped = st.fixed_dictionaries(
    {"reviewer": reviewers}, optional={"comment": st.none() | st.text(max_size=2000)}
)
payloads = st.one_of(decisions, well_shaped, json_values())
requests = st.one_of(
    st.builds(lambda d, kind: {**d, "kind": kind}, well_shaped, st.sampled_from(KINDS)),
    st.builds(
        lambda d, kind: {**d, "kind": kind} if isinstance(d, dict) else d,
        payloads,
        st.one_of(st.sampled_from([*KINDS, "APPROVE", "approve "]), json_values(2)),
    ),
)


@dataclass
class Waiting:
    stack: Stack
    handle: WorkflowHandle[Any, Any]


@pytest.fixture(scope="module")
async def waiting(
    temporal: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Waiting]:
    async with stack(temporal, tmp_path_factory.mktemp("hostile-signals") / "home") as s:
        await s.envs.create_environment(
            "production",
            actor="t",
            protection=Protection(required_approvals=1, reviewers=[REVIEWER]),
        )
        # Production is this app's first environment, so its promotion goes straight to review.
        await s.envs.create_app("api", ["production"], actor="t")
        await s.releases.create_release("api", "1.0.0", PIPELINE, actor="t")
        handle = await s.start_promotion("api", "1.0.0", "production", requested_by="tester")
        await until_phase(handle, "awaiting_approval")
        yield Waiting(s, handle)


def counts(model: type[Decision], raw: Any) -> bool:
    try:
        model.model_validate(as_received(raw))
    except ValidationError:
        return False
    return True


async def refusals_reach(
    handle: WorkflowHandle[Any, Any], count: int, timeout: float = 10.0
) -> dict[str, Any]:
    """The status once it shows `count` refusals (signals are handled asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    status: dict[str, Any] = await handle.query(Query.STATUS)
    while len(status["refusals"]) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        status = await handle.query(Query.STATUS)
    return status


async def no_failed_workflow_task(handle: WorkflowHandle[Any, Any]) -> None:
    history = await handle.fetch_history()
    failed = [
        e.workflow_task_failed_event_attributes.failure.message
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert failed == [], failed


@settings(max_examples=examples(30))
@given(
    st.lists(st.tuples(st.sampled_from(KINDS), payloads), min_size=1, max_size=4),
    st.lists(requests, max_size=3),
)
async def test_malformed_or_unauthorised_decisions_never_count_and_never_break_it(
    waiting: Waiting, signals: list[tuple[str, Any]], updates: list[Any]
) -> None:
    handle = waiting.handle
    before = await handle.query(Query.STATUS)
    expected = list(before["refusals"])
    for kind, payload in signals:
        await handle.signal(kind, payload)
        well_formed = counts(Decision, payload)
        event("signal: well-formed" if well_formed else "signal: malformed")
        expected.append(f"{kind} by " if well_formed else f"malformed {kind} ignored: ")
    for payload in updates:
        if counts(DecisionRequest, payload):
            event("update: well-formed")
            outcome = await handle.execute_update(Update.DECIDE, payload)
            assert outcome["accepted"] is False, outcome
            kind = as_received(payload)["kind"]
            expected.append(f"{kind} by ")
        else:
            event("update: malformed")
            # Rejected by the validator, before it reaches the history.
            with pytest.raises(WorkflowUpdateFailedError):
                await handle.execute_update(Update.DECIDE, payload)

    status = await refusals_reach(handle, len(expected))
    assert status["phase"] == "awaiting_approval", status
    assert status["approvals"] == [] and status["may_approve"] == [REVIEWER], status
    assert len(status["refusals"]) == len(expected), (status["refusals"], expected)
    # Malformed ones first, then the reviewer policy's refusals, each kind in order.
    for malformed in (True, False):
        got = [r for r in status["refusals"] if r.startswith("malformed ") == malformed]
        want = [e for e in expected if e.startswith("malformed ") == malformed]
        assert [g[: len(w)] for g, w in zip(got, want, strict=True)] == want, (got, want)
        assert malformed or all(" refused: " in r for r in got), got
    # A refusal never echoes a whole pasted payload.
    assert all(len(r) < 2_000 for r in status["refusals"]), max(status["refusals"], key=len)
    await no_failed_workflow_task(handle)


async def test_the_reviewer_still_approves_and_it_deploys(waiting: Waiting) -> None:
    """Runs after the property above (same module, same waiting promotion)."""
    handle = waiting.handle
    await handle.signal(Signal.APPROVE, {"reviewer": REVIEWER, "comment": "after the noise"})
    result = await asyncio.wait_for(outcome(handle), 60)
    assert PromotionResult.model_validate(result).status == "deployed"
    await no_failed_workflow_task(handle)


# -- signals with no payload or two: the UI's "Send signal" with the input left empty ----


async def _fresh_waiting(s: Stack) -> WorkflowHandle[Any, Any]:
    version = f"2.0.{uuid.uuid4().int % 10_000}"
    await s.releases.create_release("api", version, PIPELINE, actor="t")
    handle = await s.start_promotion("api", version, "production", requested_by="tester")
    await until_phase(handle, "awaiting_approval")
    return handle


@pytest.mark.parametrize("args", [[], [{"reviewer": "bob"}, {"reviewer": "carol"}]])
@pytest.mark.parametrize("target", ["promotion", "train"])
async def test_a_signal_with_no_input_or_two_is_refused_and_the_promotion_waits_on(
    waiting: Waiting, args: list[Any], target: str
) -> None:
    s = waiting.stack
    version = f"2.0.{uuid.uuid4().int % 10_000}"
    await s.releases.create_release("api", version, PIPELINE, actor="t")
    promotion = await s.start_promotion("api", version, "production", requested_by="tester")
    handle = promotion
    if target == "train":
        await promotion.terminate("replaced by a train")
        handle = await s.client.start_workflow(
            TRAIN.name,
            TrainInput(app="api", version=version, through="production", requested_by="tester"),
            id=f"train-{uuid.uuid4().hex}",
            task_queue=s.settings.task_queue,
        )
        promotion = s.client.get_workflow_handle(f"promote-api-{version}-production")
    await until_phase(promotion, "awaiting_approval")
    try:
        await handle.signal(Signal.APPROVE, args=args)
        # Wait until the signal has been handled, one way or the other.
        outcome = await _after_signal(handle)
        assert outcome == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, EventType.Name(outcome)
        status = await refusals_reach(promotion, 1)
        assert status["phase"] == "awaiting_approval" and len(status["refusals"]) == 1
    finally:
        for running in {handle.id: handle, promotion.id: promotion}.values():
            with contextlib.suppress(RPCError):
                await running.terminate("hostile-signal test")


async def _after_signal(
    handle: WorkflowHandle[Any, Any], timeout: float = 10.0
) -> EventType.ValueType:
    """The first workflow task outcome recorded after the last signal."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        events = [e.event_type for e in (await handle.fetch_history()).events]
        signalled = max(
            i for i, t in enumerate(events) if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        )
        for kind in events[signalled:]:
            if kind in (
                EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
            ):
                return kind
        await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.id}: the signal was never handled")
