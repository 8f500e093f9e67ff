"""A worker's log, as an operator reads it: ordinary refusals (bad input, a refused gate,
nothing to roll back) are expected outcomes, each one line, never a Python traceback."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio.client import WorkflowFailureError

from models.promotion import PromotionInput, RollbackInput
from tests.conftest import STAGELINE
from tests.http_recorder import recorder
from tests.stack import Stack, stack
from tests.workflows import scenario
from workflows import contract

QUEUE = "stageline-log"


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[tuple[Stack, Path]]:
    with recorder() as hooks:
        async with stack(temporal, tmp_path / "home") as s:
            await scenario.build(s, hooks.url)
            await s.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
            log = tmp_path / "worker.log"
            with open(log, "wb") as out:
                worker = subprocess.Popen(
                    [STAGELINE, "worker"],
                    env={**s.cli().env, "STAGELINE_TASK_QUEUE": QUEUE},
                    stdout=out,
                    stderr=out,
                )
            try:
                yield s, log
            finally:
                worker.terminate()
                worker.wait(timeout=30)


async def test_ordinary_refusals_are_one_line_each_in_the_worker_log(
    ws: tuple[Stack, Path],
) -> None:
    s, log = ws
    starts: list[tuple[contract.WorkflowContract[Any, Any, Any], BaseModel]] = [
        (contract.ROLLBACK, RollbackInput(app="web", environment="dev", requested_by="oncall")),
        (
            contract.PROMOTION,
            PromotionInput(app="web", version="9.9.9", target="dev", requested_by="ci"),
        ),
        (
            contract.PROMOTION,
            PromotionInput(app="web", version="1.0.0", target="production", requested_by="ci"),
        ),
    ]
    for n, (workflow, request) in enumerate(starts):
        handle = await contract.start(
            s.client, workflow, request, id=f"refused-{n}", task_queue=QUEUE
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    time.sleep(1)  # the worker's last lines reach the file
    text = log.read_text()
    assert "Traceback" not in text, text
    line = f"{contract.PREPARE_PROMOTION.name}: InvalidInput: release web@9.9.9 does not exist"
    assert sum(line in row for row in text.splitlines()) == 1, (line, text)
    # A rollback with nowhere to go is an answer (refused, audited), not an activity error.
    assert contract.CHECK_ROLLBACK.name not in text, text
    assert contract.PLAN_ROLLBACK.name not in text, text
