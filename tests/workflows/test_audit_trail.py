"""The audit log is complete where people look for what happened in an environment:
rollbacks and compensations with their outcomes, refused rollbacks, data writes. Every entry
about an environment names it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from models.promotion import RollbackInput, RollbackResult
from tests.http_recorder import recorder
from tests.stack import Stack, outcome, stack, until_phase
from tests.workflows import scenario
from workflows import contract


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    with recorder() as hooks:
        async with stack(temporal, tmp_path / "home") as s:
            await scenario.build(s, hooks.url)
            yield s


async def audit(s: Stack, environment: str) -> list[dict[str, Any]]:
    done = await s.cli().run("audit", "--env", environment, "--json")
    assert done.code == 0, done.err
    rows: list[dict[str, Any]] = json.loads(done.out)
    assert all(r["environment"] == environment for r in rows)
    return rows


def actions(rows: list[dict[str, Any]]) -> list[str]:
    return [r["action"] for r in rows]


async def test_a_rollback_with_nowhere_to_go_never_interrupts_a_deploying_promotion(
    ws: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    pipeline = scenario.pipeline(marker, sleep=4)
    await ws.releases.create_release("web", "1.0.0", pipeline, actor="t")
    first = await ws.start_promotion("web", "1.0.0", "dev")
    await until_phase(first, "deploying")
    await scenario.wait_for_line(marker, "1.0.0 dev start")

    # dev has no release yet: nothing to roll back to, so the rollback is refused at once,
    # before it takes its place ahead of the promotion in the queue.
    refused = await ws.cli().run("rollback", "web", "--env", "dev", "--wait", "--json")
    assert refused.code == 2, refused.out + refused.err
    assert json.loads(refused.out)["status"] == "refused"
    result = await outcome(first)
    assert result.status == "deployed", result.reason
    assert [s.status for s in result.steps] == ["succeeded"] * 3

    rows = await audit(ws, "dev")
    [entry] = [r for r in rows if r["action"] == "rollback.refused"]
    assert entry["subject"] == "web in dev" and entry["actor"] == "tester"
    assert "no release in dev to roll back from" in entry["detail"]["reason"]
    assert "promotion.preempt_refused" not in actions(rows)


async def test_rollback_outcomes_are_audited(ws: Stack) -> None:
    for version in ("1.0.0", "1.1.0"):
        await ws.releases.create_release("web", version, scenario.pipeline(), actor="t")
        assert (await ws.promote("web", version, "dev")).status == "deployed"
    done = await ws.cli().run("rollback", "web", "--env", "dev", "--reason", "bad 1.1", "--wait")
    assert done.code == 0, done.err
    rows = [r for r in await audit(ws, "dev") if r["action"].startswith("rollback.")]
    assert [(r["action"], r["subject"]) for r in rows] == [
        ("rollback.start", "web in dev: 1.1.0 -> 1.0.0"),
        ("rollback.rolled_back", "web in dev: 1.1.0 -> 1.0.0"),
    ]
    assert rows[0]["detail"]["reason"] == "bad 1.1" and rows[1]["detail"]["reason"] is None

    # Nothing earlier than 1.0.0 now (1.1.0 was rolled back out): refused, and audited.
    again = await ws.cli().run("rollback", "web", "--env", "dev", "--wait")
    assert again.code == 2, again.out + again.err
    assert actions(await audit(ws, "dev"))[-1] == "rollback.refused"


async def test_compensation_outcomes_are_audited(ws: Stack) -> None:
    broken = scenario.pipeline(fail_step=True)
    # A first deployment that fails has nothing to go back to: the compensation fails, and
    # the log says so.
    await ws.releases.create_release("web", "0.9.0", broken, actor="t")
    assert (await ws.promote("web", "0.9.0", "dev")).status == "failed"
    rows = [r for r in await audit(ws, "dev") if r["action"].startswith("compensation.")]
    assert [r["action"] for r in rows] == ["compensation.failed"]
    assert "no earlier release in dev" in rows[0]["detail"]["reason"]

    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    assert (await ws.promote("web", "1.0.0", "dev")).status == "deployed"
    await ws.releases.create_release("web", "1.1.0", broken, actor="t")
    result = await ws.promote("web", "1.1.0", "dev")
    assert result.status == "failed" and "dev is back on 1.0.0" in (result.reason or "")
    rows = [r for r in await audit(ws, "dev") if r["action"].startswith("compensation.")]
    assert [(r["action"], r["subject"]) for r in rows[1:]] == [
        ("compensation.start", "web in dev: 1.1.0 -> 1.0.0"),
        ("compensation.rolled_back", "web in dev: 1.1.0 -> 1.0.0"),
    ]


async def test_data_writes_are_audited_without_their_values(ws: Stack) -> None:
    cli = ws.cli()
    put = await cli.run(
        "data", "put", "web", "memory", "greeting", "--env", "dev", "--value", "private-words"
    )
    assert put.code == 0, put.err
    [row] = [r for r in await audit(ws, "dev") if r["action"] == "data.put"]
    assert row["subject"] == "web memory 'greeting' in dev"
    assert "private-words" not in json.dumps(row)


async def test_a_rollback_started_from_the_ui_with_nowhere_to_go_ends_refused(ws: Stack) -> None:
    # The same check holds for a RollbackWorkflow started by hand with any workflow id.
    handle = await contract.start(
        ws.client,
        contract.ROLLBACK,
        RollbackInput(app="web", environment="production", requested_by="ui-user"),
        id="my-own-rollback",
        task_queue=ws.settings.task_queue,
    )
    result = await asyncio.wait_for(outcome(handle, RollbackResult), 60)
    assert result.status == "refused"
    assert actions(await audit(ws, "production"))[-1] == "rollback.refused"
