"""PromotionWorkflow: gates, approvals, the queue, the pipeline, verification, compensation."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from models.promotion import (
        BeginDeployment,
        DeploymentStarted,
        FinishDeployment,
        LockRequest,
        Phase,
        PreparedPromotion,
        PrepareInput,
        PromotionInput,
        PromotionOutcome,
        PromotionResult,
        RollbackInput,
        RollbackResult,
        WorkflowRef,
    )
    from models.review import Decision
    from workflows import search_attributes as sa
    from workflows.base import Orchestration, failure_reason
    from workflows.options import store, store_only, validate_input


@workflow.defn(name="PromotionWorkflow")
class PromotionWorkflow(Orchestration):
    def __init__(self) -> None:
        super().__init__()
        self._request: PromotionInput | None = None
        self._prepared: PreparedPromotion | None = None
        self._approved_by: list[str] = []
        self._rejection: str | None = None

    # -- reviewer signals ------------------------------------------------------------------

    @workflow.signal(name="approve")
    def approve(self, decision: Any) -> None:
        self._decide(decision, approve=True)

    @workflow.signal(name="reject")
    def reject(self, decision: Any) -> None:
        self._decide(decision, approve=False)

    def _decide(self, raw: Any, approve: bool) -> None:
        # A signal handler must never raise (that fails the workflow task, which retries
        # forever); a decision that cannot count is recorded as refused instead.
        try:
            decision = Decision.model_validate(raw)
        except ValidationError as exc:
            self._status.refusals.append(f"malformed decision ignored: {exc.errors()[0]['msg']}")
            return
        refusal = self._refusal(decision.reviewer)
        verb = "approval" if approve else "rejection"
        if refusal is not None:
            self._status.refusals.append(f"{verb} by {decision.reviewer} refused: {refusal}")
            return
        if approve:
            self._approved_by.append(decision.reviewer)
            self._status.approvals = list(self._approved_by)
        else:
            comment = f": {decision.comment}" if decision.comment else ""
            self._rejection = f"rejected by {decision.reviewer}{comment}"

    def _refusal(self, reviewer: str) -> str | None:
        if self._prepared is None or self._request is None:
            return "the promotion is not waiting for approval yet"
        if self._status.phase != Phase.AWAITING_APPROVAL:
            return f"the promotion is {self._status.phase.value}, not awaiting approval"
        protection = self._prepared.protection
        if reviewer not in protection.reviewers:
            return f"{reviewer} is not a reviewer of {self._request.target}"
        if reviewer == self._request.requested_by and not protection.allow_self_review:
            return f"{reviewer} requested this promotion and may not approve it"
        if reviewer in self._approved_by:
            return f"{reviewer} already approved"
        return None

    # -- the run ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, raw: Any = None) -> PromotionResult:
        request = validate_input(PromotionInput, raw)
        self._request = request
        info = workflow.info()
        run = WorkflowRef(workflow_id=info.workflow_id, run_id=info.run_id)
        self._status.app, self._status.version = request.app, request.version
        self._status.environment, self._status.requested_by = request.target, request.requested_by
        workflow.upsert_search_attributes(
            [
                sa.APP.value_set(request.app),
                sa.ENVIRONMENT.value_set(request.target),
                sa.VERSION.value_set(request.version),
            ]
        )
        self._set_phase(Phase.GATES)
        try:
            prepared = await store(
                "prepare_promotion", PrepareInput(promotion=request, run=run), PreparedPromotion
            )
        except ActivityError as exc:
            # An unknown app, environment or release is the input's fault: fail the workflow
            # itself with that message, as for a malformed input.
            if isinstance(exc.cause, ApplicationError) and exc.cause.type == "InvalidInput":
                raise ApplicationError(
                    exc.cause.message, type="InvalidInput", non_retryable=True
                ) from None
            raise
        self._prepared = prepared
        self._status.gates = prepared.gates
        self._status.approvals_required = prepared.protection.required_approvals
        self._plan_steps(prepared.steps)
        if not prepared.passed:
            return await self._end(prepared, Phase.REJECTED, prepared.reason)
        if prepared.noop:
            return await self._end(prepared, Phase.DEPLOYED, prepared.reason, noop=True)

        if prepared.protection.protected:
            self._set_phase(Phase.AWAITING_APPROVAL)
            await workflow.wait_condition(
                lambda: (
                    self._rejection is not None
                    or len(self._approved_by) >= prepared.protection.required_approvals
                )
            )
            if self._rejection is not None:
                return await self._end(prepared, Phase.REJECTED, self._rejection)

        lock = LockRequest(app=request.app, environment=request.target, run=run)
        try:
            await self._wait_for_turn(lock)
            return await self._deploy(request, prepared, run)
        finally:
            await asyncio.shield(store_only("leave_queue", lock))

    async def _deploy(
        self, request: PromotionInput, prepared: PreparedPromotion, run: WorkflowRef
    ) -> PromotionResult:
        self._set_phase(Phase.DEPLOYING)
        started = await store(
            "begin_deployment",
            BeginDeployment(promotion_record_id=prepared.promotion_record_id, run=run),
            DeploymentStarted,
        )
        try:
            for position, spec in enumerate(prepared.steps):
                if spec.section == "verify":
                    self._set_phase(Phase.VERIFYING)
                outcome = await self._run_step(position, spec, started.deployment_id, run)
                if not outcome.succeeded:
                    what = "verification" if spec.section == "verify" else "step"
                    reason = f"{what} {spec.name!r} failed: {outcome.detail or 'no output'}"
                    return await self._compensate(request, prepared, started, reason)
        except asyncio.CancelledError:
            await asyncio.shield(self._compensate(request, prepared, started, "cancelled"))
            raise
        except ActivityError as exc:
            return await self._compensate(request, prepared, started, failure_reason(exc))
        await store_only(
            "finish_deployment",
            FinishDeployment(deployment_id=started.deployment_id, succeeded=True),
        )
        return await self._end(prepared, Phase.DEPLOYED, None, deployment_id=started.deployment_id)

    async def _compensate(
        self,
        request: PromotionInput,
        prepared: PreparedPromotion,
        started: DeploymentStarted,
        reason: str,
    ) -> PromotionResult:
        """Put this one environment back on its previous release, then report the failure."""
        self._set_phase(Phase.COMPENSATING)
        self._skip_pending()
        await store_only(
            "finish_deployment",
            FinishDeployment(deployment_id=started.deployment_id, succeeded=False, reason=reason),
        )
        compensation: RollbackResult | None = None
        try:
            compensation = await workflow.execute_child_workflow(
                "RollbackWorkflow",
                RollbackInput(
                    app=request.app,
                    environment=request.target,
                    requested_by=request.requested_by,
                    source="compensation",
                    reason=f"compensating {workflow.info().workflow_id}: {reason}",
                    compensating_deployment_id=started.deployment_id,
                ),
                id=f"{workflow.info().workflow_id}-compensation",
                result_type=RollbackResult,
            )
        except Exception as exc:  # reported in the result, never swallowed
            reason = f"{reason}; compensation failed too: {failure_reason(exc)}"
        else:
            if compensation.status == "rolled_back":
                reason = f"{reason}; {request.target} is back on {compensation.to_version}"
            else:
                reason = f"{reason}; {compensation.reason}"
        return await self._end(
            prepared,
            Phase.FAILED,
            reason,
            deployment_id=started.deployment_id,
            compensation=compensation,
        )

    async def _end(
        self,
        prepared: PreparedPromotion,
        phase: Phase,
        reason: str | None,
        *,
        noop: bool = False,
        deployment_id: int | None = None,
        compensation: RollbackResult | None = None,
    ) -> PromotionResult:
        assert self._request is not None
        self._status.reason = reason
        self._set_phase(phase)
        await store_only(
            "record_promotion_outcome",
            PromotionOutcome(
                promotion_record_id=prepared.promotion_record_id,
                status=phase.value,
                reason=reason,
                gates=prepared.gates,
            ),
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return PromotionResult.model_validate(
            {
                "status": phase.value,
                "app": self._request.app,
                "environment": self._request.target,
                "version": self._request.version,
                "reason": reason,
                "promotion_id": workflow.info().workflow_id,
                "noop": noop,
                "deployment_id": deployment_id,
                "gates": prepared.gates,
                "steps": self._status.steps,
                "compensation": compensation,
            }
        )
