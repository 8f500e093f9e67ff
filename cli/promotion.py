"""Commands that move releases: promote, rollback; and those that look: status, history."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any, TypeVar, cast

import click
from pydantic import BaseModel
from temporalio.client import Client, WorkflowHandle

from cli.context import actor, ci_job_request_id, run
from cli.output import done, emit_json, print_warnings, table
from cli.params import APP, ENVIRONMENT, json_option
from cli.remote import RemoteRun, RemoteUnits
from cli.temporal import Progress, TrainProgress, follow, query_status
from models.errors import BadInput, ExitCode
from models.promotion import (
    Phase,
    PromotionInput,
    PromotionResult,
    RollbackInput,
    RollbackResult,
    Source,
    TrainInput,
    TrainResult,
    promotion_workflow_id,
    rollback_suffix,
    rollback_workflow_id,
    train_workflow_id,
)
from models.text import clip
from models.views import HistoryEvent
from services.unit import Units
from worker.client import connect
from worker.runs import fill_live, launch
from workflows.contract import PROMOTION, ROLLBACK, TRAIN, WorkflowContract
from workflows.details import promotion_summary, rollback_summary, train_summary

R = TypeVar("R")
I = TypeVar("I", bound=BaseModel)  # noqa: E741 (a workflow's input)

PROMOTION_EXIT = {
    "deployed": ExitCode.OK,
    "failed": ExitCode.FAILED,
    "rolled_back": ExitCode.FAILED,
    "rejected": ExitCode.REFUSED,
    "superseded": ExitCode.REFUSED,
}
ROLLBACK_EXIT = {"rolled_back": ExitCode.OK, "failed": ExitCode.FAILED, "refused": ExitCode.REFUSED}


REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")


def _requester(claimed: str | None) -> dict[str, str | None]:
    """The requester is who runs the command; a different `--requested-by` is a claim, kept
    as whom they act for (a name on a command line proves nothing)."""
    who = actor()
    return {"requested_by": who, "on_behalf_of": claimed if claimed and claimed != who else None}


def _source() -> Source:
    return "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "cli"


@click.command()
@click.argument("app_name", type=APP, metavar="APP")
@click.argument("version")
@click.option(
    "--to",
    "target",
    type=ENVIRONMENT,
    required=True,
    metavar="ENV",
    help="The environment to deploy to.",
)
@click.option(
    "--requested-by",
    metavar="WHO",
    help="Who you act for, e.g. a bot; recorded beside you (STAGELINE_USER, else your login), "
    "and neither of you may approve it.",
)
@click.option("--wait", is_flag=True, help="Wait for the outcome; the exit code tells it.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="With --wait: give up waiting after this long (exit 4).",
)
@click.option("--force", is_flag=True, help="Redeploy even if already current and verified.")
@json_option
def promote(
    app_name: str,
    version: str,
    target: str,
    requested_by: str | None,
    wait: bool,
    timeout: float | None,
    force: bool,
    as_json: bool,
) -> int:
    """Promote release APP VERSION into ENV through a PromotionWorkflow."""
    request = PromotionInput(
        app=app_name,
        version=version,
        target=target,
        **_requester(requested_by),
        source=_source(),
        force=force,
    )

    async def work(units: Units) -> int:
        handle, attached = await _launch(
            units,
            PROMOTION,
            request,
            promotion_workflow_id(app_name, version, target),
            app=app_name,
            environment=target,
            version=version,
            summary=promotion_summary(app_name, version, target),
        )
        if attached and not as_json:
            done(f"attached to {handle.id}, already running")
        if not wait:
            phase = await _settled_phase(handle)
            if phase not in ("running", "awaiting_approval"):
                # Over already (a gate refused it, or nothing to do): say how it ended, as
                # --wait would, rather than "started".
                ended = await follow(handle, PromotionResult, 30, Progress(enabled=False))
                if as_json:
                    emit_json({**ended.model_dump(mode="json"), "attached": attached})
                else:
                    _print_promotion(ended)
                return PROMOTION_EXIT[ended.status]
            if as_json:
                emit_json({"promotion_id": handle.id, "status": phase, "attached": attached})
            else:
                done(
                    f"started {handle.id} ({phase}); follow it with 'stageline status "
                    f"--env {target}' or in the Temporal UI"
                )
            return ExitCode.OK
        result = await follow(handle, PromotionResult, timeout, Progress(enabled=not as_json))
        if as_json:
            emit_json(result)
        else:
            _print_promotion(result)
        return PROMOTION_EXIT[result.status]

    return run(work)


async def _current_deployment(units: Units, app: str, environment: str) -> int | None:
    async with units.read() as w:
        return await w.deployments.current_deployment_id(app, environment)


async def _launch_rollback(
    units: Units, request: RollbackInput, request_id: str | None
) -> tuple[WorkflowHandle[Any, RollbackResult], bool]:
    app, environment, to_version = request.app, request.environment, request.to_version
    suffix = (
        f"request-{request_id}"
        if request_id
        else rollback_suffix(await _current_deployment(units, app, environment), to_version)
    )
    return await _launch(
        units,
        ROLLBACK,
        request,
        rollback_workflow_id(app, environment, suffix),
        app=app,
        environment=environment,
        version=to_version,
        summary=rollback_summary(app, environment, to_version),
        once=True,
    )


async def _launch(
    units: Units,
    workflow: WorkflowContract[I, R, Any],
    request: I,
    workflow_id: str,
    *,
    app: str,
    environment: str,
    version: str | None,
    summary: str,
    once: bool = False,
) -> tuple[WorkflowHandle[Any, R], bool]:
    """Refuse unknown names before anything starts (exit 3), then start or attach.
    Remote, the server does both, as the authenticated principal."""
    if isinstance(units, RemoteUnits):
        fields = {"app", "version", "target", "through", "on_behalf_of", "force", "source"}
        body = request.model_dump(mode="json", include=fields, exclude_none=True)
        run, attached = await units.start(workflow.kind, body)
        return cast("WorkflowHandle[Any, R]", run), attached
    return await launch(
        units,
        lambda: connect(units.settings),
        workflow,
        request,
        workflow_id,
        app=app,
        environment=environment,
        version=version,
        summary=summary,
        once=once,
    )


async def _settled_phase(handle: Any) -> str:
    """`running`, `awaiting_approval`, or the outcome when it is over already (a refused gate
    or a no-op ends within a second): looks for a few seconds, until the gates have run."""
    for _ in range(10):
        status = await query_status(handle)
        if status is not None and status.phase not in (Phase.VALIDATING, Phase.GATES):
            if status.phase.is_terminal:
                return status.phase.value
            return "awaiting_approval" if status.phase == Phase.AWAITING_APPROVAL else "running"
        await asyncio.sleep(0.5)
    return "running"


@click.command()
@click.argument("app_name", type=APP, metavar="APP")
@click.argument("version")
@click.option(
    "--through", type=ENVIRONMENT, required=True, metavar="ENV", help="The last stage to reach."
)
@click.option("--requested-by", metavar="WHO")
@click.option("--wait", is_flag=True)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS")
@json_option
def train(
    app_name: str,
    version: str,
    through: str,
    requested_by: str | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> int:
    """Promote APP VERSION stage by stage up to ENV in one ReleaseTrainWorkflow."""
    request = TrainInput(
        app=app_name,
        version=version,
        through=through,
        **_requester(requested_by),
        source=_source(),
    )

    async def work(units: Units) -> int:
        handle, attached = await _launch(
            units,
            TRAIN,
            request,
            train_workflow_id(app_name, version, through),
            app=app_name,
            environment=through,
            version=version,
            summary=train_summary(app_name, version, through),
        )
        if not wait:
            if as_json:
                emit_json({"train_id": handle.id, "status": "running", "attached": attached})
            else:
                done(f"started {handle.id}; approvals sent to it reach the stage that waits")
            return ExitCode.OK
        remote_run: Any = handle  # a RemoteRun when remote: it reaches the stages too

        async def stages() -> Client | RemoteRun:
            return remote_run if units.remote else await connect(units.settings)

        progress = TrainProgress(stages, enabled=not as_json)
        result = await follow(handle, TrainResult, timeout, progress)
        if as_json:
            emit_json(result)
        else:
            for stage in result.stages:
                _print_promotion(stage)
        return PROMOTION_EXIT[result.status]

    return run(work)


def _print_promotion(result: PromotionResult) -> None:
    subject = f"{result.app}@{result.version} -> {result.environment}"
    if result.status == "deployed":
        done(
            f"{'nothing to do' if result.noop else 'deployed'}: {subject}"
            + (f" ({result.reason})" if result.noop and result.reason else "")
        )
        return
    done(f"{result.status}: {subject}: {result.reason}")
    for gate in result.gates:
        if not gate.passed:
            done(f"  gate {gate.name}: {gate.reason}")
    for step in result.steps:
        if step.status == "failed" and step.detail:
            done(f"  step {step.section}/{step.name} output:")
            for line in step.detail.splitlines()[-20:]:
                done(f"    {line}")


@click.command()
@click.argument("app_name", type=APP, metavar="APP")
@click.option("--env", "environment", type=ENVIRONMENT, required=True, metavar="ENV")
@click.option("--to", "to_version", metavar="VERSION", help="A release that ran there before.")
@click.option("--requested-by", metavar="WHO")
@click.option("--reason", metavar="TEXT", help="Why, for the record.")
@click.option(
    "--request-id",
    metavar="ID",
    envvar="STAGELINE_REQUEST_ID",
    help="Names this request, so running the same command again (a CI retry) returns the "
    "first one's answer instead of rolling back one release further. Default in GitHub "
    "Actions and GitLab CI: the job (run id and job name). Letters, digits, '.', '_', '-'.",
)
@click.option("--wait", is_flag=True)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS")
@json_option
def rollback(
    app_name: str,
    environment: str,
    to_version: str | None,
    requested_by: str | None,
    reason: str | None,
    request_id: str | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> int:
    """Put APP in ENV back on its previous release (or --to VERSION), without rebuilding."""
    # In a GitHub Actions or GitLab CI job, the job names the request: its re-run or retry
    # is the same rollback, not one release further back.
    request_id = request_id or ci_job_request_id()
    if request_id is not None and not REQUEST_ID.fullmatch(request_id):
        raise click.BadParameter(
            f"{request_id!r} is not a request id: use 1-100 letters, digits, '.', '_' or '-'",
            param_hint="'--request-id'",
        )
    request = RollbackInput(
        app=app_name,
        environment=environment,
        to_version=to_version,
        requested_by=requested_by or actor(),
        source=_source(),
        reason=reason,
    )

    async def work(units: Units) -> int:
        handle: WorkflowHandle[Any, RollbackResult] | RemoteRun
        if isinstance(units, RemoteUnits):
            if requested_by is not None:
                raise BadInput(
                    "--requested-by is not taken through a stageline server: the server "
                    "records you, as you signed in, as the requester; leave it out"
                )
            body = request.model_dump(
                mode="json", include={"app", "environment", "to_version", "reason", "source"}
            )
            handle, attached = await units.start("rollback", {**body, "request_id": request_id})
        else:
            handle, attached = await _launch_rollback(units, request, request_id)
        if not wait:
            if as_json:
                emit_json({"rollback_id": handle.id, "status": "running", "attached": attached})
            else:
                done(f"{'attached to' if attached else 'started'} {handle.id}")
            return ExitCode.OK
        result = await follow(handle, RollbackResult, timeout, Progress(enabled=not as_json))
        if as_json:
            emit_json(result)
        elif result.status == "rolled_back":
            done(
                f"rolled back {app_name} in {environment}: {result.from_version} -> "
                f"{result.to_version}"
            )
        else:
            done(f"{result.status}: {result.reason}")
        return ROLLBACK_EXIT[result.status]

    return run(work)


@click.command()
@click.option(
    "--env", "environment", type=ENVIRONMENT, metavar="ENV", help="One environment, in detail."
)
@click.option("--app", "app_name", metavar="APP")
@json_option
def status(environment: str | None, app_name: str | None, as_json: bool) -> None:
    """What runs where: the release of each app in each environment, and what is under way."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            view = await w.views.status(environment=environment, app=app_name)
        if not units.remote:  # remote, the server filled it in
            await fill_live(lambda: connect(units.settings), view)
        print_warnings(view.warnings)
        if as_json:
            emit_json(view)
            return
        pending: dict[tuple[str, str], list[str]] = {}
        for p in view.in_progress:
            what = p.version + (
                f" awaiting approval {len(p.approvals)}/{p.approvals_required}"
                if p.phase == "awaiting_approval"
                else f" {p.phase or 'running'}"
            )
            pending.setdefault((p.app, p.environment), []).append(what)
        table(
            ["APP", "ENVIRONMENT", "RELEASE", "SINCE", "BY", "VIA", "PENDING"],
            [
                (
                    c.app,
                    c.environment,
                    c.version or "-",
                    f"{c.since:%Y-%m-%d %H:%M}" if c.since else "",
                    c.deployed_by or "",
                    c.kind or "",
                    "; ".join(pending.get((c.app, c.environment), [])),
                )
                for c in view.cells
            ],
            empty="no apps yet",
        )
        if environment is not None:
            exposed = [
                (c.app, kind, e.get("name", ""), e.get("path", ""))
                for c in view.cells
                for kind, items in (("endpoint", c.endpoints), ("augmentation", c.augmentations))
                for e in items
            ]
            done("\nexposed by the releases here:")
            table(["APP", "KIND", "NAME", "PATH"], exposed)
            done("\nvariables:")
            table(
                ["KEY", "VALUE", "VERSION"], [(v.key, v.value, v.version) for v in view.variables]
            )
            done("\nsecrets (names and versions only):")
            table(["KEY", "KIND", "VERSION"], [(x.key, x.kind, x.version) for x in view.secrets])
        if view.in_progress:
            done("\nin progress:")
            table(
                ["PROMOTION", "TO", "PHASE", "APPROVALS", "MAY STILL APPROVE", "REQUESTED BY"],
                [
                    (
                        p.promotion_id,
                        p.environment,
                        p.phase or "?",
                        f"{len(p.approvals)}/{p.approvals_required}"
                        if p.approvals_required
                        else "",
                        ", ".join(p.may_approve) if p.phase == "awaiting_approval" else "",
                        p.requested_by,
                    )
                    for p in view.in_progress
                ],
            )

    run(work)


@click.command()
@click.argument("app_name", type=APP, metavar="APP")
@click.option("--env", "environment", type=ENVIRONMENT, required=True, metavar="ENV")
@json_option
def history(app_name: str, environment: str, as_json: bool) -> None:
    """Deployments of APP in ENV, oldest first, with the configuration each ran with; then
    every request and decision (approvals, refusals, rejections, overrides, timeouts)."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            view = await w.views.history_view(app_name, environment)
        if as_json:
            emit_json(view)
            return
        cut = False

        def cell(text: str | None) -> str:
            nonlocal cut
            shown, clipped = clip(text or "", HISTORY_TEXT_WIDTH)
            cut = cut or clipped
            return shown

        table(
            ["#", "WHEN", "KIND", "RELEASE", "STATUS", "BY", "CONFIG", "REASON"],
            [
                (
                    e.id,
                    f"{e.started_at:%Y-%m-%d %H:%M:%S}",
                    e.kind,
                    e.version,
                    e.status,
                    e.requested_by,
                    _config_text(e.config),
                    cell(e.reason),
                )
                for e in view.deployments
            ],
            empty=f"no deployments of {app_name} in {environment} yet",
        )
        if view.events:
            done("\nrequests and decisions:")
            table(
                ["WHEN", "WHO", "WHAT", "SUBJECT", "COMMENT / REASON"],
                [
                    (
                        f"{e.at:%Y-%m-%d %H:%M:%S}",
                        e.actor,
                        e.action,
                        e.subject,
                        cell(_event_text(e)),
                    )
                    for e in view.events
                ],
            )
        if cut:
            done(
                f"\n… marks a reason or comment cut at a word to fit {HISTORY_TEXT_WIDTH} "
                f"characters; 'stageline history {app_name} --env {environment} --json' has "
                "each whole"
            )

    run(work)


# Reasons and comments in `history` tables: cut at a word beyond this, marked with `…`.
HISTORY_TEXT_WIDTH = 80


def _event_text(event: HistoryEvent) -> str:
    """What a person wants to read of an audit event: why a refusal was refused (a refused
    decision's comment is only what the refused person wrote), else the comment given, else
    the reason recorded."""
    detail = event.detail
    order = ("reason", "comment") if event.action.endswith(".refused") else ("comment", "reason")
    for key in order:
        if detail.get(key):
            return str(detail[key])
    return ""


@click.command()
@click.argument("app_name", type=APP, metavar="APP")
@click.option("--from", "source", type=ENVIRONMENT, required=True, metavar="ENV")
@click.option("--to", "target", type=ENVIRONMENT, required=True, metavar="ENV")
@json_option
def diff(app_name: str, source: str, target: str, as_json: bool) -> None:
    """What differs for APP between two environments: release, variables (with values),
    secrets (names and versions, never values), tool profiles. Look before promoting."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            view = await w.views.diff(app_name, source, target)
        if as_json:
            emit_json(view)
            return
        rows: list[tuple[str, str, str, str]] = [
            ("release", "", view.release.source or "-", view.release.target or "-")
        ]
        rows += [("var", v.key, v.source or "(unset)", v.target or "(unset)") for v in view.vars]
        rows += [
            (
                "secret",
                s.key,
                f"v{s.source_version}" if s.source_version else "(unset)",
                f"v{s.target_version}" if s.target_version else "(unset)",
            )
            for s in view.secrets
        ]
        rows += [("tool", t.tool, _tool_text(t.source), _tool_text(t.target)) for t in view.tools]
        table(["WHAT", "NAME", source.upper(), target.upper()], rows)

    run(work)


def _tool_text(profile: dict[str, Any] | None) -> str:
    if profile is None:
        return "(no profile)"
    auth = (
        f" auth={profile['auth_scheme']}:{profile['auth_secret']}" if profile["auth_secret"] else ""
    )
    return f"{profile['url']}{auth}"


def _config_text(config: dict[str, Any]) -> str:
    parts = []
    for section in ("vars", "secrets", "tools"):
        for key, ref in sorted((config.get(section) or {}).items()):
            parts.append(f"{key}@v{ref['version']}")
    return " ".join(parts)


COMMANDS = [promote, train, rollback, status, history, diff]
