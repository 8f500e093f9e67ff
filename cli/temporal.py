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
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from cli.progress import Event, PromotionTracker, Renderer, TrainTracker, renderer
from cli.remote import RemoteRun
from models.errors import BadInput, ExitCode, StagelineError
from models.promotion import (
    PromotionResult,
    PromotionStatus,
    RollbackResult,
    TrainResult,
    TrainStatus,
)
from worker import runs
from worker.client import result_of
from workflows.contract import TrainHandle

R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)
I = TypeVar("I", bound=BaseModel)  # noqa: E741 (a workflow's input)


class TimedOut(StagelineError):
    exit_code = ExitCode.TIMED_OUT


async def query_status(
    handle: WorkflowHandle[Any, Any] | RemoteRun, timeout: float = 3.0
) -> PromotionStatus | None:
    """A promotion's (or rollback's) `status` query, or None when it does not answer in time
    or cannot be answered (the worker failed to run the query): the caller then goes by the
    workflow's result, never by a traceback."""
    if isinstance(handle, RemoteRun):
        return await _in_time(handle.status(), timeout)
    return await runs.query_status(handle, timeout)


async def _in_time(query: Awaitable[M | None], timeout: float) -> M | None:
    try:
        return await asyncio.wait_for(query, timeout)
    except (TimeoutError, RPCError, WorkflowQueryFailedError, StagelineError):
        return None


async def outcome(handle: WorkflowHandle[Any, Any] | RemoteRun, model: type[M]) -> M:
    """A run's result (see worker.client.result_of), from Temporal or from the server."""
    if isinstance(handle, RemoteRun):
        return await handle.result(model)
    return await result_of(handle, model)


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

    async def poll(self, handle: WorkflowHandle[Any, Any] | RemoteRun) -> None:
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
        connect: Callable[[], Awaitable[Client | RemoteRun]],
        enabled: bool = True,
        stream: IO[str] | None = None,
    ) -> None:
        super().__init__(enabled, stream)
        self._connect = connect
        self._client: Client | RemoteRun | None = None
        self.train = TrainTracker()

    def _live(self, now: datetime) -> str | None:
        return self.train.live(now)

    async def poll(self, handle: WorkflowHandle[Any, Any] | RemoteRun) -> None:
        status: TrainStatus | None = await _in_time(
            handle.train_status()
            if isinstance(handle, RemoteRun)
            else TrainHandle(handle).status(),
            3.0,
        )
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
                        final = await asyncio.wait_for(outcome(child, PromotionResult), 5)
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
    handle: WorkflowHandle[Any, Any] | RemoteRun,
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
            result = await asyncio.wait_for(outcome(handle, result_type), timeout)
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
