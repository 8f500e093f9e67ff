"""Rules measured in days, over skipped time on the time-skipping test server: the approval
timeout, the wait timer, and a freeze window that ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from tests.http_recorder import recorder
from tests.stack import Stack, outcome, stack, until_phase
from tests.workflows import scenario


@pytest.fixture
async def ws(time_skipping: Any, tmp_path: Path) -> AsyncIterator[tuple[Stack, Any]]:
    with recorder() as hooks:
        async with stack(time_skipping, tmp_path / "home", own_namespace=False) as s:
            await scenario.build(s, hooks.url, production_approvals=1)
            await s.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
            yield s, time_skipping


async def test_approval_timeout_rejects_after_the_configured_days(
    ws: tuple[Stack, Any],
) -> None:
    s, _ = ws
    await s.envs.protect_environment("production", actor="t", approval_timeout_minutes=3 * 24 * 60)
    for stage in ("dev", "staging"):
        assert (await s.promote("web", "1.0.0", stage)).status == "deployed"
    handle = await s.start_promotion("web", "1.0.0", "production")
    await until_phase(handle, "awaiting_approval")
    result = await outcome(handle)  # skips time to the timeout
    assert result.status == "rejected"
    started, ended = await span(handle)
    assert timedelta(days=3) <= ended - started < timedelta(days=3, hours=1)
    assert result.reason is not None and result.reason.startswith("timed out")
    history = await s.views.history_view("web", "production")
    assert "promotion.timed_out" in [e.action for e in history.events]
    assert history.deployments == []


async def test_wait_timer_holds_until_the_release_soaked_in_the_previous_stage(
    ws: tuple[Stack, Any],
) -> None:
    s, _ = ws
    await s.envs.protect_environment(
        "production", actor="t", required_approvals=0, reviewers=[], wait_minutes=2 * 24 * 60
    )
    for stage in ("dev", "staging"):
        assert (await s.promote("web", "1.0.0", stage)).status == "deployed"
    handle = await s.start_promotion("web", "1.0.0", "production")
    status = await until_phase(handle, "waiting")
    assert status["not_before"] is not None
    assert (await s.views.status(environment="production")).cells[0].version is None
    result = await outcome(handle)
    assert result.status == "deployed"
    started, _ = await span(handle)
    # The time-skipping server stamps events with a few ms of jitter around the skipped time.
    assert await first_step(handle) >= started + timedelta(days=2) - timedelta(seconds=1)


async def test_freeze_window_holds_until_it_ends(ws: tuple[Stack, Any]) -> None:
    s, env = ws
    await s.envs.protect_environment("production", actor="t", required_approvals=0, reviewers=[])
    assert (await s.promote("web", "1.0.0", "dev")).status == "deployed"
    now = await env.get_current_time()  # the server's clock, which earlier tests moved on
    ends = now + timedelta(days=5)
    await s.envs.freeze(
        "staging",
        actor="t",
        reason="year-end freeze",
        starts_at=now - timedelta(minutes=1),
        ends_at=ends,
    )
    handle = await s.start_promotion("web", "1.0.0", "staging")
    await until_phase(handle, "frozen")
    result = await asyncio.wait_for(outcome(handle), 60)  # skips to the end of the window
    assert result.status == "deployed"
    # Nothing ran before the window ended (history times are the server's skipped clock).
    assert await first_step(handle) >= ends


async def span(handle: Any) -> tuple[datetime, datetime]:
    events = (await handle.fetch_history()).events
    return (
        events[0].event_time.ToDatetime(tzinfo=UTC),
        events[-1].event_time.ToDatetime(tzinfo=UTC),
    )


async def first_step(handle: Any) -> datetime:
    history = await handle.fetch_history()
    found: datetime = next(
        e.event_time.ToDatetime(tzinfo=UTC)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "run_step"
    )
    return found
