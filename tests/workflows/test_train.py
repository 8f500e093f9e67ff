"""ReleaseTrainWorkflow: the chain in one workflow; approvals reach the waiting stage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from models.promotion import TrainResult
from tests.http_recorder import Recorder
from tests.stack import Stack, until_phase
from tests.workflows import scenario
from workflows.contract import Signal


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[tuple[Stack, Recorder]]:
    async with scenario.workspace(
        temporal, tmp_path / "home", production_approvals=2, releases=("1.0.0",)
    ) as (s, hooks):
        yield s, hooks


async def test_train_to_production_completes_after_approvals_sent_to_the_train(
    ws: tuple[Stack, Recorder],
) -> None:
    s, _ = ws
    cli = s.cli()
    running = asyncio.ensure_future(
        cli.run(
            "train",
            "web",
            "1.0.0",
            "--through",
            "production",
            "--wait",
            "--json",
            "--requested-by",
            "alice",
        )
    )
    train = s.client.get_workflow_handle("train-web-1.0.0-production")
    production = s.client.get_workflow_handle("promote-web-1.0.0-production")
    await until_phase(production, "awaiting_approval", timeout=90)
    # A raw signal to the train is forwarded; the CLI given the train id finds the stage.
    await train.signal(Signal.APPROVE, {"reviewer": "bob"})
    refused = await cli.run("approve", train.id, "--reviewer", "alice")
    assert refused.code == 2 and "may not approve it" in refused.err
    assert (await cli.run("approve", train.id, "--reviewer", "carol")).code == 0

    outcome = await running
    assert outcome.code == 0, outcome.err
    result = TrainResult.model_validate(json.loads(outcome.out))
    assert result.status == "deployed"
    assert [(r.environment, r.status) for r in result.stages] == [
        ("dev", "deployed"),
        ("staging", "deployed"),
        ("production", "deployed"),
    ]
    view = await s.views.status()
    assert [(c.environment, c.version) for c in view.cells] == [
        ("dev", "1.0.0"),
        ("staging", "1.0.0"),
        ("production", "1.0.0"),
    ]
    # Run again (a CI retry): a new train whose stages are no-ops, no approval needed.
    again = await cli.run("train", "web", "1.0.0", "--through", "production", "--wait", "--json")
    assert again.code == 0, again.err
    rerun = TrainResult.model_validate(json.loads(again.out))
    assert [(r.status, r.noop) for r in rerun.stages] == [("deployed", True)] * 3


async def test_train_stops_at_staging_when_its_verification_fails(
    ws: tuple[Stack, Recorder],
) -> None:
    s, hooks = ws
    await s.config.set_variable("staging", "HEALTH_URL", "http://127.0.0.1:9/down", actor="t")
    outcome = await s.cli().run(
        "train", "web", "1.0.0", "--through", "production", "--wait", "--json"
    )
    assert outcome.code == 1, outcome.err
    result = TrainResult.model_validate(json.loads(outcome.out))
    assert result.status == "failed"
    assert [(r.environment, r.status) for r in result.stages] == [
        ("dev", "deployed"),
        ("staging", "failed"),
    ]
    assert result.reason is not None
    assert result.reason.startswith("stopped at staging: verification 'health' failed")
    assert not [c for c in hooks.calls if c.path.endswith("/production")]
    assert (await s.views.status(environment="production")).cells[0].version is None
    # In the Temporal UI the train and its failed stage read as failures, not successes.
    for workflow_id, error_type in (
        ("train-web-1.0.0-production", "TrainStopped"),
        ("promote-web-1.0.0-staging", "PromotionFailed"),
    ):
        with pytest.raises(WorkflowFailureError) as caught:
            await s.client.get_workflow_handle(workflow_id).result()
        assert isinstance(caught.value.cause, ApplicationError)
        assert caught.value.cause.type == error_type
