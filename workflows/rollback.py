"""RollbackWorkflow: move one environment's pointer back, then re-run `activate:` steps.

Used on its own (`stageline rollback`) and as PromotionWorkflow's compensation.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.promotion import (
        FinishDeployment,
        LockRequest,
        Phase,
        PlanRollback,
        RollbackEnding,
        RollbackInput,
        RollbackPlan,
        RollbackResult,
        RollbackTurn,
        WorkflowRef,
    )
    from models.text import head, tail
    from workflows import search_attributes as sa
    from workflows.base import Orchestration, failure_reason
    from workflows.contract import (
        CHECK_ROLLBACK,
        END_ROLLBACK,
        FINISH_DEPLOYMENT,
        LEAVE_QUEUE,
        PLAN_ROLLBACK,
        ROLLBACK,
        TAKE_ROLLBACK_TURN,
        ActivityContract,
    )
    from workflows.options import only_input, store, store_only, validate_input
    from workflows.outcomes import outcome_error
    from workflows.patches import CHECK_PATCH, ONE_TRANSACTION_PATCH, OUTCOME_PATCH


# How much of a failed activate step's output its reason quotes (the end).
REASON_OUTPUT = 1_000


@workflow.defn(name=ROLLBACK.name)
class RollbackWorkflow(Orchestration):
    """Input: RollbackInput (`ROLLBACK.input`), taken raw and validated inside; result:
    RollbackResult."""

    kind = ROLLBACK.kind

    @workflow.run
    async def run(self, *args: Any) -> RollbackResult:
        self._patches.start()
        request = validate_input(ROLLBACK.input, only_input(args, ROLLBACK.name))
        info = workflow.info()
        if request.compensating_deployment_id is not None and info.parent is None:
            # Only a promotion's own compensation (its child) may skip the queue.
            raise ApplicationError(
                "invalid input: compensating_deployment_id is set only by a promotion's "
                "compensation; leave it out to roll back",
                type="InvalidInput",
                non_retryable=True,
            )
        run = WorkflowRef(workflow_id=info.workflow_id, run_id=info.run_id)
        self._status.app, self._status.environment = request.app, request.environment
        self._status.requested_by = request.requested_by
        workflow.upsert_search_attributes(
            [sa.APP.value_set(request.app), sa.ENVIRONMENT.value_set(request.environment)]
        )
        # A compensation runs inside its promotion's turn in the queue; a rollback waits
        # for its own.
        standalone = request.compensating_deployment_id is None
        lock = LockRequest(app=request.app, environment=request.environment, run=run)
        if standalone and self._patches.patched(ONE_TRANSACTION_PATCH):
            result = await self._in_turn(request, run, lock)
        else:
            result = await self._one_by_one(request, run, lock, standalone)
        if result.status != "rolled_back" and self._patches.patched(OUTCOME_PATCH):
            # Not rolled back: the workflow ends Failed, so it never looks like a success.
            raise outcome_error(ROLLBACK.kind, result.status, result.reason, result)
        return result

    async def _in_turn(
        self, request: RollbackInput, run: WorkflowRef, lock: LockRequest
    ) -> RollbackResult:
        """Check, queue and plan in one `take_rollback_turn` (again, without the check, each
        time the queue moves while it waits), activate, then close the deployment and leave
        the queue in one `end_rollback`. With no `activate:` steps the turn ends it all.

        Whether it ended is the activity's recorded answer, so a history from before the
        turn could end (two local activities) replays as it ran."""
        turn = RollbackTurn(plan=PlanRollback(request=request, run=run), end_without_steps=True)
        try:
            while True:
                try:
                    state = await store(TAKE_ROLLBACK_TURN, turn)
                except ApplicationError as exc:
                    return self._refused(request, exc)
                if state.plan is not None:
                    self._status.requester_verified = state.plan.requester_verified
                if state.lock is None:  # the check said no: it never queued
                    assert state.plan is not None
                    return self._impossible(request, state.plan, None)
                self._lock = lock
                if not state.lock.acquired:
                    turn = turn.model_copy(update={"check": False})
                    await self._queued(state.lock.holder)
                    continue
                assert state.plan is not None
                self._status.waiting_for = None
                self._set_phase(Phase.DEPLOYING)
                if not state.plan.possible:
                    return self._impossible(request, state.plan, state.plan)
                if state.ended:
                    self._lock = None  # left with the turn
                return await self._activate(request, run, state.plan, ended=state.ended)
        finally:
            if self._lock is not None:  # not left with the end of the rollback
                await asyncio.shield(store_only(LEAVE_QUEUE, lock))

    async def _one_by_one(
        self, request: RollbackInput, run: WorkflowRef, lock: LockRequest, standalone: bool
    ) -> RollbackResult:
        """Histories from before ONE_TRANSACTION_PATCH, and compensations (which run in
        their promotion's turn): check, queue, plan, close, leave one by one."""
        refusal = None
        if standalone and self._patches.patched(CHECK_PATCH):
            # Checked before it queues: a rollback that has nowhere to go must not go ahead
            # of (and interrupt) a promotion that is deploying.
            refusal = await self._check(request, run)
        if refusal is not None:
            result = refusal
        else:
            try:
                if standalone:
                    await self._wait_for_turn(lock)  # a rollback is never interrupted
                result = await self._roll_back(request, run)
            finally:
                if standalone:
                    await asyncio.shield(store_only(LEAVE_QUEUE, lock))
        return result

    async def _check(self, request: RollbackInput, run: WorkflowRef) -> RollbackResult | None:
        """The refused (or failed) result of a rollback that cannot go on, or None."""
        plan = await self._plan(CHECK_ROLLBACK, request, run)
        if isinstance(plan, RollbackResult):
            return plan
        if not plan.possible:
            return self._impossible(request, plan, None)
        return None

    def _impossible(
        self, request: RollbackInput, plan: RollbackPlan, shown: RollbackPlan | None
    ) -> RollbackResult:
        """A plan that cannot go on: refused by a rule, or failed (nothing to go back to)."""
        return self._result(request, "refused" if plan.refused else "failed", plan.reason, shown)

    def _refused(self, request: RollbackInput, exc: ApplicationError) -> RollbackResult:
        """A plan's business error as the rollback's result; any other error goes on."""
        if exc.type not in ("Refused", "InvalidInput"):
            raise exc
        status = "refused" if exc.type == "Refused" else "failed"
        return self._result(request, status, exc.message, None)

    async def _plan(
        self,
        activity: ActivityContract[PlanRollback, RollbackPlan],
        request: RollbackInput,
        run: WorkflowRef,
    ) -> RollbackPlan | RollbackResult:
        try:
            plan = await store(activity, PlanRollback(request=request, run=run))
        except ApplicationError as exc:
            return self._refused(request, exc)
        self._status.requester_verified = plan.requester_verified
        return plan

    async def _roll_back(self, request: RollbackInput, run: WorkflowRef) -> RollbackResult:
        self._set_phase(Phase.DEPLOYING)
        plan = await self._plan(PLAN_ROLLBACK, request, run)
        if isinstance(plan, RollbackResult):
            return plan
        if not plan.possible:
            return self._impossible(request, plan, plan)
        return await self._activate(request, run, plan)

    async def _activate(
        self, request: RollbackInput, run: WorkflowRef, plan: RollbackPlan, ended: bool = False
    ) -> RollbackResult:
        """Run the `activate:` steps of the release the pointer moved to, then close the
        deployment (and leave the queue with it, when this run holds a turn in `_lock`);
        `ended`: there were none, and the deployment is closed already."""
        assert plan.deployment_id is not None and plan.to_version is not None
        workflow.upsert_search_attributes([sa.VERSION.value_set(plan.to_version)])
        self._status.version = plan.to_version
        self._plan_steps(plan.steps)
        reason = None
        for position, spec in enumerate(plan.steps):
            try:
                outcome = await self._run_step(position, spec, plan.deployment_id, run)
            except ActivityError as exc:
                problem = head(failure_reason(exc), REASON_OUTPUT)
                reason = f"activate step {spec.name!r} failed: {problem}"
                break
            if not outcome.succeeded:
                output = tail(outcome.detail or "no output", REASON_OUTPUT)
                reason = f"activate step {spec.name!r} failed: {output}"
                break
        self._skip_pending()
        finish = FinishDeployment(
            deployment_id=plan.deployment_id, succeeded=reason is None, reason=reason
        )
        if ended:
            pass
        elif self._lock is not None:
            await store_only(END_ROLLBACK, RollbackEnding(finish=finish, leave=self._lock))
            self._lock = None  # left
        else:
            await store_only(FINISH_DEPLOYMENT, finish)
        return self._result(request, "failed" if reason else "rolled_back", reason, plan)

    def _result(
        self, request: RollbackInput, status: str, reason: str | None, plan: RollbackPlan | None
    ) -> RollbackResult:
        self._status.reason = reason
        phases = {"rolled_back": Phase.ROLLED_BACK, "refused": Phase.REJECTED}
        self._set_phase(phases.get(status, Phase.FAILED))
        return RollbackResult.model_validate(
            {
                "status": status,
                "app": request.app,
                "environment": request.environment,
                "from_version": plan.from_version if plan else None,
                "to_version": plan.to_version if plan else None,
                "reason": reason,
                "deployment_id": plan.deployment_id if plan else None,
                "steps": self._status.steps,
                "requester_verified": self._status.requester_verified,
            }
        )
