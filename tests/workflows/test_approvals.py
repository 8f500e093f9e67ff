"""Protected environments: reviewers, refusals, rejection, groups, freezes and overrides,
through the CLI, through raw signals, against a real dev server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from models.promotion import PromotionResult
from models.review import Decision
from models.views import StatusView
from tests.http_recorder import recorder
from tests.stack import Stack, outcome, stack, until_phase
from tests.workflows import scenario
from workflows.contract import PromotionHandle, Signal


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    with recorder() as hooks:
        async with stack(temporal, tmp_path / "home") as s:
            await scenario.build(s, hooks.url, production_approvals=2)
            await s.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
            for env in ("dev", "staging"):
                assert (await s.promote("web", "1.0.0", env)).status == "deployed"
            yield s


async def current(s: Stack, env: str) -> str | None:
    view: StatusView = await s.views.status(environment=env)
    return view.cells[0].version


async def test_two_distinct_reviewers_are_needed_and_refusals_change_nothing(ws: Stack) -> None:
    handle = await ws.start_promotion("web", "1.0.0", "production", requested_by="alice")
    status = await until_phase(handle, "awaiting_approval")
    assert status["may_approve"] == ["bob", "carol"]
    cli = ws.cli()
    pid = handle.id

    own = await cli.run("approve", pid, "--reviewer", "alice")
    assert own.code == 2 and "alice requested this promotion and may not approve it" in own.err
    stranger = await cli.run("approve", pid, "--reviewer", "mallory")
    assert stranger.code == 2 and "mallory is not a reviewer of production" in stranger.err
    # The same through a raw signal, as the UI or `temporal workflow signal` sends it.
    await handle.signal(Signal.APPROVE, {"reviewer": "mallory", "comment": "let me in"})
    await handle.signal(Signal.APPROVE, {"reviewer": "alice"})
    await handle.signal(Signal.APPROVE, {"nobody": "x"})

    first = await cli.run("approve", pid, "--reviewer", "bob", "--comment", "looks good")
    assert first.code == 0 and "approved by bob (1/2)" in first.out
    again = await cli.run("approve", pid, "--reviewer", "bob")
    assert again.code == 2 and "bob already approved" in again.err

    promotion = PromotionHandle(handle)
    typed = await promotion.status()
    assert typed.phase == "awaiting_approval" and typed.approvals == ["bob"]
    assert typed.may_approve == ["carol"]
    refusals = " | ".join(typed.refusals)
    for expected in (
        "approve by alice refused",
        "approve by mallory refused",
        "malformed approve ignored",
        "bob already approved",
    ):
        assert expected in refusals
    assert await current(ws, "production") is None

    shown = await cli.run("status", "--env", "production")
    assert "awaiting_approval" in shown.out and "1/2" in shown.out and "carol" in shown.out
    matrix = await cli.run("status")
    assert "1.0.0 awaiting approval 1/2" in matrix.out

    await promotion.approve(Decision(reviewer="carol"))
    result = await outcome(handle)
    assert result.status == "deployed"
    assert await current(ws, "production") == "1.0.0"

    history = json.loads((await cli.run("history", "web", "--env", "production", "--json")).out)
    events = [(e["actor"], e["action"]) for e in history["events"]]
    assert ("alice", "promotion.request") in events
    assert ("alice", "promotion.refused") in events and ("mallory", "promotion.refused") in events
    assert ("bob", "promotion.approve") in events and ("carol", "promotion.approve") in events
    comments = [e["detail"].get("comment") for e in history["events"]]
    assert "looks good" in comments and "let me in" in comments


async def test_a_rejection_ends_the_promotion_and_changes_nothing(ws: Stack) -> None:
    cli = ws.cli()
    waiting = asyncio.ensure_future(
        cli.run("promote", "web", "1.0.0", "--to", "production", "--wait", "--requested-by", "dave")
    )
    handle = ws.client.get_workflow_handle(
        "promote-web-1.0.0-production", result_type=PromotionResult
    )
    await until_phase(handle, "awaiting_approval")
    await cli.run("approve", handle.id, "--reviewer", "bob")
    rejected = await cli.run("reject", handle.id, "--reviewer", "carol", "--comment", "not today")
    assert rejected.code == 0
    waited = await waiting
    assert waited.code == 2 and "rejected by carol: not today" in waited.out
    assert await current(ws, "production") is None
    assert await ws.views.history("web", "production") == []


async def test_reviewer_groups_expand_to_their_members(ws: Stack) -> None:
    await ws.envs.create_group("release-managers", ["erin", "frank"], actor="t")
    await ws.envs.protect_environment(
        "production", actor="t", required_approvals=1, reviewers=["@release-managers"]
    )
    handle = await ws.start_promotion("web", "1.0.0", "production", requested_by="erin")
    status = await until_phase(handle, "awaiting_approval")
    assert status["may_approve"] == ["frank"]
    answer = await ws.cli().run("approve", handle.id, "--reviewer", "frank")
    assert answer.code == 0
    assert (await outcome(handle)).status == "deployed"


async def test_freeze_holds_a_promotion_until_an_approved_override(ws: Stack) -> None:
    await ws.envs.protect_environment("production", actor="t", required_approvals=1)
    cli = ws.cli()
    frozen = await cli.run("env", "freeze", "production", "--reason", "holiday season")
    assert frozen.code == 0, frozen.err
    handle = await ws.start_promotion("web", "1.0.0", "production", requested_by="alice")
    await until_phase(handle, "awaiting_approval")
    assert (await cli.run("approve", handle.id, "--reviewer", "bob")).code == 0
    status = await until_phase(handle, "frozen")
    assert "holiday season" in status["reason"]

    own = await cli.run("override", handle.id, "--reviewer", "alice", "--comment", "hotfix")
    assert own.code == 2 and "needs someone else" in own.err
    bare = await cli.run("override", handle.id, "--reviewer", "carol")
    assert bare.code == 2 and "needs a comment" in bare.err
    await asyncio.sleep(1)
    assert (await PromotionHandle(handle).status()).phase == "frozen"

    granted = await cli.run(
        "override", handle.id, "--reviewer", "carol", "--comment", "security fix CVE-1"
    )
    assert granted.code == 0, granted.err
    result = await outcome(handle)
    assert result.status == "deployed"
    history = json.loads((await cli.run("history", "web", "--env", "production", "--json")).out)
    overrides = [e for e in history["events"] if e["action"] == "promotion.override"]
    assert [(e["actor"], e["detail"]["comment"]) for e in overrides] == [
        ("carol", "security fix CVE-1")
    ]


async def test_unfreeze_releases_held_promotions_at_once(ws: Stack) -> None:
    await ws.envs.protect_environment("production", actor="t", required_approvals=0, reviewers=[])
    await ws.envs.freeze("staging", actor="t", reason="migration")
    await ws.releases.create_release("web", "1.1.0", scenario.pipeline(), actor="t")
    assert (await ws.promote("web", "1.1.0", "dev")).status == "deployed"
    handle = await ws.start_promotion("web", "1.1.0", "staging")
    await until_phase(handle, "frozen")
    lifted = await ws.cli().run("env", "unfreeze", "staging")
    assert lifted.code == 0 and "lifted 1 freeze" in lifted.out
    result = await asyncio.wait_for(outcome(handle), 20)  # no 5-minute poll: woken at once
    assert result.status == "deployed"
