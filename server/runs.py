"""Promotions, trains and rollbacks through the server: started for the authenticated
principal (its name is the requester, signed with the server's key), followed, and decided.

    POST /api/v1/promotions        start (or attach to) a promotion   deployer in the target
    POST /api/v1/trains            start a release train               deployer in each stage
    POST /api/v1/rollbacks         start a rollback                    deployer there
    GET  /api/v1/runs/{id}         its `status` query                  viewer there
    GET  /api/v1/runs/{id}/result  its result (waits up to ?wait= s)   viewer there
    POST /api/v1/runs/{id}/decisions  approve, reject or override      reviewer there

A decision is sent as the principal, signed with the server's key for that very run, so a
reviewer's name in a history is proven; a `reviewer` in the body is only checked against it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from models.errors import BadInput, NotFound, Refused, StagelineError, Unavailable
from models.identity import Action, Identity
from models.names import ResourceName, VersionName
from models.promotion import (
    PromotionInput,
    PromotionResult,
    PromotionStatus,
    RollbackInput,
    RollbackResult,
    TrainInput,
    TrainResult,
    TrainStatus,
    promotion_workflow_id,
    rollback_suffix,
    rollback_workflow_id,
    train_workflow_id,
)
from models.review import DecisionKind, DecisionOutcome, DecisionRequest
from server import auth
from server.app import API, Caller, Server
from server.operations import EVERY
from services import signatures
from worker.client import result_of
from workflows.contract import PROMOTION, ROLLBACK, TRAIN, TrainHandle, WorkflowContract
from workflows.details import promotion_summary, rollback_summary, train_summary
from workflows.search_attributes import APP, ENVIRONMENT

Source = Literal["cli", "ci"]


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: ResourceName
    version: VersionName
    target: ResourceName
    on_behalf_of: str | None = Field(default=None, min_length=1, max_length=200)
    force: bool = False
    source: Source = "cli"


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: ResourceName
    version: VersionName
    through: ResourceName
    on_behalf_of: str | None = Field(default=None, min_length=1, max_length=200)
    source: Source = "cli"


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: ResourceName
    environment: ResourceName
    to_version: VersionName | None = None
    reason: str | None = Field(default=None, max_length=2000)
    # Names the request, so a retried CI job gets the first answer (see `rollback`).
    request_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")
    source: Source = "cli"


class Started(BaseModel):
    id: str
    attached: bool


class RunView(BaseModel):
    id: str
    kind: Literal["promotion", "rollback", "train"]
    app: str | None
    environment: str | None
    # The run's `status` query (PromotionStatus, or TrainStatus for a train); None when the
    # worker did not answer in time.
    status: dict[str, Any] | None
    # The workflow is no longer running (its result is there to read).
    ended: bool = False


class RunResult(BaseModel):
    done: bool
    result: dict[str, Any] | None = None


class DecideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: DecisionKind
    comment: str | None = Field(default=None, max_length=2000)
    # Who the caller says decides: refused unless it is the authenticated principal.
    reviewer: str | None = None


_CONTRACTS: dict[str, WorkflowContract[Any, Any, Any]] = {
    c.name: c for c in (PROMOTION, ROLLBACK, TRAIN)
}


async def _described(
    server: Server, run_id: str
) -> tuple[WorkflowHandle[Any, Any], str, WorkflowExecutionDescription]:
    """A stageline run's handle, kind and description."""
    client = await server.client()
    handle = client.get_workflow_handle(run_id)
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(
                f"no promotion, train or rollback {run_id!r}; see 'stageline status'"
            ) from None
        raise Unavailable(f"cannot reach Temporal ({exc.message})") from None
    contract = _CONTRACTS.get(described.workflow_type)
    if contract is None:
        raise NotFound(f"{run_id!r} is a {described.workflow_type}, not a stageline run")
    return handle, contract.kind, described


async def _run(server: Server, run_id: str) -> tuple[WorkflowHandle[Any, Any], str, str | None]:
    """A stageline run's handle, kind and environment (from its search attributes)."""
    handle, kind, described = await _described(server, run_id)
    return handle, kind, described.typed_search_attributes.get(ENVIRONMENT)


async def _view_check(
    server: Server, identity: Identity, what: str, environment: str | None
) -> None:
    # A run with no environment recorded (started by hand without search attributes) is
    # readable only by those who view every environment.
    await auth.authorize(server.units, identity, what, [(Action.VIEW, environment or EVERY)], None)


Request = PromotionInput | TrainInput | RollbackInput


async def _start(
    server: Server,
    workflow: WorkflowContract[Any, Any, Any],
    request: Request,
    workflow_id: str,
    summary: str,
) -> Started:
    """Sign the request as the server's (bound to its workflow id and namespace), then check
    and start it as the CLI does (worker.runs.launch)."""
    from worker.runs import launch

    kind: Literal["promotion", "train", "rollback"] = workflow.kind
    version: str | None
    if isinstance(request, PromotionInput):
        environment, version = request.target, request.version
    elif isinstance(request, TrainInput):
        environment, version = request.through, request.version
    else:
        environment, version = request.environment, request.to_version
    message = signatures.request_message(
        namespace=server.settings.temporal_namespace,  # the client's, as activities see it
        workflow_id=workflow_id,
        kind=kind,
        app=request.app,
        version=version,
        environment=environment,
        requested_by=request.requested_by,
        on_behalf_of=getattr(request, "on_behalf_of", None),
        force=getattr(request, "force", False),
    )
    signed = request.model_copy(
        update={"requester_signature": signatures.sign(server.signing_key, message)}
    )
    handle, attached = await launch(
        server.units,
        server.client,
        workflow,
        signed,
        workflow_id,
        app=request.app,
        environment=environment,
        version=version,
        summary=summary,
        once=workflow is ROLLBACK,
    )
    return Started(id=handle.id, attached=attached)


async def _train_stages(server: Server, app: str, through: str) -> list[str]:
    """The environments a train of `app` through `through` deploys to, in order."""
    async with server.units.read() as w:
        chain = [e.name for e in await w.environments.list_environments()]
        apps = {a.name: a.environments for a in await w.environments.list_apps()}
    if through not in chain:
        raise NotFound(f"environment {through!r} does not exist; see 'stageline env list'")
    if app not in apps:
        raise NotFound(f"app {app!r} does not exist; see 'stageline app list'")
    upto = chain[: chain.index(through) + 1]
    return [e for e in upto if e in apps[app]] or [through]


def _acting_for(identity: Identity, claimed: str | None) -> str | None:
    return claimed if claimed != identity.name else None


async def start_promotion(server: Server, identity: Identity, body: PromoteRequest) -> Started:
    """Start a promotion of a release into an environment, as `identity`."""
    checks = [(Action.DEPLOY, body.target)]
    await auth.authorize(server.units, identity, "promote", checks, body.app)
    request = PromotionInput(
        **body.model_dump(exclude={"on_behalf_of"}),
        requested_by=identity.name,
        on_behalf_of=_acting_for(identity, body.on_behalf_of),
    )
    wid = promotion_workflow_id(body.app, body.version, body.target)
    summary = promotion_summary(body.app, body.version, body.target)
    return await _start(server, PROMOTION, request, wid, summary)


async def start_train(server: Server, identity: Identity, body: TrainRequest) -> Started:
    """Start a release train through the environments up to `through`, as `identity`."""
    stages = await _train_stages(server, body.app, body.through)
    checks = [(Action.DEPLOY, stage) for stage in stages]
    await auth.authorize(server.units, identity, "train", checks, body.app)
    request = TrainInput(
        **body.model_dump(exclude={"on_behalf_of"}),
        requested_by=identity.name,
        on_behalf_of=_acting_for(identity, body.on_behalf_of),
    )
    wid = train_workflow_id(body.app, body.version, body.through)
    summary = train_summary(body.app, body.version, body.through)
    return await _start(server, TRAIN, request, wid, summary)


async def start_rollback(server: Server, identity: Identity, body: RollbackRequest) -> Started:
    """Start a rollback of an app in one environment, as `identity`."""
    checks = [(Action.DEPLOY, body.environment)]
    await auth.authorize(server.units, identity, "rollback", checks, body.app)
    if body.request_id:
        suffix = f"request-{body.request_id}"
    else:
        async with server.units.read() as w:
            current = await w.deployments.current_deployment_id(body.app, body.environment)
        suffix = rollback_suffix(current, body.to_version)
    request = RollbackInput(**body.model_dump(exclude={"request_id"}), requested_by=identity.name)
    wid = rollback_workflow_id(body.app, body.environment, suffix)
    summary = rollback_summary(body.app, body.environment, body.to_version)
    return await _start(server, ROLLBACK, request, wid, summary)


async def run_view(server: Server, identity: Identity, run_id: str) -> RunView:
    """A run's `status` query: gates, approvals, steps (a train: its stages)."""
    handle, kind, described = await _described(server, run_id)
    environment = described.typed_search_attributes.get(ENVIRONMENT)
    await _view_check(server, identity, f"status {run_id}", environment)
    status: PromotionStatus | TrainStatus | None
    try:
        if kind == "train":
            status = await asyncio.wait_for(TrainHandle(handle).status(), 3.0)
        else:
            from worker.runs import query_status

            status = await query_status(handle)
    except (TimeoutError, RPCError):
        status = None
    return RunView(
        id=run_id,
        kind=kind,
        app=described.typed_search_attributes.get(APP),
        environment=environment,
        status=status.model_dump(mode="json") if status is not None else None,
        ended=described.status != WorkflowExecutionStatus.RUNNING,
    )


async def run_result(server: Server, identity: Identity, run_id: str, wait: float) -> RunResult:
    """The run's result once it has ended (also when it ended Failed with its outcome);
    waits up to `wait` seconds (at most 60), then answers `done: false`."""
    handle, kind, environment = await _run(server, run_id)
    await _view_check(server, identity, f"result {run_id}", environment)
    models: dict[str, type[BaseModel]] = {
        "promotion": PromotionResult,
        "rollback": RollbackResult,
        "train": TrainResult,
    }
    try:
        result = await asyncio.wait_for(result_of(handle, models[kind]), max(0.0, min(wait, 60.0)))
    except TimeoutError:
        return RunResult(done=False)
    except WorkflowFailureError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == "InvalidInput":
            raise BadInput(cause.message) from None
        raise StagelineError(f"{run_id} failed: {cause or exc}") from None
    return RunResult(done=True, result=result.model_dump(mode="json"))


async def decide(
    server: Server, identity: Identity, run_id: str, body: DecideRequest
) -> DecisionOutcome:
    """Approve, reject or override, as `identity`, signed by the server."""
    from worker.runs import send_decision

    if body.reviewer is not None and body.reviewer != identity.name:
        raise Refused(
            f"you are signed in as {identity.name}; a decision is yours alone, so "
            f"--reviewer {body.reviewer} cannot be used (leave it out)"
        )
    # Someone who decides nowhere is refused before Temporal is asked about the run.
    await auth.authorize(
        server.units, identity, f"{body.kind} {run_id}", [(Action.DECIDE, None)], None
    )
    handle, kind, environment = await _run(server, run_id)
    target = run_id
    if kind == "train":
        active = (await TrainHandle(handle).status()).active
        if active is None:
            raise Refused(f"no stage of {run_id} is running; nothing to decide")
        target = active
        _, _, environment = await _run(server, active)
    await auth.authorize(
        server.units,
        identity,
        f"{body.kind} {target}",
        [(Action.DECIDE, environment or EVERY)],
        None,
    )
    decision = DecisionRequest(kind=body.kind, reviewer=identity.name, comment=body.comment)
    return await send_decision(await server.client(), target, decision, server.signing_key)


def add_run_routes(app: FastAPI, server: Server) -> None:
    @app.post(f"{API}/promotions", tags=["runs"], response_model=Started)
    async def promote(identity: Caller, body: PromoteRequest) -> Started:
        """Start a promotion of a release into an environment, as the caller."""
        return await start_promotion(server, identity, body)

    @app.post(f"{API}/trains", tags=["runs"], response_model=Started)
    async def train(identity: Caller, body: TrainRequest) -> Started:
        """Start a release train through the environments up to `through`, as the caller."""
        return await start_train(server, identity, body)

    @app.post(f"{API}/rollbacks", tags=["runs"], response_model=Started)
    async def rollback(identity: Caller, body: RollbackRequest) -> Started:
        """Start a rollback of an app in one environment, as the caller."""
        return await start_rollback(server, identity, body)

    @app.get(f"{API}/runs/{{run_id}}", tags=["runs"], response_model=RunView)
    async def run_status(identity: Caller, run_id: str) -> RunView:
        """A run's `status` query: gates, approvals, steps (a train: its stages)."""
        return await run_view(server, identity, run_id)

    @app.get(f"{API}/runs/{{run_id}}/result", tags=["runs"], response_model=RunResult)
    async def result(identity: Caller, run_id: str, wait: float = 20.0) -> RunResult:
        """The run's result once it has ended (also when it ended Failed with its outcome);
        waits up to `wait` seconds (at most 60), then answers `done: false`."""
        return await run_result(server, identity, run_id, wait)

    @app.post(f"{API}/runs/{{run_id}}/decisions", tags=["runs"], response_model=DecisionOutcome)
    async def decisions(identity: Caller, run_id: str, body: DecideRequest) -> DecisionOutcome:
        """Approve, reject or override, as the caller, signed by the server."""
        return await decide(server, identity, run_id, body)
