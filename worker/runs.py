"""Starting stageline's workflows and talking to them as a client: start (or attach to the
same request), the `status` query, decisions (signed when a key is given), and the nudges the
CLI and the server send after a change. The CLI (embedded) and the server use these; the CLI in
remote mode reaches them through the server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models.errors import BadInput, ConfigurationError, NotFound, Refused, Unavailable
from models.promotion import PromotionStatus
from models.review import DecisionOutcome, DecisionRequest
from models.settings import Settings
from models.views import StatusView
from services import signatures
from services.unit import Units
from workflows.contract import TRAIN, PromotionHandle, TrainHandle, WorkflowContract
from workflows.search_attributes import initial

R = TypeVar("R")
I = TypeVar("I", bound=BaseModel)  # noqa: E741 (a workflow's input)


async def start(
    client: Client,
    settings: Settings,
    workflow: WorkflowContract[I, R, Any],
    arg: I,
    workflow_id: str,
    *,
    app: str,
    environment: str,
    version: str | None,
    summary: str,
    once: bool = False,
) -> tuple[WorkflowHandle[Any, R], bool]:
    """Start a workflow with its own input model, or attach to the one already running
    under the same id.

    `summary` is the one line the Temporal UI shows for it (e.g. `web 1.4.0 -> production`).

    Returns the handle and whether it attached to an existing run (a retried CI job).
    With `once`, a run that already completed under the id is the answer too: the request is
    not carried out twice (a retried rollback must not roll back one release further).
    """
    existing: WorkflowHandle[Any, R] = client.get_workflow_handle(
        workflow_id, result_type=workflow.result
    )
    try:
        described = await existing.describe()
        if described.status == WorkflowExecutionStatus.RUNNING:
            await _same_request(client, existing, described.workflow_type, workflow.name, arg)
            return existing, True
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise Unavailable(f"cannot reach Temporal ({exc.message})") from None
    try:
        # USE_EXISTING covers the race where another job started it a moment ago.
        handle: WorkflowHandle[Any, R] = await client.start_workflow(
            workflow.name,
            arg,
            id=workflow_id,
            task_queue=settings.task_queue,
            result_type=workflow.result,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # `once`: a completed run stands; a failed one may be tried again.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
            if once
            else WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=initial(app, environment, version, "validating"),
            static_summary=summary,
            static_details=_requested(arg) + " with stageline. Its status query, or "
            "`stageline status`, shows gates, approvals and steps.",
        )
    except WorkflowAlreadyStartedError:
        # Only with `once`: it completed already; its result is this request's answer.
        return existing, True
    except RPCError as exc:
        raise Unavailable(f"cannot start {workflow.name} on Temporal ({exc.message})") from None
    return handle, False


# What a request is about: a run found under the same id must agree on each of these.
_IDENTITY = ("app", "version", "target", "environment", "to_version", "through")


async def _same_request(
    client: Client,
    running: WorkflowHandle[Any, Any],
    running_type: str,
    workflow: str,
    arg: BaseModel,
) -> None:
    """Attach only to the same request (a retried CI job); anything else squatting the id
    is refused, never waited on."""
    wid = running.id
    terminate = f"temporal workflow terminate --workflow-id {wid}"
    if running_type != workflow:
        raise Refused(
            f"the workflow id {wid} is taken by a running {running_type}, not a {workflow}; "
            f"stageline will not attach to it: ask who started it, or stop it with '{terminate}'"
        )
    wanted = {k: v for k, v in arg.model_dump(mode="json").items() if k in _IDENTITY}
    found: Any = None
    async for event in running.fetch_history_events():
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        with contextlib.suppress(Exception):  # unreadable input: not the same request
            [found] = await client.data_converter.decode(payloads)
        break
    got = {k: found.get(k) for k in wanted} if isinstance(found, dict) else None
    if got != wanted:
        raise Refused(
            f"the workflow id {wid} is taken by a running {workflow} for "
            f"{got if got is not None else 'an input that is not a request'}, not {wanted}; "
            f"stageline will not attach to it: let it finish, or stop it with '{terminate}'"
        )


def _requested(request: Any) -> str:
    text = f"Requested by {getattr(request, 'requested_by', 'unknown')}"
    if on_behalf_of := getattr(request, "on_behalf_of", None):
        text += f" for {on_behalf_of}"
    return text


async def launch(
    units: Units,
    connect: Callable[[], Awaitable[Client]],
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
    """Refuse unknown names before anything starts, even before Temporal is reached (exit
    3), then start or attach."""
    async with units.read() as w:
        await w.deployments.check_request(app, environment, version)
    return await start(
        await connect(),
        units.settings,
        workflow,
        request,
        workflow_id,
        app=app,
        environment=environment,
        version=version,
        summary=summary,
        once=once,
    )


async def query_status(
    handle: WorkflowHandle[Any, Any], timeout: float = 3.0
) -> PromotionStatus | None:
    """A promotion's (or rollback's) `status` query, or None when it does not answer in time
    or cannot be answered (the worker failed to run the query): the caller then goes by the
    workflow's result, never by a traceback."""
    try:
        return await asyncio.wait_for(PromotionHandle(handle).status(), timeout)
    except (TimeoutError, RPCError, WorkflowQueryFailedError):
        return None


def _not_reachable(promotion_id: str, exc: RPCError) -> Exception:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return NotFound(
            f"promotion {promotion_id!r} is not running (finished, or never started); "
            "see 'stageline status'"
        )
    return Unavailable(f"cannot reach the promotion on Temporal ({exc.message})")


async def _sign(
    client: Client, promotion_id: str, request: DecisionRequest, key: Ed25519PrivateKey
) -> tuple[PromotionHandle, DecisionRequest]:
    """Sign the decision for the run now under `promotion_id`, and aim at that very run: a
    newer run under the same id would refuse the signature rather than take it."""
    try:
        run_id = (await client.get_workflow_handle(promotion_id).describe()).run_id
    except RPCError as exc:
        raise _not_reachable(promotion_id, exc) from None
    message = signatures.decision_message(
        namespace=client.namespace,
        workflow_id=promotion_id,
        run_id=run_id,
        kind=request.kind,
        reviewer=request.reviewer,
        comment=request.comment,
    )
    signed = request.model_copy(update={"signature": signatures.sign(key, message)})
    return PromotionHandle.of(client, promotion_id, run_id), signed


async def send_decision(
    client: Client,
    promotion_id: str,
    request: DecisionRequest,
    key: Ed25519PrivateKey | None = None,
) -> DecisionOutcome:
    """The `decide` update: the answer says at once whether the decision counted. With a
    reviewer's private key, the decision is signed for this promotion run.

    Given a release train's id, the decision goes to the stage that is running.
    """
    # What the workflow is, from Temporal, never from how its id looks (any id can be
    # given to a workflow started from the UI).
    try:
        described = await client.get_workflow_handle(promotion_id).describe()
    except RPCError as exc:
        raise _not_reachable(promotion_id, exc) from None
    if described.workflow_type == TRAIN.name:
        try:
            train = await TrainHandle.of(client, promotion_id).status()
        except RPCError as exc:
            raise NotFound(
                f"release train {promotion_id!r} cannot be reached ({exc.message})"
            ) from None
        if train.active is None:
            raise Refused(f"no stage of {promotion_id} is running; nothing to decide")
        promotion_id = train.active
    handle = PromotionHandle.of(client, promotion_id)
    if key is not None:
        handle, request = await _sign(client, promotion_id, request, key)
    try:
        # Unsigned, the payload stays exactly what it always was (no "signature": null).
        outcome = await handle.decide(request)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise BadInput(
            f"the decision was not accepted: {getattr(cause, 'message', cause)}"
        ) from None
    except RPCError as exc:
        raise _not_reachable(promotion_id, exc) from None
    return outcome


async def nudge_frozen(
    units: Units, environment: str, connect: Callable[[], Awaitable[Client]] | None = None
) -> None:
    """Tell promotions held by a freeze in `environment` to look again now (call it once the
    freeze is committed: they read it in transactions of their own). Remote, the server
    does it."""
    if units.remote:
        return
    async with units.read() as w:
        view = await w.views.status(environment=environment)
    if not view.in_progress:
        return
    # Here, not at the top: the Temporal client is heavy, and only this path needs it.
    from temporalio.service import RPCError

    from worker.client import connect as connect_settings
    from workflows.contract import PromotionHandle

    try:
        client = await (connect() if connect else connect_settings(units.settings))
    except (Unavailable, ConfigurationError):
        return  # they look again by themselves within minutes
    for promotion in view.in_progress:
        with suppress(RPCError):
            await PromotionHandle.of(client, promotion.promotion_id).freeze_changed()


async def fill_live(connect: Callable[[], Awaitable[Client]], view: StatusView) -> None:
    """Fill in each promotion under way from its workflow, when Temporal answers."""
    if not view.in_progress:
        return
    try:
        client = await connect()
    except (Unavailable, ConfigurationError):
        return  # the stored view still answers without Temporal (or its payload key)
    for promotion in view.in_progress[:50]:
        status = await query_status(client.get_workflow_handle(promotion.promotion_id), 2.0)
        if status is not None:
            promotion.phase = status.phase.value
            promotion.approvals = status.approvals
            promotion.approvals_required = status.approvals_required
            promotion.may_approve = status.may_approve
