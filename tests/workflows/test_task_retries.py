"""A workflow task that fails after its local activities ran leaves their writes behind, and
the next attempt may go another way. A promotion whose record an earlier attempt already
ended (say, superseded) must end as recorded, not deploy and not fail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from models.promotion import PromotionOutcome, WorkflowRef
from models.status import PromotionEnd
from store.tables import Promotion
from tests.stack import Stack, outcome, until_phase
from tests.workflows import scenario


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    async with scenario.workspace(temporal, tmp_path / "home", production_approvals=1) as built:
        yield built[0]


async def test_a_run_whose_record_already_ended_ends_as_recorded(ws: Stack) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    for env in ("dev", "staging"):
        assert (await ws.promote("web", "1.0.0", env)).status == "deployed"
    handle = await ws.start_promotion("web", "1.0.0", "production")
    await until_phase(handle, "awaiting_approval")
    description = await handle.describe()
    async with ws.db.read() as session:
        record = await session.scalar(select(Promotion).where(Promotion.workflow_id == handle.id))
    assert record is not None
    # What an abandoned task attempt of this run left behind: its outcome, recorded.
    async with ws.units.write() as w:
        await w.deployments.record_promotion_outcome(
            PromotionOutcome(
                promotion_record_id=record.id,
                status=PromotionEnd.SUPERSEDED,
                reason="superseded by promote-web-2.0.0-production (an earlier task attempt)",
            ),
            caller=WorkflowRef(workflow_id=handle.id, run_id=description.run_id),
        )
    await handle.signal("approve", {"reviewer": "alice"})
    result = await outcome(handle)
    assert result.status == "superseded", result.reason
    assert result.reason == "superseded by promote-web-2.0.0-production (an earlier task attempt)"
    assert await scenario.deployments_of(ws, handle.id) == []
    assert (await ws.views.status(environment="production")).cells[0].version is None
