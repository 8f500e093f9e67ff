"""Stale promotions: a re-run of an older release's promotion (an old CI job run again) never
replaces a newer release, nor supersedes a newer release's waiting promotion, unless --force.
"Newer" is release creation order, not the version string."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from models.review import Decision
from tests.stack import Stack, outcome, until_phase
from tests.workflows import scenario
from workflows.contract import PromotionHandle


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    async with scenario.workspace(
        temporal, tmp_path / "home", production_approvals=1, releases=("1.0.0", "2.0.0")
    ) as (s, _):
        yield s


async def versions(s: Stack) -> dict[str, str | None]:
    return {c.environment: c.version for c in (await s.views.status()).cells}


async def test_an_older_release_does_not_replace_a_newer_one_without_force(ws: Stack) -> None:
    for version in ("1.0.0", "2.0.0"):
        assert (await ws.promote("web", version, "dev")).status == "deployed"
    cli = ws.cli()
    stale = await cli.run("promote", "web", "1.0.0", "--to", "dev", "--wait", "--json")
    assert stale.code == 2, stale.out + stale.err
    result = json.loads(stale.out)
    assert result["status"] == "rejected"
    [gate] = [g for g in result["gates"] if not g["passed"]]
    assert gate["name"] == "release-order"
    assert "web@2.0.0 is deployed there, created after web@1.0.0" in gate["reason"]
    assert "--force" in gate["reason"]
    assert (await versions(ws))["dev"] == "2.0.0"

    forced = await cli.run("promote", "web", "1.0.0", "--to", "dev", "--force", "--wait", "--json")
    assert forced.code == 0, forced.out + forced.err
    gates = {g["name"]: g for g in json.loads(forced.out)["gates"]}
    assert gates["release-order"]["passed"] and "--force" in gates["release-order"]["reason"]
    assert (await versions(ws))["dev"] == "1.0.0"


async def test_newer_means_created_later_whatever_the_version_says(ws: Stack) -> None:
    # A 1.0.1 hotfix made after 2.0.0 is the newer release.
    await ws.releases.create_release("web", "1.0.1", scenario.pipeline(), actor="t")
    assert (await ws.promote("web", "2.0.0", "dev")).status == "deployed"
    assert (await ws.promote("web", "1.0.1", "dev")).status == "deployed"
    assert (await ws.promote("web", "2.0.0", "dev")).status == "rejected"


async def test_an_older_release_does_not_supersede_a_newer_ones_waiting_promotion(
    ws: Stack,
) -> None:
    for version in ("1.0.0", "2.0.0"):
        for env in ("dev", "staging"):
            assert (await ws.promote("web", version, env)).status == "deployed"
    newer = await ws.start_promotion("web", "2.0.0", "production")
    await until_phase(newer, "awaiting_approval")

    stale = await ws.cli().run("promote", "web", "1.0.0", "--to", "production", "--wait")
    assert stale.code == 2, stale.out + stale.err
    assert "web@2.0.0 is being promoted there" in stale.out + stale.err
    # The newer release's promotion still waits for its reviewer, and deploys when approved.
    waiting = PromotionHandle(newer)
    assert (await waiting.status()).phase == "awaiting_approval"
    await waiting.approve(Decision(reviewer="alice"))
    assert (await outcome(newer)).status == "deployed"
    assert (await versions(ws))["production"] == "2.0.0"


async def test_force_supersedes_a_newer_ones_waiting_promotion_on_purpose(ws: Stack) -> None:
    for version in ("1.0.0", "2.0.0"):
        for env in ("dev", "staging"):
            assert (await ws.promote("web", version, env)).status == "deployed"
    newer = await ws.start_promotion("web", "2.0.0", "production")
    await until_phase(newer, "awaiting_approval")
    older = await ws.start_promotion("web", "1.0.0", "production", force=True)
    assert (await outcome(newer)).status == "superseded"
    await until_phase(older, "awaiting_approval")
    await PromotionHandle(older).approve(Decision(reviewer="alice"))
    assert (await outcome(older)).status == "deployed"
