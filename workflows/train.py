"""ReleaseTrainWorkflow: one release through the chain, each stage a child PromotionWorkflow.

It stops at the first stage that is not deployed and reports every stage's result.
Reviewer signals sent to the train reach the stage that is running.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from models.promotion import (
        PromotionInput,
        PromotionResult,
        SignedFor,
        TrainInput,
        TrainResult,
        TrainStage,
        TrainStatus,
        promotion_workflow_id,
    )
    from workflows import search_attributes as sa
    from workflows.base import failure_reason
    from workflows.contract import PLAN_TRAIN, PROMOTION, TRAIN, Query, Signal
    from workflows.details import train_details
    from workflows.options import only_input, store, validate_input
    from workflows.outcomes import outcome_error, outcome_of
    from workflows.patches import OUTCOME_PATCH, Patches


@workflow.defn(name=TRAIN.name)
class ReleaseTrainWorkflow:
    """Input: TrainInput (`TRAIN.input`), taken raw and validated inside; result: TrainResult."""

    def __init__(self) -> None:
        self._status = TrainStatus(train_id=workflow.info().workflow_id)
        self._patches = Patches()

    @workflow.query(
        name=Query.STATUS,
        description="Each stage's promotion and status, the stage now running, and "
        "decisions that could not be forwarded.",
    )
    def status(self) -> TrainStatus:
        return self._status

    @workflow.signal(
        name=Signal.APPROVE,
        description='Forwarded to the stage now running: {"reviewer": "alice", '
        '"comment": "optional"}; that promotion judges it.',
    )
    async def approve(self, *args: Any) -> None:
        await self._forward(Signal.APPROVE, *args)

    @workflow.signal(
        name=Signal.REJECT,
        description='Forwarded to the stage now running: {"reviewer": "alice", '
        '"comment": "why"}; the train stops there.',
    )
    async def reject(self, *args: Any) -> None:
        await self._forward(Signal.REJECT, *args)

    @workflow.signal(
        name=Signal.OVERRIDE,
        description='Forwarded to the stage now running: {"reviewer": "bob", "comment": '
        '"why"}, a break-glass override of a deploy freeze.',
    )
    async def override(self, *args: Any) -> None:
        await self._forward(Signal.OVERRIDE, *args)

    def _publish(self) -> None:
        workflow.set_current_details(train_details(self._status))

    async def _forward(self, signal: str, *args: Any) -> None:
        """Pass a decision on to the stage now running; it judges and records it."""
        if self._status.active is None:
            self._status.refusals.append(f"{signal} ignored: no stage is running")
            return
        try:  # as received, malformed or not: the stage judges and records it
            await workflow.get_external_workflow_handle(self._status.active).signal(
                signal, args=list(args)
            )
        except Exception as exc:  # a signal handler must not raise: say why instead
            self._status.refusals.append(f"{signal} ignored: {failure_reason(exc)}")

    @workflow.run
    async def run(self, *args: Any) -> TrainResult:
        self._patches.start()
        request = validate_input(TRAIN.input, only_input(args, TRAIN.name))
        self._status.app, self._status.version = request.app, request.version
        self._status.through = request.through
        workflow.upsert_search_attributes(
            [
                sa.APP.value_set(request.app),
                sa.VERSION.value_set(request.version),
                sa.ENVIRONMENT.value_set(request.through),
                sa.STATUS.value_set("running"),
            ]
        )
        plan = await store(PLAN_TRAIN, request)  # InvalidInput fails the train
        self._status.requester_verified = plan.requester_verified
        self._status.stages = [
            TrainStage(
                environment=env,
                promotion_id=promotion_workflow_id(request.app, request.version, env),
            )
            for env in plan.stages
        ]
        self._publish()
        results: list[PromotionResult] = []
        for stage in self._status.stages:
            stage.status = "running"
            self._status.active = stage.promotion_id
            self._publish()
            result = await self._promote(request, stage)
            self._status.active = None
            stage.status, stage.result = result.status, result
            self._publish()
            results.append(result)
            if result.status != "deployed":
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        last = results[-1]
        workflow.upsert_search_attributes([sa.STATUS.value_set(last.status)])
        outcome = TrainResult.model_validate(
            {
                "status": last.status,
                "app": request.app,
                "version": request.version,
                "through": request.through,
                "reason": None
                if last.status == "deployed"
                else f"stopped at {last.environment}: {last.reason}",
                "stages": results,
                "requester_verified": plan.requester_verified,
            }
        )
        if outcome.status != "deployed" and self._patches.patched(OUTCOME_PATCH):
            # Stopped short: the train ends Failed, so it never looks like a success.
            raise outcome_error(TRAIN.kind, outcome.status, outcome.reason, outcome)
        return outcome

    async def _promote(self, request: TrainInput, stage: TrainStage) -> PromotionResult:
        try:
            result: PromotionResult = await workflow.execute_child_workflow(
                PROMOTION.name,
                PromotionInput(
                    app=request.app,
                    version=request.version,
                    target=stage.environment,
                    requested_by=request.requested_by,
                    on_behalf_of=request.on_behalf_of,
                    source="train",
                    # The train's own proof, passed on: each stage checks it against the
                    # server's key and against its parent (this train).
                    requester_signature=request.requester_signature,
                    signed_for=SignedFor(
                        workflow_id=workflow.info().workflow_id, through=request.through
                    )
                    if request.requester_signature is not None
                    else None,
                ),
                id=stage.promotion_id,
                result_type=PROMOTION.result,
            )
        except ChildWorkflowError as exc:
            # A stage that did not deploy ends as a failure carrying its result.
            outcome = outcome_of(exc, PromotionResult)
            if outcome is not None:
                return outcome
            return PromotionResult(
                status="failed",
                app=request.app,
                environment=stage.environment,
                version=request.version,
                promotion_id=stage.promotion_id,
                reason=str(exc.cause or exc),
            )
        except WorkflowAlreadyStartedError:
            return PromotionResult(
                status="rejected",
                app=request.app,
                environment=stage.environment,
                version=request.version,
                promotion_id=stage.promotion_id,
                reason=f"{stage.promotion_id} is already running on its own; let it finish "
                "and start the train again",
            )
        return result
