"""What PromotionWorkflow and RollbackWorkflow share: the status query, the deployment
queue, and running one step while keeping its progress visible."""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.promotion import (
        LockRequest,
        Phase,
        PromotionStatus,
        StepOutcome,
        StepProgress,
        StepRequest,
        StepSpec,
        WorkflowRef,
    )
    from models.status import StepStatus
    from workflows import search_attributes as sa
    from workflows.contract import ENTER_QUEUE, PROMOTION, Query, Signal, WorkflowKind
    from workflows.details import promotion_details
    from workflows.options import step, store
    from workflows.patches import Patches

PASSING_PHASES = {Phase.GATES, Phase.VERIFYING}

# The deployment ahead signals when it leaves; polling covers a missed signal.
QUEUE_POLL = timedelta(seconds=3)


class Orchestration:
    kind: WorkflowKind = PROMOTION.kind  # what the UI's current details call this workflow

    def __init__(self) -> None:
        self._status = PromotionStatus(promotion_id=workflow.info().workflow_id)
        self._queue_moved = False
        # The queue ticket this run holds or waits with, until it has left the queue.
        self._lock: LockRequest | None = None
        self._patches = Patches()  # `start()` first thing in the run

    @workflow.query(
        name=Query.STATUS,
        description="The current phase, gates, approvals received versus required and who "
        "may still approve, refused decisions, and each pipeline step's progress.",
    )
    def status(self) -> PromotionStatus:
        return self._status

    @workflow.signal(
        name=Signal.QUEUE_MOVED,
        description="Internal, sent by stageline itself: the deployment ahead of this one "
        "left the queue. Never needed by hand.",
    )
    def queue_moved(self, *_: Any) -> None:
        self._queue_moved = True

    def _publish(self) -> None:
        """Refresh what the Temporal UI shows as this workflow's current details."""
        workflow.set_current_details(promotion_details(self._status, self.kind))

    def _set_phase(self, phase: Phase) -> None:
        self._status.phase = phase
        self._publish()
        # The StagelineStatus search attribute follows the phases people filter on (waiting
        # ones, deploying, the outcome); each upsert costs the server a visibility write, so
        # passing phases (gates, verifying) are only in the status query.
        if phase not in PASSING_PHASES:
            workflow.upsert_search_attributes([sa.STATUS.value_set(phase.value)])

    def _interruption(self) -> str | None:
        """Why this workflow must stop waiting (e.g. superseded), or None to go on."""
        return None

    async def _wait_for_turn(self, lock: LockRequest) -> bool:
        """One deployment per app and environment: wait, in order, until it is ours.

        False when interrupted while waiting (the caller then leaves the queue).
        """
        while True:
            if self._interruption() is not None:
                return False
            state = await store(ENTER_QUEUE, lock)
            if state.acquired:
                self._status.waiting_for = None
                return True
            await self._queued(state.holder)

    async def _queued(self, holder: str | None) -> None:
        """Not this run's turn: wait until the queue moves (or to look again)."""
        self._status.waiting_for = holder
        self._set_phase(Phase.QUEUED)
        self._queue_moved = False
        with suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._queue_moved or self._interruption() is not None,
                timeout=QUEUE_POLL,
            )

    def _plan_steps(self, specs: list[StepSpec]) -> None:
        self._status.steps = [
            StepProgress(section=s.section, name=s.name, kind=s.kind) for s in specs
        ]

    async def _run_step(
        self, position: int, spec: StepSpec, deployment_id: int, run: WorkflowRef
    ) -> StepOutcome:
        progress = self._status.steps[position]
        progress.status = StepStatus.RUNNING
        progress.started_at = workflow.now()
        self._publish()
        try:
            outcome = await step(
                StepRequest(
                    deployment_id=deployment_id,
                    step=spec,
                    # Stable across retries, so deploy scripts can be idempotent.
                    run_id=f"{run.workflow_id}/{run.run_id}",
                )
            )
        except ActivityError:
            progress.status = StepStatus.FAILED
            progress.finished_at = workflow.now()
            self._publish()
            raise
        progress.status = StepStatus.SUCCEEDED if outcome.succeeded else StepStatus.FAILED
        progress.started_at, progress.finished_at = outcome.started_at, outcome.finished_at
        progress.exit_code = outcome.exit_code
        progress.detail = outcome.detail
        self._publish()
        return outcome

    def _skip_pending(self) -> None:
        for progress in self._status.steps:
            if progress.status == StepStatus.PENDING:
                progress.status = StepStatus.SKIPPED
        self._publish()


def failure_reason(exc: BaseException) -> str:
    cause = exc.cause if isinstance(exc, ActivityError) and exc.cause else exc
    return str(cause) or type(cause).__name__
