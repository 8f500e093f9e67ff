"""A rollback's turn, on SQLite and on PostgreSQL: with no `activate:` steps it checks,
queues, moves the pointer, closes and leaves in one unit of work; run again after it
committed (its local activity retried), it answers as it did and records nothing twice."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from models.promotion import (
    PlanRollback,
    PromotionInput,
    RollbackEnding,
    RollbackInput,
    RollbackTurn,
    WorkflowRef,
)
from models.settings import Settings
from models.status import DeploymentKind, DeploymentStatus, TicketState
from services.unit import Units
from store.database import Database
from store.tables import AuditEvent, CurrentRelease, Deployment, DeploymentTicket, Release

PIPELINE = 'steps:\n  - name: deploy\n    run: ["true"]\n'
WITH_ACTIVATE = PIPELINE + 'activate:\n  - name: warm\n    run: ["true"]\n'
RUN = WorkflowRef(workflow_id="rollback-web-dev-1", run_id="r1")


async def running(workflow_id: str, run_id: str) -> bool:
    return True


async def gone(workflow_id: str, run_id: str) -> bool:
    return False


async def deployed(units: Units, versions: list[str], pipeline: str = PIPELINE) -> Units:
    async with units.write() as w:
        await w.environments.create_environment("dev", actor="t")
        await w.environments.create_app("web", ["dev"], actor="t")
        for version in versions:
            await w.releases.create_release("web", version, pipeline, actor="t")
    for n, version in enumerate(versions):
        run = WorkflowRef(workflow_id=f"promote-web-{version}-dev", run_id=f"p{n}")
        request = PromotionInput(app="web", version=version, target="dev", requested_by="ci")
        async with units.write() as w:
            prepared = await w.deployments.prepare_promotion(request, run)
        async with units.write() as w:
            began = await w.deployments.begin_deployment(prepared.promotion_record_id, run)
        async with units.write() as w:
            await w.deployments.finish_deployment(began.deployment_id, True, None, caller=run)
    return units


@pytest.fixture
def units(db: Database, settings: Settings) -> Units:
    return Units(db, settings)


def turn(run: WorkflowRef = RUN) -> RollbackTurn:
    request = RollbackInput(app="web", environment="dev", requested_by="ops")
    return RollbackTurn(plan=PlanRollback(request=request, run=run), end_without_steps=True)


async def facts(db: Database, run: WorkflowRef = RUN) -> dict[str, object]:
    async with db.read() as session:
        deployments = (
            await session.scalars(
                select(Deployment).where(Deployment.workflow_id == run.workflow_id)
            )
        ).all()
        tickets = (
            await session.scalars(
                select(DeploymentTicket.state).where(
                    DeploymentTicket.workflow_id == run.workflow_id
                )
            )
        ).all()
        current = await session.scalar(
            select(Release.version).join(CurrentRelease, CurrentRelease.release_id == Release.id)
        )
        audited = Counter(
            (
                await session.scalars(
                    select(AuditEvent.action).where(
                        AuditEvent.detail["workflow_id"].as_string() == run.workflow_id
                    )
                )
            ).all()
        )
    return {
        "deployments": [(d.kind, d.status, d.finished_at is not None) for d in deployments],
        "tickets": list(tickets),
        "current": current,
        "audited": dict(audited),
    }


async def test_without_activate_steps_the_turn_ends_the_rollback_once(
    units: Units, db: Database
) -> None:
    await deployed(units, ["1.0.0", "1.1.0"])
    async with units.write() as w:
        first, following = await w.deployments.take_rollback_turn(turn(), running)
    assert first.ended and following is None
    assert first.lock is not None and first.lock.acquired
    assert first.plan is not None
    assert (first.plan.from_version, first.plan.to_version) == ("1.1.0", "1.0.0")
    expected = {
        "deployments": [(DeploymentKind.ROLLBACK, DeploymentStatus.DEPLOYED, True)],
        "tickets": [TicketState.DONE],
        "current": "1.0.0",
        "audited": {"rollback.start": 1, "rollback.rolled_back": 1},
    }
    assert await facts(db) == expected

    # The local activity ran again after its unit committed: the same answer, not a check
    # against the state it made (which has nothing further back to go to) and not a second
    # rollback.
    async with units.write() as w:
        again, following = await w.deployments.take_rollback_turn(turn(), running)
    assert again == first and following is None
    assert await facts(db) == expected


async def test_with_activate_steps_the_turn_leaves_the_end_to_the_steps(
    units: Units, db: Database
) -> None:
    await deployed(units, ["1.0.0", "1.1.0"], WITH_ACTIVATE)
    async with units.write() as w:
        state, following = await w.deployments.take_rollback_turn(turn(), running)
    assert not state.ended and following is None
    assert state.plan is not None and [s.name for s in state.plan.steps] == ["warm"]
    assert await facts(db) == {
        "deployments": [(DeploymentKind.ROLLBACK, DeploymentStatus.RUNNING, False)],
        "tickets": [TicketState.HOLDING],
        "current": "1.0.0",  # instant: the pointer moved before the steps
        "audited": {"rollback.start": 1},
    }
    assert state.lock is not None and state.plan.deployment_id is not None
    ending = RollbackEnding(
        finish={"deployment_id": state.plan.deployment_id, "succeeded": True},
        leave={"app": "web", "environment": "dev", "run": RUN},
    )
    async with units.write() as w:
        await w.deployments.end_rollback(ending, caller=RUN)
    ended = await facts(db)
    assert ended["deployments"] == [(DeploymentKind.ROLLBACK, DeploymentStatus.DEPLOYED, True)]
    assert ended["tickets"] == [TicketState.DONE]


async def test_ending_in_its_turn_wakes_the_run_waiting_behind(units: Units, db: Database) -> None:
    await deployed(units, ["1.0.0", "1.1.0"])
    holder = WorkflowRef(workflow_id="promote-web-1.2.0-dev", run_id="h")
    waiting = WorkflowRef(workflow_id="promote-web-1.3.0-dev", run_id="w")
    for run in (holder, waiting):
        async with units.write() as w:
            await w.queue.enter("web", "dev", run, DeploymentKind.PROMOTION, running)
    # The holder's workflow is gone: the rollback goes ahead of the waiting promotion, ends
    # in its turn, and hands the queue to the promotion.
    async with units.write() as w:
        state, following = await w.deployments.take_rollback_turn(turn(), gone)
    assert state.ended and following == waiting
    assert (await facts(db))["tickets"] == [TicketState.DONE]
    async with db.read() as session:
        open_tickets = await session.scalar(
            select(func.count()).where(DeploymentTicket.state != TicketState.DONE)
        )
    assert open_tickets == 1  # the waiting promotion's
