"""Promotions end to end: the CLI and the Temporal CLI against a real dev server and worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from models.promotion import PromotionResult
from models.views import StatusView
from tests.http_recorder import Recorder
from tests.stack import TEMPORAL, Stack, outcome
from tests.workflows import scenario
from workflows.contract import PROMOTION, PromotionHandle


@pytest.fixture
async def scenario_ws(temporal: Any, tmp_path: Path) -> AsyncIterator[tuple[Stack, Recorder]]:
    async with scenario.workspace(temporal, tmp_path / "home") as built:
        yield built


async def current(s: Stack, env: str) -> str | None:
    view: StatusView = await s.views.status(environment=env)
    return view.cells[0].version


async def test_promoting_to_production_before_staging_is_refused(ws: Stack) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    cli = ws.cli()
    assert (await cli.run("promote", "web", "1.0.0", "--to", "dev", "--wait")).code == 0
    refused = await cli.run("promote", "web", "1.0.0", "--to", "production", "--wait")
    assert refused.code == 2, refused.err
    assert "has not been deployed and verified in staging" in refused.out
    assert await current(ws, "production") is None


async def test_verification_failure_leaves_environment_on_previous_release(
    ws: Stack, hooks: Recorder
) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    await ws.releases.create_release(
        "web", "1.1.0", scenario.pipeline(verify="http://127.0.0.1:9/nothing-listens"), actor="t"
    )
    cli = ws.cli()
    assert (await cli.run("promote", "web", "1.0.0", "--to", "dev", "--wait")).code == 0
    failed = await cli.run("promote", "web", "1.1.0", "--to", "dev", "--wait", "--json")
    assert failed.code == 1, failed.err
    result = json.loads(failed.out)
    assert result["status"] == "failed"
    assert "verification 'health' failed" in result["reason"]
    assert "dev is back on 1.0.0" in result["reason"]
    assert result["compensation"]["status"] == "rolled_back"
    assert await current(ws, "dev") == "1.0.0"
    # 1.0.0's activate step re-ran during compensation, with dev's hook.
    activations = [c.body for c in hooks.calls if c.body and c.body.get("action") == "activate"]
    assert activations == [
        {
            "app": "web",
            "environment": "dev",
            "version": "1.0.0",
            "step": "switch",
            "run_id": activations[0]["run_id"],
            "data_namespaces": {
                "threads": "dev/web",
                "sources": "dev/web",
                "memory": "dev/web",
                "artifacts": "dev/web",
            },
            "action": "activate",
        }
    ]
    history = [(e.kind, e.version, e.status) for e in await ws.views.history("web", "dev")]
    assert history == [
        ("promotion", "1.0.0", "deployed"),
        ("promotion", "1.1.0", "failed"),
        ("compensation", "1.0.0", "deployed"),
    ]
    # And 1.1.0, never verified in dev, cannot go to staging.
    refused = await cli.run("promote", "web", "1.1.0", "--to", "staging", "--wait")
    assert refused.code == 2 and "has not been deployed and verified in dev" in refused.out


async def test_first_deployment_failing_leaves_the_environment_without_a_release(
    ws: Stack,
) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(fail_step=True), actor="t")
    result = await ws.promote("web", "1.0.0", "dev")
    assert result.status == "failed"
    assert "step 'migrate' failed" in (result.reason or "")
    assert "no earlier release in dev" in (result.reason or "")
    assert [s.status for s in result.steps] == ["failed", "skipped", "skipped"]
    assert await current(ws, "dev") is None


async def test_start_from_the_temporal_cli_behaves_like_stageline(ws: Stack) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    payload = {"app": "web", "version": "1.0.0", "target": "dev", "requested_by": "ui-user"}
    proc = await asyncio.create_subprocess_exec(
        TEMPORAL,
        "workflow",
        "start",
        "--address",
        ws.settings.temporal_address,
        "--namespace",
        ws.settings.temporal_namespace,
        "--type",
        PROMOTION.name,
        "--task-queue",
        ws.settings.task_queue,
        "--workflow-id",
        "promote-web-1.0.0-dev",
        "--input",
        json.dumps(payload),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    handle = ws.client.get_workflow_handle("promote-web-1.0.0-dev", result_type=PromotionResult)
    result = await outcome(handle)
    assert result.status == "deployed" and result.environment == "dev"
    assert await current(ws, "dev") == "1.0.0"
    [entry] = await ws.views.history("web", "dev")
    assert (entry.requested_by, entry.source) == ("ui-user", "ui")
    # The CLI sees it exactly as one of its own: a second promote is a safe no-op.
    again = await ws.cli().run("promote", "web", "1.0.0", "--to", "dev", "--wait", "--json")
    assert again.code == 0 and json.loads(again.out)["noop"] is True


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"app": "web", "version": "1.0.0"}, "target: Field required"),
        (
            {"app": 5, "version": "1.0.0", "target": "dev", "requested_by": "x"},
            "app: Input should be",
        ),
        (
            {"app": "web", "version": "1.0.0", "target": "qa", "requested_by": "x"},
            "environment 'qa' does not exist",
        ),
        (
            {"app": "web", "version": "9.9.9", "target": "dev", "requested_by": "x"},
            "release web@9.9.9 does not exist",
        ),
        (
            {"app": "web", "version": "1.0.0", "target": "dev", "requested_by": "x", "targte": "y"},
            "targte: Extra inputs are not permitted",
        ),
        ("just a string", "expected a JSON object"),
        (None, "expected a JSON object"),
    ],
)
async def test_invalid_start_input_fails_the_workflow_at_once(
    ws: Stack, payload: Any, expected: str
) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    handle = await ws.client.start_workflow(
        PROMOTION.name,
        payload,  # raw JSON, as typed into the UI
        id=f"bad-input-{abs(hash(json.dumps(payload)))}",
        task_queue=ws.settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(outcome(handle), 20)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput"
    assert expected in cause.message
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED


async def test_cli_refuses_unknown_names_before_starting_anything(ws: Stack) -> None:
    cli = ws.cli()
    result = await cli.run("promote", "web", "7.7.7", "--to", "dev", "--wait")
    assert result.code == 3 and "release web@7.7.7 does not exist" in result.err
    result = await cli.run("promote", "nope", "1.0.0", "--to", "dev", "--wait")
    assert result.code == 3 and "app 'nope' does not exist" in result.err
    workflows = [
        w async for w in ws.client.list_workflows(f'TaskQueue = "{ws.settings.task_queue}"')
    ]
    assert workflows == []


async def test_unreachable_temporal_exits_5(ws: Stack) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    cli = ws.cli()
    cli.env["TEMPORAL_ADDRESS"] = "127.0.0.1:1"
    result = await cli.run("promote", "web", "1.0.0", "--to", "dev", "--wait")
    assert result.code == 5 and "cannot reach Temporal at 127.0.0.1:1" in result.err


async def test_retried_ci_job_attaches_to_the_running_promotion(ws: Stack, tmp_path: Path) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(sleep=3), actor="t")
    cli = ws.cli()
    first, second = await asyncio.gather(
        cli.run("promote", "web", "1.0.0", "--to", "dev", "--json"),
        cli.run("promote", "web", "1.0.0", "--to", "dev", "--wait", "--json"),
    )
    assert first.code == 0 and second.code == 0, (first.err, second.err)
    assert json.loads(first.out)["promotion_id"] == json.loads(second.out)["promotion_id"]
    runs = [
        w
        async for w in ws.client.list_workflows(
            f'WorkflowId = "promote-web-1.0.0-dev" AND TaskQueue = "{ws.settings.task_queue}"'
        )
    ]
    assert len(runs) == 1
    assert len(await ws.views.history("web", "dev")) == 1


async def test_already_deployed_is_a_noop_and_force_redeploys(ws: Stack) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    assert (await ws.promote("web", "1.0.0", "dev")).status == "deployed"
    again = await ws.promote("web", "1.0.0", "dev")
    assert again.status == "deployed" and again.noop and "already deployed" in (again.reason or "")
    forced = await ws.promote("web", "1.0.0", "dev", force=True)
    assert forced.status == "deployed" and not forced.noop
    assert len(await ws.views.history("web", "dev")) == 2


async def test_second_deployment_into_one_environment_waits_its_turn(
    ws: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "steps.log"
    for version in ("1.0.0", "1.1.0"):
        await ws.releases.create_release(
            "web", version, scenario.pipeline(marker=marker, sleep=1.5), actor="t"
        )
    first = await ws.start_promotion("web", "1.0.0", "dev")
    await asyncio.sleep(0.3)
    second = await ws.start_promotion("web", "1.1.0", "dev")
    await asyncio.sleep(1.0)
    waiting = await PromotionHandle(second).status()
    assert waiting.phase == "queued" and waiting.waiting_for == "promote-web-1.0.0-dev"
    assert (await outcome(first)).status == "deployed"
    assert (await outcome(second)).status == "deployed"
    lines = [line.split() for line in marker.read_text().splitlines()]
    assert [(v, what) for v, _, what, _ in lines] == [
        ("1.0.0", "start"),
        ("1.0.0", "end"),
        ("1.1.0", "start"),
        ("1.1.0", "end"),
    ]
    assert await current(ws, "dev") == "1.1.0"


async def test_search_attributes_follow_the_promotion(ws: Stack) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    assert (await ws.promote("web", "1.0.0", "dev")).status == "deployed"
    query = (
        f'TaskQueue = "{ws.settings.task_queue}" AND StagelineEnvironment = "dev" '
        'AND StagelineApp = "web" AND StagelineVersion = "1.0.0" AND StagelineStatus = "deployed"'
    )
    for _ in range(20):  # visibility is eventually consistent
        found = [w.id async for w in ws.client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.25)
    assert found == ["promote-web-1.0.0-dev"]


async def test_preflight_names_every_missing_key_before_anything_runs(
    ws: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    text = scenario.pipeline(marker=marker).replace(
        'FEATURE: "${{ vars.FEATURE }}"',
        'FEATURE: "${{ vars.FEATURE }}", A: "${{ vars.MISSING_A }}", B: "${{ secrets.MISSING_B }}"',
    )
    await ws.releases.create_release("web", "1.0.0", text, actor="t")
    result = await ws.cli().run("promote", "web", "1.0.0", "--to", "dev", "--wait")
    assert result.code == 2
    assert "environment 'dev' is missing secrets.MISSING_B, vars.MISSING_A" in result.out
    assert not marker.exists()
    assert await ws.views.history("web", "dev") == []


async def test_wait_timeout_exits_4_and_the_promotion_goes_on(ws: Stack) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(sleep=4), actor="t")
    result = await ws.cli().run(
        "promote", "web", "1.0.0", "--to", "dev", "--wait", "--timeout", "1"
    )
    assert result.code == 4 and "still running after 1s" in result.err
    handle = ws.client.get_workflow_handle("promote-web-1.0.0-dev", result_type=PromotionResult)
    assert (await outcome(handle)).status == "deployed"


async def test_environment_view_lists_what_the_release_exposes_and_config_without_values(
    ws: Stack,
) -> None:
    text = scenario.pipeline() + (
        "exposes:\n"
        "  endpoints: [{name: api, path: /api/v1}]\n"
        "  augmentations: [{name: search-tool, path: /tools/search}]\n"
    )
    await ws.releases.create_release("web", "1.0.0", text, actor="t")
    assert (await ws.promote("web", "1.0.0", "dev")).status == "deployed"
    cli = ws.cli()
    view = json.loads((await cli.run("status", "--env", "dev", "--json")).out)
    [cell] = view["cells"]
    assert cell["endpoints"] == [{"name": "api", "path": "/api/v1"}]
    assert cell["augmentations"] == [{"name": "search-tool", "path": "/tools/search"}]
    assert {v["key"]: v["value"] for v in view["variables"]}["FEATURE"] == "feature-dev"
    assert {s["key"] for s in view["secrets"]} == {"DATABASE_URL", "HOOK_TOKEN"}
    human = (await cli.run("status", "--env", "dev")).out
    assert "/api/v1" in human and "search-tool" in human and "feature-dev" in human
    for value in scenario.SECRETS.values():
        assert value not in human and value not in json.dumps(view)


async def test_a_tool_without_a_profile_in_the_target_fails_preflight_by_name(ws: Stack) -> None:
    await ws.config.create_tool("pager", kind="webhook", actor="t")
    text = scenario.pipeline() + ""
    text = text.replace(
        "  - name: notify\n", "  - name: page\n    tool: pager\n  - name: notify\n", 1
    )
    await ws.releases.create_release("web", "1.0.0", text, actor="t")
    result = await ws.cli().run("promote", "web", "1.0.0", "--to", "dev", "--wait")
    assert result.code == 2
    assert "tools.pager (no profile)" in result.out


async def test_a_locked_database_delays_a_promotion_but_it_completes(ws: Stack) -> None:
    import sqlite3

    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    database = ws.settings.database_url.removeprefix("sqlite+aiosqlite:///")
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        handle = await ws.start_promotion("web", "1.0.0", "dev")
        await asyncio.sleep(3)
        status = await PromotionHandle(handle).status()
        assert status.phase in ("gates", "validating")
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    result = await asyncio.wait_for(outcome(handle), 60)
    assert result.status == "deployed"
    assert len(await ws.views.history("web", "dev")) == 1
