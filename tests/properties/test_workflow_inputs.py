"""Start inputs as a person types them into the Temporal UI, against a real dev server.

Whatever JSON arrives, each workflow ends at once: failed with a non-retryable InvalidInput
error that names what was wrong, or (well-shaped, but naming an app, release or environment
that does not exist) failed or refused with a reason that names it. None leaves a workflow
running while its workflow task fails and is retried (no WorkflowTaskFailed in its history),
and the worker goes on serving afterwards.
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
from pydantic import BaseModel, ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from models.promotion import PromotionInput, RollbackInput, TrainInput
from models.workspace import Protection
from tests.properties.hostile import as_received, examples, json_values, workflow_inputs
from tests.stack import Stack, outcome, stack
from workflows import contract
from workflows.outcomes import OUTCOME_TYPES

APPS, VERSIONS, ENVS = ["web"], ["1.0.0"], ["dev", "staging", "production"]
QUICK = 10.0  # seconds: how long a refused input may take to end its workflow
# The errors a workflow may end with when the input is well-shaped but names unknown things.
BUSINESS_TYPES = {"InvalidInput", "NotFound", "BadInput", "Refused", "Conflict"}
PIPELINE = f"steps:\n  - name: noop\n    run: [{sys.executable!r}, '-c', 'pass']\n"

# Plausible values for the hostile objects: known, unknown, and near misses (a trailing
# newline, a case variant); wholly hostile values come on top (see tests.properties.hostile).
NAMES = ["web", "api", "qa", "Web", "web\n"]
VERSION_VALUES = ["1.0.0", "9.9.9", "1.0.0\n", "../1.0.0"]
ENV_VALUES = ["dev", "staging", "production", "qa", "prod", "Dev"]
PEOPLE = ["ci@acme", "alice", "x" * 201]
SOURCES = ["ui", "cli", "ci", "api", "train", "compensation", "UI", "web"]

# Well-shaped values: what validates, known or not.
names = st.one_of(
    st.sampled_from([*APPS, *ENVS]), st.from_regex(r"[a-z][a-z0-9-]{0,62}", fullmatch=True)
)
versions = st.one_of(
    st.sampled_from(VERSIONS), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", fullmatch=True)
)
people = st.text(min_size=1, max_size=200)
sources = st.sampled_from(["ui", "cli", "ci", "api", "train", "compensation"])


def all_known(raw: dict[str, Any]) -> bool:
    return all(v in KNOWN[k] for k, v in raw.items() if k in KNOWN and v is not None)


def not_all_known(raw: Any) -> Any:
    """Naming only what exists would really deploy (or wait for a reviewer): that is the
    happy path, tested elsewhere; here such an input asks for an app that does not exist."""
    return {**raw, "app": "ghost"} if isinstance(raw, dict) and all_known(raw) else raw


# What exists in the workspace, by the field that names it.
KNOWN = {
    "app": APPS,
    "version": VERSIONS,
    "to_version": VERSIONS,
    "target": ENVS,
    "environment": ENVS,
    "through": ENVS,
}

PROMOTION = {
    "hostile": workflow_inputs(
        {"app": NAMES, "version": VERSION_VALUES, "target": ENV_VALUES, "requested_by": PEOPLE},
        {"source": SOURCES, "force": [True, False, "yes", 2]},
    ).map(not_all_known),
    "shaped": st.fixed_dictionaries(
        {"app": names, "version": versions, "target": names, "requested_by": people},
        optional={"source": sources, "force": st.booleans()},
    ).map(not_all_known),
}
ROLLBACK = {
    "hostile": workflow_inputs(
        {"app": NAMES, "environment": ENV_VALUES, "requested_by": PEOPLE},
        {"to_version": [None, *VERSION_VALUES], "source": SOURCES, "reason": ["oops", None]},
    ),
    # Known names too: the workspace has deployed nothing yet, so a rollback is refused.
    "shaped": st.fixed_dictionaries(
        {"app": names, "environment": names, "requested_by": people},
        optional={
            "to_version": st.none() | versions,
            "source": sources,
            "reason": st.none() | st.text(max_size=2000),
        },
    ),
}
TRAIN = {
    "hostile": workflow_inputs(
        {"app": NAMES, "version": VERSION_VALUES, "through": ENV_VALUES, "requested_by": PEOPLE},
        {"source": SOURCES},
    ).map(not_all_known),
    "shaped": st.fixed_dictionaries(
        {"app": names, "version": versions, "through": names, "requested_by": people},
        optional={"source": sources},
    ).map(not_all_known),
}


@pytest.fixture(scope="module")
async def ws(temporal: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with stack(temporal, tmp_path_factory.mktemp("hostile-inputs") / "home") as s:
        await s.envs.create_environment("dev", actor="t")
        await s.envs.create_environment("staging", actor="t")
        await s.envs.create_environment(
            "production",
            actor="t",
            protection=Protection(required_approvals=1, reviewers=["alice"]),
        )
        await s.envs.create_app("web", ENVS, actor="t")
        await s.releases.create_release("web", "1.0.0", PIPELINE, actor="t")
        yield s


@dataclass
class Expectation:
    """What validating the input says: either the fields at fault, or the names it uses."""

    invalid_fields: set[str] | None  # None: the input is well-shaped
    not_an_object: bool = False
    unknown: tuple[str, ...] = ()  # the names, among those it uses, that do not exist
    all_known: bool = False


def expect(model: type[BaseModel], raw: Any, name_fields: tuple[str, ...]) -> Expectation:
    received = as_received(raw)
    if not isinstance(received, dict):
        return Expectation(invalid_fields=set(), not_an_object=True)
    try:
        parsed = model.model_validate(received)
    except ValidationError as exc:
        return Expectation(invalid_fields={str(e["loc"][0]) for e in exc.errors() if e["loc"]})
    unknown = tuple(
        value
        for field in name_fields
        if (value := getattr(parsed, field)) is not None and value not in KNOWN[field]
    )
    return Expectation(None, unknown=unknown, all_known=not unknown)


async def run_hostile(ws: Stack, workflow: str, raw: Any, expectation: Expectation) -> None:
    handle = await ws.client.start_workflow(
        workflow, raw, id=f"hostile-{uuid.uuid4().hex}", task_queue=ws.settings.task_queue
    )
    failure: ApplicationError | None = None
    result: dict[str, Any] | None = None
    try:
        result = await asyncio.wait_for(handle.result(), QUICK)
    except WorkflowFailureError as exc:
        assert isinstance(exc.cause, ApplicationError), f"{workflow} {raw!r:.300}: {exc.cause!r}"
        failure = exc.cause
    except TimeoutError:
        history = await handle.fetch_history()
        await handle.terminate("hostile-input test: did not end in time")
        kinds = [EventType.Name(e.event_type) for e in history.events]
        pytest.fail(f"{workflow} with {raw!r:.300} still running after {QUICK}s: {kinds[-8:]}")
    history = await handle.fetch_history()
    task_failures = [
        e.workflow_task_failed_event_attributes.failure.message
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert task_failures == [], f"{workflow} with {raw!r:.300}: workflow task failed"

    if expectation.invalid_fields is not None:
        assert failure is not None, f"{workflow} accepted {raw!r:.300}: {result}"
        assert failure.type == "InvalidInput" and failure.non_retryable, failure
        assert failure.message.startswith("invalid input: "), failure.message
        # It says what was wrong, in a message a person can read (never a 100 KB echo).
        assert len(failure.message) < 3_000, failure.message[:500]
        if expectation.not_an_object:
            assert "expected a JSON object" in failure.message, failure.message
        for field in expectation.invalid_fields:
            assert field in failure.message, (field, failure.message)
        return
    # Well-shaped: ended with a reason (an unknown name, or a refusal such as nothing to
    # roll back from).
    if failure is not None:
        # A business error, or an outcome that is not a success (e.g. RollbackRefused),
        # which ends the workflow Failed with its reason as the message.
        assert failure.type in BUSINESS_TYPES | OUTCOME_TYPES and failure.non_retryable, failure
        reason = failure.message
    else:
        assert result is not None and result["status"] in {"rejected", "failed", "refused"}, result
        reason = result["reason"] or ""
    assert reason, f"{workflow} with {raw!r:.300} ended without a reason"
    if expectation.unknown and "does not exist" in reason:
        # Whatever it says does not exist is one of the unknown names (quoted as typed).
        named = [n for n in expectation.unknown if repr(n) in reason or f"@{n} " in reason]
        assert named, (expectation.unknown, reason)


async def run_batch(
    ws: Stack,
    workflow: str,
    model: type[BaseModel],
    name_fields: tuple[str, ...],
    inputs: list[Any],
) -> None:
    """Start every input at once; each must end by itself, quickly, as described above."""
    cases = [(raw, expect(model, raw, name_fields)) for raw in inputs]
    for _, e in cases:
        event(
            "not an object"
            if e.not_an_object
            else "invalid fields"
            if e.invalid_fields is not None
            else "well-shaped, all known"
            if e.all_known
            else "well-shaped, unknown names"
        )
    await asyncio.gather(*(run_hostile(ws, workflow, raw, e) for raw, e in cases))


# Each example starts three workflows side by side: a hostile object, a well-shaped one,
# and any JSON value at all.


@settings(max_examples=examples(30))
@given(PROMOTION["hostile"], PROMOTION["shaped"], json_values())
async def test_promotion_inputs_end_at_once_with_a_reason(
    ws: Stack, hostile: Any, shaped: Any, anything: Any
) -> None:
    await run_batch(
        ws,
        contract.PROMOTION.name,
        PromotionInput,
        ("app", "version", "target"),
        [hostile, shaped, anything],
    )


@settings(max_examples=examples(30))
@given(ROLLBACK["hostile"], ROLLBACK["shaped"], json_values())
async def test_rollback_inputs_end_at_once_with_a_reason(
    ws: Stack, hostile: Any, shaped: Any, anything: Any
) -> None:
    await run_batch(
        ws,
        contract.ROLLBACK.name,
        RollbackInput,
        ("app", "environment", "to_version"),
        [hostile, shaped, anything],
    )


@settings(max_examples=examples(30))
@given(TRAIN["hostile"], TRAIN["shaped"], json_values())
async def test_train_inputs_end_at_once_with_a_reason(
    ws: Stack, hostile: Any, shaped: Any, anything: Any
) -> None:
    await run_batch(
        ws,
        contract.TRAIN.name,
        TrainInput,
        ("app", "version", "through"),
        [hostile, shaped, anything],
    )


@pytest.mark.parametrize("workflow", [w.name for w in contract.WORKFLOWS])
async def test_a_start_with_two_inputs_ends_at_once(ws: Stack, workflow: str) -> None:
    handle = await ws.client.start_workflow(
        workflow, args=[{}, {}], id=f"hostile-{uuid.uuid4().hex}", task_queue=ws.settings.task_queue
    )
    try:
        # The first workflow task decides: it fails (and would be retried for ever) or it
        # ends the workflow.
        first = await first_task_outcome(handle)
        assert first != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED, "the workflow task failed"
        with pytest.raises(WorkflowFailureError) as caught:
            await asyncio.wait_for(outcome(handle), QUICK)
        assert isinstance(caught.value.cause, ApplicationError)
        assert caught.value.cause.type == "InvalidInput"
    finally:
        with contextlib.suppress(RPCError):
            await handle.terminate("hostile-input test")


async def first_task_outcome(handle: WorkflowHandle[Any, Any]) -> EventType.ValueType:
    deadline = asyncio.get_running_loop().time() + QUICK
    outcomes = (
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    )
    while asyncio.get_running_loop().time() < deadline:
        for e in (await handle.fetch_history()).events:
            if e.event_type in outcomes:
                return e.event_type
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id}: no workflow task finished within {QUICK}s")


async def test_a_rollback_naming_an_unknown_compensated_deployment_ends_at_once(
    ws: Stack,
) -> None:
    raw = {
        "app": "web",
        "environment": "staging",
        "requested_by": "ui",
        "compensating_deployment_id": 424242,
    }
    await run_hostile(ws, contract.ROLLBACK.name, raw, expect(RollbackInput, raw, ("app",)))


async def test_worker_still_deploys_after_the_hostile_inputs(ws: Stack) -> None:
    """Runs after the properties above (same module, same worker and workspace)."""
    handle = await ws.start_promotion("web", "1.0.0", "dev")
    try:
        result = await asyncio.wait_for(outcome(handle), 60)
    except TimeoutError:
        status = await handle.query(contract.Query.STATUS)
        events = [EventType.Name(e.event_type) for e in (await handle.fetch_history()).events]
        pytest.fail(f"a valid promotion did not finish: {status} {events}")
    assert result.status == "deployed", result.reason
    assert [s.status for s in result.steps] == ["succeeded"]
