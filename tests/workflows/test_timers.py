"""Rules measured in days, over skipped time on the time-skipping test server: the approval
timeout, the wait timer, and a freeze window that ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.http_recorder import recorder
from tests.stack import Stack, stack
from tests.workflows import scenario


@pytest.fixture
async def ws(time_skipping: Any, tmp_path: Path) -> AsyncIterator[tuple[Stack, Any]]:
    with recorder() as hooks:
        async with stack(time_skipping, tmp_path / "home", own_namespace=False) as s:
            await scenario.build(s, hooks.url, production_approvals=1)
            await s.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
            yield s, time_skipping


async def phase(s: Stack, workflow_id: str) -> str:
    status: dict[str, Any] = await s.client.get_workflow_handle(workflow_id).query("status")
    return str(status["phase"])


async def test_approval_timeout_rejects_after_the_configured_days(
    ws: tuple[Stack, Any],
) -> None:
    s, env = ws
    await s.envs.protect_environment("production", actor="t", approval_timeout_minutes=3 * 24 * 60)
    for stage in ("dev", "staging"):
        assert (await s.promote("web", "1.0.0", stage)).status == "deployed"
    handle = await s.start_promotion("web", "1.0.0", "production")
    await env.sleep(timedelta(days=2, hours=23))
    assert await phase(s, handle.id) == "awaiting_approval"
    result = await handle.result()  # skips the rest of the third day
    assert result.status == "rejected"
    assert result.reason is not None and result.reason.startswith("timed out")
    history = await s.views.history_view("web", "production")
    assert "promotion.timed_out" in [e.action for e in history.events]
    assert history.deployments == []


async def test_wait_timer_holds_until_the_release_soaked_in_the_previous_stage(
    ws: tuple[Stack, Any],
) -> None:
    s, env = ws
    await s.envs.protect_environment(
        "production", actor="t", required_approvals=0, reviewers=[], wait_minutes=2 * 24 * 60
    )
    for stage in ("dev", "staging"):
        assert (await s.promote("web", "1.0.0", stage)).status == "deployed"
    handle = await s.start_promotion("web", "1.0.0", "production")
    await env.sleep(timedelta(days=1))
    assert await phase(s, handle.id) == "waiting"
    status: dict[str, Any] = await handle.query("status")
    assert status["not_before"] is not None
    assert (await s.views.status(environment="production")).cells[0].version is None
    result = await handle.result()
    assert result.status == "deployed"


async def test_freeze_window_holds_until_it_ends(ws: tuple[Stack, Any]) -> None:
    s, env = ws
    await s.envs.protect_environment("production", actor="t", required_approvals=0, reviewers=[])
    now = await env.get_current_time()  # the server's clock, which earlier tests moved on
    await s.envs.freeze(
        "staging",
        actor="t",
        reason="year-end freeze",
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(days=5),
    )
    assert (await s.promote("web", "1.0.0", "dev")).status == "deployed"
    handle = await s.start_promotion("web", "1.0.0", "staging")
    await env.sleep(timedelta(days=4))
    assert await phase(s, handle.id) == "frozen"
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "deployed"
