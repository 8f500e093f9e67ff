"""Starting workflows and following them from the command line."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import IO, Any, TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from cli.progress import Event, PromotionTracker, Renderer, TrainTracker, renderer
from models.errors import BadInput, ExitCode, Refused, StagelineError, Unavailable
from models.promotion import (
    PromotionResult,
    PromotionStatus,
    RollbackResult,
    TrainResult,
    TrainStatus,
)
from models.settings import Settings
from worker.client import result_of
from workflows.contract import PromotionHandle, TrainHandle, WorkflowContract
from workflows.search_attributes import initial

R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)
I = TypeVar("I", bound=BaseModel)  # noqa: E741 (a workflow's input)


class TimedOut(StagelineError):
    exit_code = ExitCode.TIMED_OUT


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


async def query_status(
    handle: WorkflowHandle[Any, Any], timeout: float = 3.0
) -> PromotionStatus | None:
    """A promotion's (or rollback's) `status` query, or None when it does not answer in time
    or cannot be answered (the worker failed to run the query): the caller then goes by the
    workflow's result, never by a traceback."""
    return await _in_time(PromotionHandle(handle).status(), timeout)


async def _in_time(query: Awaitable[M], timeout: float) -> M | None:
    try:
        return await asyncio.wait_for(query, timeout)
    except (TimeoutError, RPCError, WorkflowQueryFailedError):
        return None


class Progress:
    """Shows a promotion (or rollback) while `follow` waits for it, on stderr: every gate,
    phase and step, each once and in order (see cli.progress), from the `status` query polled
    and then from the result. Rich on a terminal, plain lines elsewhere; off for --json."""

    def __init__(self, enabled: bool = True, stream: IO[str] | None = None) -> None:
        self.enabled = enabled
        self._stream = stream
        self._out: Renderer | None = None
        self.tracker = PromotionTracker()

    def begin(self) -> None:
        if self.enabled and self._out is None:
            self._out = renderer(self._live, self._stream)

    def end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def _live(self, now: datetime) -> str | None:
        return self.tracker.live(now)

    def _show(self, events: list[Event]) -> None:
        if self._out is not None and events:
            self._out.show(events)

    async def poll(self, handle: WorkflowHandle[Any, Any]) -> None:
        status = await query_status(handle)
        if status is not None:
            self._show(self.tracker.update(status))

    def finish(self, result: BaseModel) -> None:
        """What the polls missed, from the result."""
        if isinstance(result, PromotionResult | RollbackResult):
            self._show(self.tracker.finish(result))


class TrainProgress(Progress):
    """Shows a release train: its stages in turn, each as a promotion (gates, approvals,
    phases, steps), and each stage's outcome. Each stage is a child PromotionWorkflow whose
    id the train's status names; it is queried with `client`, made when first needed."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Client]],
        enabled: bool = True,
        stream: IO[str] | None = None,
    ) -> None:
        super().__init__(enabled, stream)
        self._connect = connect
        self._client: Client | None = None
        self.train = TrainTracker()

    def _live(self, now: datetime) -> str | None:
        return self.train.live(now)

    async def poll(self, handle: WorkflowHandle[Any, Any]) -> None:
        status: TrainStatus | None = await _in_time(TrainHandle(handle).status(), 3.0)
        if status is None:
            return
        if self._client is None:
            self._client = await self._connect()
        self._show(self.train.plan(status))
        for stage in status.stages:
            if stage.status == "pending":
                break
            child = self._client.get_workflow_handle(stage.promotion_id)
            if stage.status == "running":
                self._show(
                    self.train.stage_update(
                        stage.environment, stage.promotion_id, await query_status(child)
                    )
                )
                break
            if not self.train.ended(stage.environment):
                # Over: its result has every gate and step, so the stage reads complete
                # before the next one begins.
                final: PromotionResult | PromotionStatus | None = stage.result
                if final is None:  # a train run by an older worker: ask the stage itself
                    try:
                        final = await asyncio.wait_for(result_of(child, PromotionResult), 5)
                    except (TimeoutError, RPCError, WorkflowFailureError):
                        final = await query_status(child)
                reason = final.reason if final is not None else None
                self._show(
                    self.train.stage_end(
                        stage.environment, stage.promotion_id, stage.status, final, reason
                    )
                )

    def finish(self, result: BaseModel) -> None:
        if isinstance(result, TrainResult):
            self._show(self.train.finish(result.stages))


async def follow(
    handle: WorkflowHandle[Any, Any],
    result_type: type[M],
    timeout: float | None,
    progress: Progress,
) -> M:
    """Wait for the result (also of a workflow that ended Failed with its outcome), showing
    progress; TimedOut when `timeout` runs out."""

    async def watch() -> None:
        while True:
            # A look that fails (Temporal busy, an answer that does not parse) is skipped:
            # the next look, or the result, makes up for it.
            with contextlib.suppress(Exception):
                await progress.poll(handle)
            await asyncio.sleep(0.5)

    progress.begin()
    watcher = asyncio.create_task(watch()) if progress.enabled else None
    try:
        try:
            result = await asyncio.wait_for(result_of(handle, result_type), timeout)
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        progress.finish(result)
        return result
    except TimeoutError:
        raise TimedOut(
            f"{handle.id} is still running after {timeout:g}s; it goes on without you: "
            f"follow it with 'stageline status' or in the Temporal UI"
        ) from None
    except WorkflowFailureError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == "InvalidInput":
            raise BadInput(cause.message) from None
        raise StagelineError(f"{handle.id} failed: {cause or exc}") from None
    finally:
        progress.end()
