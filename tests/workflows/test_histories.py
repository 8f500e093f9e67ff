"""Workflow histories: no secret value in any of them, and the code replays them all.

The committed histories under histories/ were recorded from this scenario; replaying them
makes a change that breaks determinism fail the suite. After an intended, versioned change
(workflow.patched), record a new generation beside the old ones (set GENERATION) with:
STAGELINE_RECORD_HISTORIES=1 pytest tests/workflows/test_histories.py
(histories recorded since payload encryption are ciphertext under the tests' master key; the
older plaintext ones replay through the codec, which passes unencrypted payloads through).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text as sql
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.http_recorder import Recorder, recorder
from tests.stack import CONVERTER, Stack, outcome, payloads_in, stack, until_phase
from tests.workflows import scenario
from worker.main import WORKFLOWS
from workflows.contract import Signal
from workflows.patches import UP_FRONT_PATCH

HISTORIES = Path(__file__).parent / "histories"
# Each generation of recorded histories is kept, and the code must replay them all: the
# first ones (top level) predate outcomes ending as failures (workflow.patched); then
# rollbacks checked before they queue; then one transaction per phase of a promotion (each
# workflow.patched); then every patch decided by one marker at the start of the run.
# rollback-ended-apart/ holds a rollback with no activate steps from before its turn could
# end it (two local activities; the activity's answer decides, no patch).
GENERATION = HISTORIES / "patches-up-front"


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[tuple[Stack, Recorder]]:
    with recorder() as hooks:
        async with stack(temporal, tmp_path / "home") as s:
            await scenario.build(s, hooks.url, production_approvals=1)
            yield s, hooks


async def test_full_scenario_leaves_no_secret_in_any_history_and_replays(
    ws: tuple[Stack, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    """Promotions, a refused and an accepted approval, a failed verification with its
    compensation, a rollback and a train; then every place a secret could leak to is
    searched for the known values: each history (decoded, as anyone with the key or the UI
    codec would read it), every log line of the worker, every CLI output, the failures the
    workflows raised, the audit log and the captured step output."""
    caplog.set_level(logging.DEBUG)
    s, hooks = ws
    cli_output: list[str] = []

    async def cli(*args: str) -> int:
        result = await s.cli().run(*args)
        cli_output.extend([result.out, result.err])
        return result.code

    await s.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    await s.releases.create_release(
        "web", "1.1.0", scenario.pipeline(verify=f"{hooks.url}/never-healthy"), actor="t"
    )
    await s.releases.create_release("web", "1.2.0", scenario.pipeline(), actor="t")
    for env in ("dev", "staging"):
        assert (await s.promote("web", "1.0.0", env)).status == "deployed"
    # Production is protected: a refused signal, then an approval through the update.
    handle = await s.start_promotion("web", "1.0.0", "production", requested_by="alice")
    await until_phase(handle, "awaiting_approval")
    await handle.signal(Signal.APPROVE, {"reviewer": "alice"})
    assert await cli("approve", handle.id, "--reviewer", "bob") == 0
    assert (await outcome(handle)).status == "deployed"
    hooks.status = 503  # every hook and health check fails now: 1.1.0 is compensated
    failed = await s.promote("web", "1.1.0", "dev")
    assert failed.status == "failed" and failed.compensation is not None
    hooks.status = 200
    assert (await s.promote("web", "1.2.0", "dev")).status == "deployed"
    assert await cli("rollback", "web", "--env", "dev", "--wait", "--json") == 0
    await s.releases.create_release("web", "1.3.0", scenario.pipeline(), actor="t")
    assert await cli("train", "web", "1.3.0", "--through", "staging", "--wait") == 0
    assert await cli("status", "--env", "dev") == 0
    assert await cli("history", "web", "--env", "dev") == 0

    histories: list[WorkflowHistory] = []
    async for execution in s.client.list_workflows(f'TaskQueue = "{s.settings.task_queue}"'):
        handle = s.client.get_workflow_handle(execution.id, run_id=execution.run_id)
        histories.append(await handle.fetch_history())
    kinds = {h.workflow_id.split("-")[0] for h in histories}
    assert kinds == {"promote", "rollback", "train"} and len(histories) >= 10
    assert CONVERTER.payload_codec is not None
    everything: list[str] = []
    for history in histories:
        text = history.to_json()
        decoded = []
        for event in history.events:
            for _, payload in payloads_in(event):
                [clear] = await CONVERTER.payload_codec.decode([payload])
                decoded.append(clear.SerializeToString().decode("utf-8", "replace"))
        assert decoded, history.workflow_id
        everything.extend(decoded)
        for value in scenario.SECRETS.values():
            assert value not in text, f"{value} found in the history of {history.workflow_id}"
            assert all(value not in d for d in decoded), (value, history.workflow_id)
    # The decoding is real: the failed promotion's reason is there to read.
    assert "activate step 'switch' failed" in (failed.reason or "")
    assert any("activate step 'switch' failed" in d for d in everything)

    # Nor in any log line of the worker, with its exceptions, nor any CLI output.
    logged = [caplog.text, *(r.getMessage() for r in caplog.records)]
    assert len(caplog.records) > 0
    for value in scenario.SECRETS.values():
        assert all(value not in line for line in logged), f"{value} in the worker's log"
        assert all(value not in out for out in cli_output), f"{value} in a CLI output"
        assert value not in (failed.reason or "")

    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=CONVERTER)
    for history in histories:
        await replayer.replay_workflow(history)

    # Nor in the audit log or any captured step output (masked), searched as stored.
    async with s.db.read() as session:
        stored = [
            json.dumps([list(map(str, row)) for row in (await session.execute(sql(q))).all()])
            for q in (
                "SELECT * FROM audit_event",
                "SELECT * FROM step_run",
                "SELECT * FROM deployment",
                "SELECT * FROM promotion",
            )
        ]
    masked = [o for o in stored[1:2] if "***" in o]
    assert masked, "step outputs should show masked secrets"
    for value in scenario.SECRETS.values():
        assert all(value not in blob for blob in stored)

    if os.environ.get("STAGELINE_RECORD_HISTORIES"):
        GENERATION.mkdir(parents=True, exist_ok=True)
        for history in histories:
            name = history.workflow_id.replace("/", "_")
            (GENERATION / f"{name}.json").write_text(history.to_json())


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("**/*.json"))


@pytest.mark.parametrize("path", recorded(), ids=lambda p: str(p.relative_to(HISTORIES)))
async def test_recorded_history_replays(path: Path) -> None:
    # Recorded before payload encryption: the codec passes their plain payloads through.
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=CONVERTER)
    await replayer.replay_workflow(history)


def test_recorded_histories_are_present() -> None:
    assert len(recorded()) >= 20, "run with STAGELINE_RECORD_HISTORIES=1 to record them"
    # The newest generation holds a promotion that ended Failed under the patch.
    failed = WorkflowHistory.from_json("f", (GENERATION / "promote-web-1.1.0-dev.json").read_text())
    assert failed.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    assert any(e.marker_recorded_event_attributes.marker_name for e in failed.events)

    # And a promotion that deployed does its database work in 3 local activities, not 8:
    # prepare, take the turn (queue, freeze, begin), end.
    def local_activities(path: Path) -> int:
        events = WorkflowHistory.from_json("d", path.read_text()).events
        names = [e.marker_recorded_event_attributes.marker_name for e in events]
        return names.count("core_local_activity")

    before = HISTORIES / "rollback-checked-before-queue" / "promote-web-1.0.0-dev.json"
    assert (local_activities(before), local_activities(GENERATION / before.name)) == (8, 3)
    # A rollback's in 2 where it took 5: check, queue and plan; then close and leave.
    rollbacks = [sorted(g.glob("rollback-web-dev-*.json"))[0] for g in (before.parent, GENERATION)]
    assert [local_activities(r) for r in rollbacks] == [5, 2]


def test_newest_histories_decide_their_code_version_before_any_local_activity() -> None:
    """Each run of the newest generation holds one version marker, the up-front one, and it
    precedes the run's first local activity (see workflows/patches.py for the replay failure
    a marker after a local activity can cause)."""
    for path in sorted(GENERATION.glob("*.json")):
        events = WorkflowHistory.from_json(path.stem, path.read_text()).events
        markers = [
            e.marker_recorded_event_attributes
            for e in events
            if e.HasField("marker_recorded_event_attributes")
        ]
        names = [m.marker_name for m in markers]
        patches = [
            json.loads(m.details["patch-data"].payloads[0].data)["id"]
            for m in markers
            if m.marker_name == "core_patch"
        ]
        assert patches == [UP_FRONT_PATCH], (path.name, patches)
        if "core_local_activity" in names:
            assert names.index("core_patch") < names.index("core_local_activity"), path.name


def split_after_first_local_activity(history: WorkflowHistory) -> WorkflowHistory:
    """The same run, had its first workflow task ended right after its first local
    activity's marker (as a query arriving while the activity finishes can make it): the rest
    of that task's events move into a second task."""
    events = [copy.deepcopy(e) for e in history.events]
    at = 1 + next(
        i
        for i, e in enumerate(events)
        if e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    )
    task = [copy.deepcopy(e) for e in events[1:4]]  # scheduled, started, completed
    # Events after the new task's three move up by three.
    renumbered = {e.event_id: n if n <= at else n + 3 for n, e in enumerate(events, start=1)}
    events[at:at] = task
    for number, event in enumerate(events, start=1):
        event.event_id = number
        attributes = getattr(event, event.WhichOneof("attributes") or "")
        for field, value in attributes.ListFields():
            if field.name.endswith("event_id") and isinstance(value, int):
                setattr(attributes, field.name, renumbered.get(value, value))
    scheduled, started, completed = at + 1, at + 2, at + 3
    events[started - 1].workflow_task_started_event_attributes.scheduled_event_id = scheduled
    done = events[completed - 1].workflow_task_completed_event_attributes
    done.scheduled_event_id, done.started_event_id = scheduled, started
    for event in events[completed:]:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            break
        attributes = getattr(event, event.WhichOneof("attributes") or "")
        if hasattr(attributes, "workflow_task_completed_event_id"):
            attributes.workflow_task_completed_event_id = completed
    return WorkflowHistory(history.workflow_id, events)


async def replay_failure(history: WorkflowHistory) -> Exception | None:
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=CONVERTER)
    return (await replayer.replay_workflow(history, raise_on_replay_failure=False)).replay_failure


async def test_a_first_task_that_ends_at_its_first_local_activity_still_replays() -> None:
    """Histories of that shape occur (a query arriving as the first local activity
    finishes); before the code version was decided up front, replaying one took the old code
    path after the activity and failed, which stalls the run after an eviction."""
    lazy = HISTORIES / "one-transaction-per-phase" / "promote-web-1.0.0-dev.json"
    split = split_after_first_local_activity(WorkflowHistory.from_json("l", lazy.read_text()))
    assert await replay_failure(split) is not None, "the split no longer shows the hazard"
    for path in sorted(GENERATION.glob("*.json")):
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        names = [e.marker_recorded_event_attributes.marker_name for e in history.events]
        if "core_local_activity" in names:
            failure = await replay_failure(split_after_first_local_activity(history))
            assert failure is None, (path.name, failure)
