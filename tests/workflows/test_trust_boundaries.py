"""Attacks from someone who can reach the Temporal namespace but is not stageline: they call
the worker's activities by name with the real `temporal` CLI (standalone activities, Temporal
Server 1.32), and nothing is deployed, recorded or forged; the refusal is audited."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle

from models.errors import Refused, Unavailable
from models.promotion import (
    WorkflowRef,
    promotion_workflow_id,
    rollback_workflow_id,
    train_workflow_id,
)
from store.tables import AuditEvent, CurrentRelease, Deployment, Promotion
from tests.conftest import Cli
from tests.http_recorder import Recorder, recorder
from tests.stack import TEMPORAL, Stack, outcome, stack, until_phase
from tests.workflows import scenario
from workflows.contract import PROMOTION, PromotionHandle, Signal


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[tuple[Stack, Recorder]]:
    with recorder() as hooks:
        async with stack(temporal, tmp_path / "home") as s:
            await scenario.build(s, hooks.url, production_approvals=1)
            await s.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
            yield s, hooks


async def waiting_in_production(s: Stack) -> tuple[WorkflowHandle[Any, Any], Promotion]:
    """web 1.0.0 through dev and staging, then into production, waiting for approval; with
    its promotion record (whose ids are easy to guess)."""
    for env in ("dev", "staging"):
        assert (await s.promote("web", "1.0.0", env)).status == "deployed"
    handle = await s.start_promotion("web", "1.0.0", "production", requested_by="mallory")
    await until_phase(handle, "awaiting_approval")
    async with s.db.read() as session:
        record = (
            await session.scalars(select(Promotion).where(Promotion.workflow_id == handle.id))
        ).one()
    return handle, record


async def execute_activity(s: Stack, activity_type: str, payload: dict[str, Any]) -> str:
    """`temporal activity execute` as an attacker types it: plain JSON, no codec."""
    done = await asyncio.to_thread(
        subprocess.run,
        [
            TEMPORAL,
            "activity",
            "execute",
            "--address",
            s.settings.temporal_address,
            "--namespace",
            s.settings.temporal_namespace,
            "--task-queue",
            s.settings.task_queue,
            "--activity-id",
            f"attack-{uuid.uuid4().hex[:8]}",
            "--type",
            activity_type,
            "--start-to-close-timeout",
            "20s",
            "--input",
            json.dumps(payload),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0, f"{activity_type} ran for an outsider: {done.stdout}"
    return done.stdout + done.stderr


async def test_activities_called_from_outside_a_workflow_are_refused_and_audited(
    ws: tuple[Stack, Recorder],
) -> None:
    s, hooks = ws
    handle, record = await waiting_in_production(s)
    async with s.db.read() as session:
        deployments_before = len((await session.scalars(select(Deployment))).all())
    run = {"workflow_id": record.workflow_id, "run_id": record.run_id}
    calls_before = len(hooks.calls)

    outputs = [
        await execute_activity(
            s, "begin_deployment", {"promotion_record_id": record.id, "run": run}
        ),
        await execute_activity(
            s,
            "record_decision",
            {
                "promotion_record_id": record.id,
                "workflow_id": record.workflow_id,
                "kind": "approve",
                "reviewer": "alice",
                "accepted": True,
                "reason": "approved by alice (1/1); signed with key 0123456789abcdef",
            },
        ),
        await execute_activity(
            s,
            "prepare_promotion",
            {
                "promotion": {
                    "app": "web",
                    "version": "1.0.0",
                    "target": "production",
                    "requested_by": "mallory",
                },
                "run": {"workflow_id": "promote-forged", "run_id": "r1"},
            },
        ),
        await execute_activity(
            s, "finish_deployment", {"deployment_id": 1, "succeeded": True, "reason": None}
        ),
        # Taking the waiting promotion's turn in the queue and beginning its deployment.
        await execute_activity(
            s,
            "take_turn",
            {
                "lock": {"app": "web", "environment": "production", "run": run},
                "begin": {"promotion_record_id": record.id, "run": run},
            },
        ),
        # Rolling dev back (a new deployment, its pointer moved) as if from a rollback run.
        await execute_activity(
            s,
            "take_rollback_turn",
            {
                "plan": {
                    "request": {"app": "web", "environment": "dev", "requested_by": "mallory"},
                    "run": {"workflow_id": "rollback-forged", "run_id": "r1"},
                }
            },
        ),
        await execute_activity(
            s,
            "end_rollback",
            {"leave": {"app": "web", "environment": "dev", "run": run}},
        ),
        # Ending the waiting promotion as deployed and taking it out of the queue.
        await execute_activity(
            s,
            "end_promotion",
            {
                "outcome": {"promotion_record_id": record.id, "status": "deployed"},
                "finish": {"deployment_id": 1, "succeeded": True},
                "leave": {"app": "web", "environment": "production", "run": run},
            },
        ),
        await execute_activity(
            s,
            "run_step",
            {
                "deployment_id": 1,
                "run_id": "x/y",
                "step": {
                    "section": "steps",
                    "index": 0,
                    "name": "migrate",
                    "kind": "run",
                    "timeout_seconds": 10,
                },
            },
        ),
    ]
    for output in outputs:
        # Refused; the reason is encrypted like every failure (the audit log below has it).
        assert "FAILED" in output and "activity failed" in output, output

    async with s.db.read() as session:
        deployments_after = len((await session.scalars(select(Deployment))).all())
        production = (await s.views.status(environment="production")).cells[0].version
        events = (await session.scalars(select(AuditEvent))).all()
        pointers = (await session.scalars(select(CurrentRelease))).all()
    assert deployments_after == deployments_before
    assert production is None and len(pointers) == 2  # dev and staging only
    assert len(hooks.calls) == calls_before  # no step, no webhook ran
    assert not [e for e in events if e.action == "promotion.approve"]  # nothing forged
    refused = [e for e in events if e.action == "activity.refused"]
    assert {e.subject for e in refused} == {
        "begin_deployment",
        "record_decision",
        "prepare_promotion",
        "finish_deployment",
        "take_turn",
        "take_rollback_turn",
        "end_rollback",
        "end_promotion",
        "run_step",
    }
    assert all("standalone" in e.actor for e in refused)
    assert all("stageline's workflows" in e.detail["reason"] for e in refused)
    # The real promotion is untouched: still waiting, and an approval still deploys it.
    assert (await PromotionHandle(handle).status()).phase == "awaiting_approval"
    assert (await s.cli().run("approve", handle.id, "--reviewer", "alice")).code == 0
    assert (await outcome(handle)).status == "deployed"
    assert (await s.views.status(environment="production")).cells[0].version == "1.0.0"


async def signal_with_temporal_cli(s: Stack, workflow_id: str, name: str, payload: str) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [
            TEMPORAL,
            "workflow",
            "signal",
            "--address",
            s.settings.temporal_address,
            "--namespace",
            s.settings.temporal_namespace,
            "--workflow-id",
            workflow_id,
            "--name",
            name,
            "--input",
            payload,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


async def test_forged_supersede_and_preempt_signals_are_refused_and_audited(
    ws: tuple[Stack, Recorder],
) -> None:
    s, _ = ws
    handle, _ = await waiting_in_production(s)

    # An outsider names workflows that exist (the dev and staging promotions) or none at all.
    forged = {
        Signal.SUPERSEDE: "promote-web-1.0.0-dev",
        Signal.PREEMPT: "rollback-web-production-x",
    }
    for name, by in forged.items():
        await signal_with_temporal_cli(s, handle.id, name, json.dumps({"by": by}))
    promotion = PromotionHandle(handle)
    for _ in range(100):
        status = await promotion.status()
        if len(status.refusals) >= 2:
            break
        await asyncio.sleep(0.1)
    refusals = " | ".join(status.refusals)
    assert "supersede from promote-web-1.0.0-dev refused" in refusals, refusals
    assert "preempt from rollback-web-production-x refused" in refusals, refusals
    assert status.phase == "awaiting_approval"
    assert status.superseded_by is None and status.interrupted_by is None

    # Still waiting for its reviewer, and it deploys when approved: nothing cut it short.
    assert (await s.cli().run("approve", handle.id, "--reviewer", "alice")).code == 0
    assert (await outcome(handle)).status == "deployed"
    async with s.db.read() as session:
        actions = [e.action for e in (await session.scalars(select(AuditEvent))).all()]
    assert "promotion.supersede_refused" in actions and "promotion.preempt_refused" in actions


async def test_a_name_typed_as_requester_is_a_claim_and_neither_may_approve(
    ws: tuple[Stack, Recorder],
) -> None:
    s, _ = ws
    await s.envs.protect_environment(
        "production", actor="t", required_approvals=1, reviewers=["alice", "bob", "release-bot"]
    )
    for env in ("dev", "staging"):
        assert (await s.promote("web", "1.0.0", env)).status == "deployed"
    alice = Cli({**s.cli().env, "STAGELINE_USER": "alice"})
    started = await alice.run(
        "promote", "web", "1.0.0", "--to", "production", "--requested-by", "release-bot", "--json"
    )
    assert started.code == 0, started.err
    handle = s.client.get_workflow_handle(json.loads(started.out)["promotion_id"])
    status = await until_phase(handle, "awaiting_approval")
    assert (status["requested_by"], status["on_behalf_of"]) == ("alice", "release-bot")
    assert status["may_approve"] == ["bob"]

    own = await alice.run("approve", handle.id, "--reviewer", "alice")
    assert own.code == 2 and "alice requested this promotion" in own.err, own.err
    bot = await alice.run("approve", handle.id, "--reviewer", "release-bot")
    assert bot.code == 2 and "release-bot is whom alice requested" in bot.err, bot.err
    assert (await s.cli().run("approve", handle.id, "--reviewer", "bob")).code == 0
    assert (await outcome(handle)).status == "deployed"
    async with s.db.read() as session:
        [requested] = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "promotion.request",
                    AuditEvent.environment == "production",
                )
            )
        ).all()
    assert requested.actor == "alice" and requested.detail["on_behalf_of"] == "release-bot"


def test_workflow_ids_never_collide() -> None:
    assert promotion_workflow_id("web", "1.4.0", "staging") == "promote-web-1.4.0-staging"
    assert promotion_workflow_id("web-4", "0.0", "dev") != promotion_workflow_id(
        "web", "4-0.0", "dev"
    )
    names = ["a", "a-", "a-b", "b", "a--b", "-b"]
    seen: dict[str, tuple[str, ...]] = {}
    for parts in itertools.product(names, repeat=3):
        if any(p.startswith("-") for p in parts):
            continue  # no name starts with a hyphen
        for make in (promotion_workflow_id, train_workflow_id, rollback_workflow_id):
            made = make(*parts)
            assert seen.setdefault(made, (make.__name__, *parts)) == (make.__name__, *parts)


async def test_look_alike_releases_get_their_own_promotions(ws: tuple[Stack, Recorder]) -> None:
    s, _ = ws
    await s.envs.create_app("web-4", ["dev", "staging", "production"], actor="t")
    await s.releases.create_release("web", "4-0.0", scenario.pipeline(), actor="t")
    await s.releases.create_release("web-4", "0.0", scenario.pipeline(), actor="t")
    cli = s.cli()
    for app, version in (("web-4", "0.0"), ("web", "4-0.0")):
        done = await cli.run("promote", app, version, "--to", "dev", "--wait", "--json")
        assert done.code == 0, done.err
        result = json.loads(done.out)
        assert (result["app"], result["version"], result["status"]) == (app, version, "deployed")
    cells = {(c.app, c.environment): c.version for c in (await s.views.status()).cells}
    assert cells[("web", "dev")] == "4-0.0" and cells[("web-4", "dev")] == "0.0"


async def test_a_squatted_workflow_id_is_refused_at_once(ws: tuple[Stack, Recorder]) -> None:
    s, _ = ws
    cli = s.cli()
    wid = promotion_workflow_id("web", "1.0.0", "dev")
    # Another type under the promotion's id, on a queue no worker polls: it stays running.
    squatter = await s.client.start_workflow(
        "Squatter", {"app": "web"}, id=wid, task_queue="nobody-polls-this"
    )
    started = asyncio.get_running_loop().time()
    refused = await cli.run("promote", "web", "1.0.0", "--to", "dev", "--wait", "--timeout", "60")
    assert refused.code == 2, refused.err
    assert f"{wid} is taken by a running Squatter" in refused.err
    assert asyncio.get_running_loop().time() - started < 30  # an answer, not a wait
    await squatter.terminate("test")

    # The same type for another request under that id: refused too, naming what it is for.
    other = await s.client.start_workflow(
        PROMOTION.name,  # raw JSON, as typed into the UI
        {"app": "web", "version": "9.9.9", "target": "dev", "requested_by": "mallory"},
        id=wid,
        task_queue="nobody-polls-this",
    )
    refused = await cli.run("promote", "web", "1.0.0", "--to", "dev", "--wait", "--timeout", "60")
    assert refused.code == 2 and "'version': '9.9.9'" in refused.err, refused.err
    await other.terminate("test")
    # Gone: the id is free again and the promotion runs.
    assert (await cli.run("promote", "web", "1.0.0", "--to", "dev", "--wait")).code == 0


async def test_compensation_runs_however_much_the_failing_step_printed(
    ws: tuple[Stack, Recorder],
) -> None:
    s, _ = ws
    loud = f"""\
steps:
  - name: deploy
    run: [{sys.executable!r}, "-c", "print('deployed')"]
verify:
  - name: smoke
    run: [{sys.executable!r}, "-c", "print('why ' * 50000); raise SystemExit(1)"]
"""
    await s.releases.create_release("web", "1.1.0", loud, actor="t")
    assert (await s.promote("web", "1.0.0", "dev")).status == "deployed"
    failed = await s.promote("web", "1.1.0", "dev")
    assert failed.status == "failed"
    assert failed.compensation is not None and failed.compensation.status == "rolled_back"
    assert "dev is back on 1.0.0" in (failed.reason or "")
    assert len(failed.reason or "") < 3_000  # bounded where it was made
    assert "characters cut" in (failed.reason or "")
    assert (await s.views.status(environment="dev")).cells[0].version == "1.0.0"


async def test_a_deployment_begins_only_with_the_approvals_on_record(
    ws: tuple[Stack, Recorder],
) -> None:
    """Behind the caller checks: even the run's own begin_deployment finds the approvals its
    environment asked for (recorded by the run as they counted), or it does not deploy."""
    s, _ = ws
    handle, record = await waiting_in_production(s)
    assert (record.required_approvals, record.approved_by) == (1, [])
    run = WorkflowRef(workflow_id=record.workflow_id, run_id=record.run_id)
    with pytest.raises(Unavailable, match="0 of 1 approvals on record"):
        async with s.units.write() as w:
            await w.deployments.begin_deployment(record.id, run)
    elsewhere = WorkflowRef(workflow_id="promote-forged", run_id="r")
    with pytest.raises(Refused, match="belongs to another workflow run"):
        async with s.units.write() as w:
            await w.deployments.begin_deployment(record.id, elsewhere)

    assert (await s.cli().run("approve", handle.id, "--reviewer", "alice")).code == 0
    assert (await outcome(handle)).status == "deployed"
    async with s.db.read() as session:
        again = await session.get(Promotion, record.id)
        assert again is not None and again.approved_by == ["alice"]
