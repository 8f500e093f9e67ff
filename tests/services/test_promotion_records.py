"""A promotion's record and deployment, on SQLite and on PostgreSQL: one of each per run,
whatever attempt of its `prepare_promotion` and `begin_deployment` runs (local activities run
again when a workflow task is retried)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models.promotion import PromotionInput, PromotionOutcome, WorkflowRef
from models.status import PromotionEnd
from services.unit import Units
from store.database import Database
from store.tables import AuditEvent, Deployment, Promotion


@pytest.fixture
def units(web_in_dev: Units) -> Units:
    return web_in_dev


async def records_and_requests(db: Database, workflow_id: str) -> tuple[int, int]:
    async with db.read() as session:
        records = await session.scalar(
            select(func.count()).where(Promotion.workflow_id == workflow_id)
        )
        requests = await session.scalar(
            select(func.count()).where(
                AuditEvent.action == "promotion.request",
                AuditEvent.detail["workflow_id"].as_string() == workflow_id,
            )
        )
    return int(records or 0), int(requests or 0)


async def test_a_prepare_run_again_finds_its_own_record_before_and_after_it_ended(
    units: Units, db: Database
) -> None:
    older = WorkflowRef(workflow_id="promote-web-1.0.0-dev", run_id="r0")
    run = WorkflowRef(workflow_id="promote-web-1.1.0-dev", run_id="r1")
    async with units.write() as w:
        await w.deployments.prepare_promotion(
            PromotionInput(app="web", version="1.0.0", target="dev", requested_by="ci"), older
        )
    request = PromotionInput(app="web", version="1.1.0", target="dev", requested_by="ci")
    async with units.write() as w:
        first = await w.deployments.prepare_promotion(request, run)
    async with units.write() as w:
        again = await w.deployments.prepare_promotion(request, run)
    assert again.promotion_record_id == first.promotion_record_id
    # The older promotion under way is superseded each time; the run's own record never is.
    assert [r.workflow_id for r in first.supersedes] == [older.workflow_id]
    assert again.supersedes == first.supersedes

    # Ended (say, its gates failed), then the workflow task was retried: the same record.
    ended = PromotionOutcome(
        promotion_record_id=first.promotion_record_id, status=PromotionEnd.REJECTED
    )
    async with units.write() as w:
        await w.deployments.record_promotion_outcome(ended, caller=run)
    async with units.write() as w:
        after_end = await w.deployments.prepare_promotion(request, run)
    assert after_end.promotion_record_id == first.promotion_record_id
    assert await records_and_requests(db, run.workflow_id) == (1, 1)


async def test_a_begin_run_again_finds_the_deployment_it_began(units: Units, db: Database) -> None:
    run = WorkflowRef(workflow_id="promote-web-1.0.0-dev", run_id="r1")
    request = PromotionInput(app="web", version="1.0.0", target="dev", requested_by="ci")
    async with units.write() as w:
        prepared = await w.deployments.prepare_promotion(request, run)
    async with units.write() as w:
        first = await w.deployments.begin_deployment(prepared.promotion_record_id, run)
    async with units.write() as w:
        again = await w.deployments.begin_deployment(prepared.promotion_record_id, run)
    assert again == first
    async with db.read() as session:
        begun = await session.scalar(
            select(func.count()).where(Deployment.workflow_id == run.workflow_id)
        )
    assert begun == 1
