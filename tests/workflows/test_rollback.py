"""Rollback: per environment, instant, restoring configuration; precedence over promotions;
supersession; and one deployment at a time under concurrency."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.worker import Replayer

from models.promotion import PromotionResult, RollbackInput, RollbackResult
from models.status import DeploymentStatus
from store.tables import CurrentRelease, Deployment, StepRun
from tests.conftest import Cli
from tests.http_recorder import recorder
from tests.stack import CONVERTER, Stack, outcome, stack, until_phase
from tests.workflows import scenario
from vault.secret_value import SecretValue
from worker.main import WORKFLOWS
from workflows import contract

PLAIN = 'steps:\n  - name: deploy\n    run: ["true"]\n'


@pytest.fixture
async def ws(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    with recorder() as hooks:
        async with stack(temporal, tmp_path / "home") as s:
            await scenario.build(s, hooks.url)
            yield s


async def versions(s: Stack) -> dict[str, str | None]:
    return {c.environment: c.version for c in (await s.views.status()).cells}


async def release_everywhere(s: Stack, version: str, text: str | None = None) -> None:
    await s.releases.create_release("web", version, text or scenario.pipeline(), actor="t")
    for env in ("dev", "staging", "production"):
        result = await s.promote("web", version, env)
        assert result.status == "deployed", result.reason


async def test_rollback_of_production_changes_production_only(ws: Stack) -> None:
    await release_everywhere(ws, "1.0.0")
    await release_everywhere(ws, "1.1.0")
    outcome = await ws.cli().run("rollback", "web", "--env", "production", "--wait", "--json")
    assert outcome.code == 0, outcome.err
    result = json.loads(outcome.out)
    assert (result["status"], result["from_version"], result["to_version"]) == (
        "rolled_back",
        "1.1.0",
        "1.0.0",
    )
    assert await versions(ws) == {"dev": "1.1.0", "staging": "1.1.0", "production": "1.0.0"}
    kinds = [(e.kind, e.version) for e in await ws.views.history("web", "production")]
    assert kinds[-1] == ("rollback", "1.0.0")


ACTIVATE = (
    "import os, sys; open(sys.argv[1], 'a').write("
    "os.environ['STAGELINE_VERSION'] + ' ' + os.environ['FEATURE'] + ' ' + os.environ['TOKEN'] + "
    "chr(10))"
)


def recording_pipeline(marker: Path) -> str:
    return f"""\
steps:
  - name: deploy
    run: [{sys.executable!r}, "-c", {ACTIVATE!r}, "{marker}"]
    env: {{FEATURE: "${{{{ vars.FEATURE }}}}", TOKEN: "${{{{ secrets.DATABASE_URL }}}}"}}
activate:
  - name: activate
    run: [{sys.executable!r}, "-c", {ACTIVATE!r}, "{marker}"]
    env: {{FEATURE: "${{{{ vars.FEATURE }}}}", TOKEN: "${{{{ secrets.DATABASE_URL }}}}"}}
"""


async def test_rollback_restores_the_configuration_the_release_ran_with(
    ws: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "activations"
    await ws.config.set_variable("dev", "FEATURE", "old-feature", actor="t")
    await ws.config.set_secret("dev", "DATABASE_URL", SecretValue("old-password"), actor="t")
    await ws.releases.create_release("web", "1.0.0", recording_pipeline(marker), actor="t")
    assert (await ws.promote("web", "1.0.0", "dev")).status == "deployed"
    await ws.config.set_variable("dev", "FEATURE", "new-feature", actor="t")
    await ws.config.set_secret("dev", "DATABASE_URL", SecretValue("new-password"), actor="t")
    await ws.releases.create_release("web", "1.1.0", recording_pipeline(marker), actor="t")
    assert (await ws.promote("web", "1.1.0", "dev")).status == "deployed"

    started = await contract.start(
        ws.client,
        contract.ROLLBACK,
        RollbackInput(app="web", environment="dev", requested_by="oncall"),
        id="rollback-web-dev-1",
        task_queue=ws.settings.task_queue,
    )
    result = await started.result()
    assert result.status == "rolled_back" and result.to_version == "1.0.0"
    assert marker.read_text().splitlines() == [
        "1.0.0 old-feature old-password",
        "1.1.0 new-feature new-password",
        "1.0.0 old-feature old-password",  # the activate step of the rollback
    ]
    history = await ws.views.history("web", "dev")
    first, second, rollback = history
    assert rollback.kind == "rollback" and rollback.config == first.config != second.config
    assert (
        second.config["vars"]["FEATURE"]["version"]
        == first.config["vars"]["FEATURE"]["version"] + 1
    )


async def test_rolling_back_twice_goes_further_back_and_back_again_needs_to(ws: Stack) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        await ws.releases.create_release("web", version, scenario.pipeline(), actor="t")
        assert (await ws.promote("web", version, "dev")).status == "deployed"
    cli = ws.cli()

    async def rollback(*extra: str) -> tuple[int, dict[str, Any] | str]:
        out = await cli.run("rollback", "web", "--env", "dev", "--wait", "--json", *extra)
        return out.code, (json.loads(out.out) if out.out.strip() else out.err)

    code, first = await rollback()
    assert code == 0 and isinstance(first, dict) and first["to_version"] == "1.1.0"
    code, second = await rollback()
    assert code == 0 and isinstance(second, dict) and second["to_version"] == "1.0.0"
    code, third = await rollback()
    assert (
        code == 2 and isinstance(third, dict) and "no earlier successful release" in third["reason"]
    )
    code, explicit = await rollback("--to", "1.2.0")
    assert code == 0 and isinstance(explicit, dict) and explicit["to_version"] == "1.2.0"
    assert (await versions(ws))["dev"] == "1.2.0"

    never = await cli.run("rollback", "web", "--env", "staging", "--to", "1.1.0", "--wait")
    assert never.code == 2 and "staging" in never.out
    unknown = await cli.run("rollback", "web", "--env", "dev", "--to", "9.9.9", "--wait")
    assert unknown.code == 3 and "release web@9.9.9 does not exist" in unknown.err


async def test_a_rollback_never_returns_to_a_release_rolled_back_out(ws: Stack) -> None:
    """1.0.0, 2.0.0, roll back (2.0.0 was bad), 3.0.0, roll back: 1.0.0, not 2.0.0."""
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        await ws.releases.create_release("web", version, scenario.pipeline(), actor="t")
    cli = ws.cli()

    async def rollback() -> dict[str, Any]:
        out = await cli.run("rollback", "web", "--env", "dev", "--wait", "--json")
        assert out.code == 0, out.err
        result: dict[str, Any] = json.loads(out.out)
        return result

    for version in ("1.0.0", "2.0.0"):
        assert (await ws.promote("web", version, "dev")).status == "deployed"
    assert (await rollback())["to_version"] == "1.0.0"
    assert (await ws.promote("web", "3.0.0", "dev")).status == "deployed"
    assert (await rollback())["to_version"] == "1.0.0"
    # Deployed again on purpose, 2.0.0 is good again.
    assert (await ws.promote("web", "2.0.0", "dev", force=True)).status == "deployed"
    assert (await ws.promote("web", "3.0.0", "dev", force=True)).status == "deployed"
    assert (await rollback())["to_version"] == "2.0.0"


async def test_a_rollback_without_activate_steps_ends_in_its_turn_and_replays(
    ws: Stack,
) -> None:
    """Nothing to activate: checking, queueing, moving the pointer, closing the deployment
    and leaving the queue are one local activity (two before; that shape's recorded history
    replays in test_histories, `rollback-ended-apart`), and the history replays."""
    for version in ("1.0.0", "1.1.0"):
        await ws.releases.create_release("web", version, PLAIN, actor="t")
        assert (await ws.promote("web", version, "dev")).status == "deployed"
    handle = await contract.start(
        ws.client,
        contract.ROLLBACK,
        RollbackInput(app="web", environment="dev", requested_by="tester"),
        id="rollback-web-dev-in-its-turn",
        task_queue=ws.settings.task_queue,
    )
    result = await outcome(handle, RollbackResult)
    assert (result.status, result.to_version) == ("rolled_back", "1.0.0")
    history = await handle.fetch_history()
    markers = [
        e.marker_recorded_event_attributes.marker_name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert markers.count("core_local_activity") == 1, markers
    async with ws.db.read() as session:
        deployment = await session.scalar(
            select(Deployment).where(Deployment.workflow_id == handle.id)
        )
    assert deployment is not None and deployment.status == DeploymentStatus.DEPLOYED
    assert deployment.finished_at is not None
    assert (await versions(ws))["dev"] == "1.0.0"
    # The environment is free: the next promotion does not wait behind the rollback.
    assert (await ws.promote("web", "1.1.0", "dev", force=True)).status == "deployed"
    await Replayer(workflows=list(WORKFLOWS), data_converter=CONVERTER).replay_workflow(history)


async def test_a_retried_rollback_does_not_roll_back_one_release_further(ws: Stack) -> None:
    """A CI job that runs the same rollback again (after a network error) with the same
    --request-id gets the first one's answer; without one, running it again is a new rollback,
    one release further back, as documented."""
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0"):
        await ws.releases.create_release("web", version, scenario.pipeline(), actor="t")
        assert (await ws.promote("web", version, "dev")).status == "deployed"
    cli = ws.cli()
    asked = ("rollback", "web", "--env", "dev", "--wait", "--json", "--request-id", "gh-41-deploy")
    first = await cli.run(*asked)
    retried = await cli.run(*asked)
    assert first.code == 0 and retried.code == 0, (first.err, retried.err)
    assert json.loads(retried.out) == json.loads(first.out)
    assert json.loads(first.out)["to_version"] == "1.2.0"
    assert (await versions(ws))["dev"] == "1.2.0"
    rollbacks = [e for e in await ws.views.history("web", "dev") if e.kind == "rollback"]
    assert len(rollbacks) == 1
    # From the environment: STAGELINE_REQUEST_ID names it the same way; without --wait the
    # retry reports it attached to the finished rollback.
    again = await Cli({**cli.env, "STAGELINE_REQUEST_ID": "gh-41-deploy"}).run(
        "rollback", "web", "--env", "dev", "--json"
    )
    assert json.loads(again.out)["attached"] is True
    # A new request: one release further back.
    further = await cli.run("rollback", "web", "--env", "dev", "--wait", "--json")
    assert json.loads(further.out)["to_version"] == "1.1.0"
    bad = await cli.run("rollback", "web", "--env", "dev", "--request-id", "no spaces")
    assert bad.code != 0 and "is not a request id" in bad.err


async def test_a_rollback_rerun_in_the_same_ci_job_is_the_same_request(ws: Stack) -> None:
    """In GitHub Actions (and GitLab CI) the job names the request: a re-run of the job (a
    new attempt, same run id and job) does not roll back one release further."""
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        await ws.releases.create_release("web", version, scenario.pipeline(), actor="t")
        assert (await ws.promote("web", version, "dev")).status == "deployed"
    job = {
        "CI": "true",
        "GITHUB_RUN_ID": "7001",
        "GITHUB_JOB": "roll back",
        "GITHUB_RUN_ATTEMPT": "1",
    }
    first = await Cli({**ws.cli().env, **job}).run("rollback", "web", "--env", "dev", "--wait")
    rerun = await Cli({**ws.cli().env, **job, "GITHUB_RUN_ATTEMPT": "2"}).run(
        "rollback", "web", "--env", "dev", "--wait", "--json"
    )
    assert first.code == 0 and rerun.code == 0, (first.err, rerun.err)
    assert json.loads(rerun.out)["to_version"] == "1.1.0"
    assert (await versions(ws))["dev"] == "1.1.0"
    [rollback] = [e for e in await ws.views.history("web", "dev") if e.kind == "rollback"]
    assert rollback.workflow_id == "rollback-web-dev-request--gh--7001--roll--back"
    # GitLab: the pipeline and job name; a retried job has a new CI_JOB_ID, same request.
    gitlab = {"CI": "true", "CI_PIPELINE_ID": "88", "CI_JOB_NAME": "rollback", "CI_JOB_ID": "1"}
    for job_id in ("1", "2"):
        done = await Cli({**ws.cli().env, **gitlab, "CI_JOB_ID": job_id}).run(
            "rollback", "web", "--env", "dev", "--wait", "--json"
        )
        assert json.loads(done.out)["to_version"] == "1.0.0", done.err


async def test_rollback_takes_precedence_over_a_running_promotion(
    ws: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "steps"
    for version in ("1.0.0", "1.1.0"):
        await ws.releases.create_release(
            "web", version, scenario.pipeline(marker=marker), actor="t"
        )
        assert (await ws.promote("web", version, "dev")).status == "deployed"
    await ws.releases.create_release(
        "web", "1.2.0", scenario.pipeline(marker=marker, sleep=60), actor="t"
    )
    promotion = await ws.start_promotion("web", "1.2.0", "dev")
    await until_phase(promotion, "deploying")
    for _ in range(100):  # until its step really runs
        if "1.2.0 dev start" in marker.read_text():
            break
        await asyncio.sleep(0.1)
    started = asyncio.get_running_loop().time()
    answer = await ws.cli().run("rollback", "web", "--env", "dev", "--wait", "--json")
    took = asyncio.get_running_loop().time() - started
    assert answer.code == 0, answer.err
    rolled = json.loads(answer.out)
    assert (rolled["from_version"], rolled["to_version"]) == ("1.1.0", "1.0.0")
    interrupted = await outcome(promotion)
    assert isinstance(interrupted, PromotionResult)
    assert interrupted.status == "rolled_back"
    assert "interrupted by rollback-web-dev-from-" in (interrupted.reason or "")
    assert interrupted.compensation is None
    assert took < 30, f"the rollback waited {took:.0f}s for the 60 s step"
    assert "1.2.0 dev end" not in marker.read_text()  # its process was killed
    history = [(e.kind, e.version, e.status) for e in await ws.views.history("web", "dev")]
    assert history[-2:] == [
        ("promotion", "1.2.0", "interrupted"),
        ("rollback", "1.0.0", "deployed"),
    ]
    assert (await versions(ws))["dev"] == "1.0.0"


async def test_newer_promotion_supersedes_one_still_waiting_for_approval(ws: Stack) -> None:
    await ws.envs.protect_environment(
        "production", actor="t", required_approvals=1, reviewers=["bob"]
    )
    for version in ("1.0.0", "1.1.0"):
        await ws.releases.create_release("web", version, scenario.pipeline(), actor="t")
        for env in ("dev", "staging"):
            assert (await ws.promote("web", version, env)).status == "deployed"
    older = await ws.start_promotion("web", "1.0.0", "production")
    await until_phase(older, "awaiting_approval")
    newer = await ws.start_promotion("web", "1.1.0", "production")
    await until_phase(newer, "awaiting_approval")
    stale = await outcome(older)
    assert stale.status == "superseded"
    assert "superseded by promote-web-1.1.0-production" in (stale.reason or "")
    refused = await ws.cli().run("approve", older.id, "--reviewer", "bob")
    assert refused.code != 0
    assert (await ws.cli().run("approve", newer.id, "--reviewer", "bob")).code == 0
    assert (await outcome(newer)).status == "deployed"
    assert (await versions(ws))["production"] == "1.1.0"
    view = await ws.views.history_view("web", "production")
    assert "promotion.superseded" in [e.action for e in view.events]
    assert [(d.version, d.status) for d in view.deployments] == [("1.1.0", "deployed")]


async def test_twenty_concurrent_promotions_and_rollbacks_never_interleave(
    ws: Stack, tmp_path: Path
) -> None:
    """Twelve promotions and eight rollbacks into one app and environment at once: one
    deployment at a time, every record consistent with its workflow's result, and the
    pointer on the last deployment admitted."""
    versions_ = [f"1.{n}.0" for n in range(21)]
    for version in versions_:
        await ws.releases.create_release("web", version, scenario.pipeline(sleep=0.2), actor="t")
    # A history for the rollbacks to go back through: deep enough that all eight could step
    # back in a row (under load most promotions between them may be interrupted).
    for version in versions_[:9]:
        assert (await ws.promote("web", version, "dev")).status == "deployed"

    # Launched a little apart, so most are admitted in turn rather than all superseded at
    # once; they still overlap, queue and preempt one another.
    async def promote(n: int, version: str) -> tuple[str, str]:
        await asyncio.sleep(n * 0.25)
        handle = await ws.start_promotion("web", version, "dev")
        return handle.id, str((await outcome(handle)).status)

    async def rollback(n: int) -> tuple[str, str]:
        await asyncio.sleep(n * 0.25)
        workflow_id = f"rollback-web-dev-{n}"
        handle = await contract.start(
            ws.client,
            contract.ROLLBACK,
            RollbackInput(app="web", environment="dev", requested_by="oncall"),
            id=workflow_id,
            task_queue=ws.settings.task_queue,
        )
        return workflow_id, str((await outcome(handle, RollbackResult)).status)

    fresh = iter(versions_[9:])
    launches = [rollback(n) if n % 5 in (1, 3) else promote(n, next(fresh)) for n in range(20)]
    assert next(fresh, None) is None  # twelve promotions, eight rollbacks
    outcomes = dict(await asyncio.gather(*launches))
    assert set(outcomes.values()) <= {"deployed", "superseded", "rolled_back", "refused"}
    # Both kinds really deployed: a rollback rolled back, and a promotion deployed or was
    # taken over mid-deploy (which of the two depends on the machine's load).
    assert any(k.startswith("rollback") and v == "rolled_back" for k, v in outcomes.items())
    assert any(
        k.startswith("promote") and v in ("deployed", "rolled_back") for k, v in outcomes.items()
    )

    async with ws.db.read() as session:
        runs = (await session.scalars(select(StepRun))).all()
        deployments = {d.id: d for d in (await session.scalars(select(Deployment))).all()}
        pointer = (await session.scalars(select(CurrentRelease))).all()
    # Never two deployments at once: the step spans of deployments never overlap.
    spans: dict[int, tuple[Any, Any]] = {}
    for run in runs:
        low, high = spans.get(run.deployment_id, (run.started_at, run.finished_at))
        spans[run.deployment_id] = (min(low, run.started_at), max(high, run.finished_at))
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    for (_, (_, end)), (later, (start, _)) in itertools.pairwise(ordered):
        assert end <= start, f"deployment {later} started before the one before it ended"
    # Each record agrees with its workflow's result, and none is left open.
    assert all(d.finished_at is not None for d in deployments.values())
    by_workflow = {d.workflow_id: d for d in deployments.values()}
    for workflow_id, status in outcomes.items():
        record = by_workflow.get(workflow_id)
        interrupted = workflow_id.startswith("promote") and status == "rolled_back"
        if status in ("superseded", "refused"):
            assert record is None, workflow_id
        elif interrupted:  # a promotion a rollback took over mid-deploy
            assert record is not None and record.status == "interrupted", workflow_id
        else:
            assert record is not None and record.status == "deployed", workflow_id
    # The pointer is on the last deployment admitted (the last to start) that succeeded.
    last = max(
        (d for d in deployments.values() if d.status == "deployed"), key=lambda d: d.started_at
    )
    [dev_pointer] = [p for p in pointer if p.environment_id == last.environment_id]
    assert dev_pointer.deployment_id == last.id and dev_pointer.release_id == last.release_id
