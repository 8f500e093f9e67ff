"""What a workflow is comes from its type, never from how its id looks: a rollback or a train
started from the Temporal UI under any id behaves as one started by `stageline`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from models.promotion import RollbackInput, RollbackResult, TrainInput, TrainResult
from tests.stack import Stack, outcome, until_phase
from tests.workflows import scenario
from workflows import contract


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    async with scenario.workspace(temporal, tmp_path / "home", production_approvals=1) as built:
        yield built[0]


async def test_a_rollback_under_any_id_takes_precedence_over_a_deploying_promotion(
    ws: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    for version in ("1.0.0", "1.1.0"):
        await ws.releases.create_release("web", version, scenario.pipeline(), actor="t")
        assert (await ws.promote("web", version, "dev")).status == "deployed"
    slow = scenario.pipeline(marker=marker, sleep=60)
    await ws.releases.create_release("web", "1.2.0", slow, actor="t")
    promotion = await ws.start_promotion("web", "1.2.0", "dev")
    await until_phase(promotion, "deploying")
    await scenario.wait_for_line(marker, "1.2.0 dev start")

    started = asyncio.get_running_loop().time()
    rollback = await contract.start(
        ws.client,
        contract.ROLLBACK,
        RollbackInput(app="web", environment="dev", requested_by="oncall"),
        id="undo-the-bad-one",  # typed in the UI: no "rollback-" prefix
        task_queue=ws.settings.task_queue,
    )
    rolled = await outcome(rollback, RollbackResult)
    interrupted = await outcome(promotion)
    assert rolled.status == "rolled_back" and rolled.to_version == "1.0.0"
    assert interrupted.status == "rolled_back"
    assert "interrupted by undo-the-bad-one" in (interrupted.reason or "")
    assert asyncio.get_running_loop().time() - started < 40  # not after the 60 s step
    assert (await ws.views.status(environment="dev")).cells[0].version == "1.0.0"


async def test_a_train_under_any_id_takes_decisions_for_its_running_stage(ws: Stack) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    train = await contract.start(
        ws.client,
        contract.TRAIN,
        TrainInput(app="web", version="1.0.0", through="production", requested_by="dave"),
        id="ship-web-this-week",  # typed in the UI: no "train-" prefix
        task_queue=ws.settings.task_queue,
    )
    production = ws.client.get_workflow_handle("promote-web-1.0.0-production")
    await until_phase(production, "awaiting_approval", timeout=90)
    approved = await ws.cli().run("approve", train.id, "--reviewer", "alice")
    assert approved.code == 0, approved.err
    result = await outcome(train, TrainResult)
    assert result.status == "deployed"
    assert [s.environment for s in result.stages] == ["dev", "staging", "production"]
