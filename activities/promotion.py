"""The activities of PromotionWorkflow and RollbackWorkflow, as methods holding their clients."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import datetime

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError, RPCStatusCode

from activities import step_http, step_run, step_tool
from activities.masking import MAX_OUTPUT_CHARS, mask
from activities.sandbox import StepSandbox
from models.errors import AlreadyEnded, StagelineError, Unavailable
from models.promotion import (
    BeginDeployment,
    DeploymentFinished,
    DeploymentStarted,
    FinishDeployment,
    InterruptionCheck,
    InterruptionToVerify,
    LockRequest,
    LockState,
    PlanRollback,
    PreparedPromotion,
    PrepareInput,
    PromotionEnding,
    PromotionOutcome,
    RollbackEnding,
    RollbackPlan,
    RollbackTurn,
    RollbackTurnState,
    StepOutcome,
    StepRequest,
    TrainInput,
    TrainPlan,
    Turn,
    TurnRequest,
    WorkflowRef,
)
from models.review import (
    DecisionRecord,
    DecisionToVerify,
    FreezeQuery,
    FreezeState,
    SignatureCheck,
)
from models.settings import Settings
from models.status import StepStatus
from models.text import tail
from services.deployments import InvalidRequest
from services.reviewers import promotion_request, rollback_request, train_request
from services.unit import Units, Work
from store.database import Database
from store.tables import utcnow
from vault.keys import KeyProvider
from workflows import contract
from workflows.contract import PromotionHandle, QueuedHandle

HEARTBEAT_EVERY = 1.0  # the worker sends at most one every 2 s (see worker.main)
# The only workflows whose runs may call these activities (see `_caller`).
STAGELINE_WORKFLOWS = contract.WORKFLOW_TYPES

log = logging.getLogger("stageline.activities")


@contextmanager
def business_errors() -> Iterator[None]:
    """Turn stageline's own errors into ApplicationErrors the workflows can branch on.

    A user's mistake or a refusal is final (non-retryable); an unreachable database is not.
    """
    try:
        yield
    except Unavailable as exc:
        raise ApplicationError(exc.message, type="Unavailable") from None
    except StagelineError as exc:
        kind = "InvalidInput" if isinstance(exc, InvalidRequest) else type(exc).__name__
        # An expected outcome, not a fault: one line in the worker's log, and BENIGN so the
        # SDK keeps its traceback at DEBUG.
        where = activity.info().activity_type if activity.in_activity() else "stageline"
        log.info("%s: %s: %s", where, kind, exc.message)
        raise ApplicationError(
            exc.message,
            # What the workflow needs to end as recorded.
            *((exc.status, exc.reason) if isinstance(exc, AlreadyEnded) else ()),
            type=kind,
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        ) from None


@asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat while a step runs, so a dead worker is noticed within the heartbeat timeout.
    The first beat comes after HEARTBEAT_EVERY, not at once: the SDK sends a first heartbeat
    to the server straight away, and a step that ends within a second (most do) needs none."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


class PromotionActivities:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        key: KeyProvider,
        client: Client | None = None,
        *,
        step_sandbox: StepSandbox | None,
    ) -> None:
        """`step_sandbox`: where `run:` steps execute (activities.sandbox); None only when
        the operator opted out of sandboxing."""
        self.step_sandbox = step_sandbox
        self.units = Units(db, settings, key)
        self.client = client

    @asynccontextmanager
    async def _work(
        self, *, write: bool = True, one_statement: bool = False
    ) -> AsyncIterator[Work]:
        """One unit of work (one transaction) for one activity, its errors turned into
        ApplicationErrors the workflow can branch on."""
        with business_errors():
            unit = self.units.write(one_statement=one_statement) if write else self.units.read()
            async with unit as work:
                yield work

    async def _caller(self, run: WorkflowRef | None = None, *, local: bool = True) -> WorkflowRef:
        """The workflow run this activity serves; refused (and audited) unless it is a run of
        one of stageline's workflows, calling it the way they do: database activities only as
        local activities (which nobody outside the worker can start), and never on behalf of
        another run. Anyone with access to the Temporal namespace can execute an activity by
        name (`temporal activity execute`); that must not deploy or forge a record."""
        info = activity.info()
        problem = None
        if info.workflow_type not in STAGELINE_WORKFLOWS:
            problem = "it runs only inside stageline's workflows, not " + (
                f"from a {info.workflow_type}" if info.workflow_type else "on its own"
            )
        elif local and not info.is_local:
            problem = "it runs only as a local activity of stageline's workflows"
        caller = WorkflowRef(workflow_id=info.workflow_id or "", run_id=info.workflow_run_id or "")
        if problem is None and run is not None and run != caller:
            problem = f"it names the run {run.workflow_id}/{run.run_id}, not the one calling it"
        if problem is None:
            return caller
        who = f"{info.workflow_type or 'standalone'}:{info.workflow_id or info.activity_id}"
        log.warning("refused activity %s from %s: %s", info.activity_type, who, problem)
        with suppress(Exception):  # the refusal stands even if the audit cannot be written
            async with self.units.write() as w:
                await w.deployments.refuse_activity(info.activity_type, who, problem)
        raise ApplicationError(
            f"refused: activity {info.activity_type}: {problem}",
            type="Refused",
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,  # logged above, in one line
        )

    @activity.defn(name=contract.PREPARE_PROMOTION.name)
    async def prepare_promotion(self, request: PrepareInput) -> PreparedPromotion:
        caller = await self._caller(request.run)
        # Bound to this workflow as Temporal runs it (namespace, id; its parent from the
        # workflow's own info), never to what the input says.
        asked = promotion_request(
            request.promotion,
            namespace=self._namespace(),
            workflow_id=caller.workflow_id,
            parent=request.parent,
        )
        async with self._work() as w:
            requester = (
                SignatureCheck(verified=False, reason=asked)
                if isinstance(asked, str)
                else await w.reviewers.verify_request(asked)
            )
            prepared = await w.deployments.prepare_promotion(
                request.promotion, request.run, requester
            )
        for older in prepared.supersedes:
            if (handle := self._promotion(older)) is not None:
                with suppress(RPCError):  # it finished meanwhile: nothing to stop
                    await handle.supersede(request.run.workflow_id)
        return prepared

    def _promotion(self, target: WorkflowRef) -> PromotionHandle | None:
        if self.client is None:
            return None
        return PromotionHandle.of(self.client, target.workflow_id, target.run_id)

    @activity.defn(name=contract.PLAN_TRAIN.name)
    async def plan_train(self, request: TrainInput) -> TrainPlan:
        caller = await self._caller()
        asked = train_request(request, namespace=self._namespace(), workflow_id=caller.workflow_id)
        async with self._work(write=False) as w:
            stages = await w.deployments.plan_train(request.app, request.version, request.through)
            requester = await w.reviewers.verify_request(asked)
        return TrainPlan(stages=stages, requester_verified=requester.verified)

    @activity.defn(name=contract.RECORD_DECISION.name)
    async def record_decision(self, decision: DecisionRecord) -> None:
        caller = await self._caller()
        async with self._work() as w:
            await w.deployments.record_decision(decision, caller=caller)

    @activity.defn(name=contract.VERIFY_DECISION.name)
    async def verify_decision(self, decision: DecisionToVerify) -> SignatureCheck:
        """Check a signed decision against its reviewer's active keys (crypto stays out of
        workflow code); a bad signature is an answer, not an error."""
        caller = await self._caller()
        if (decision.workflow_id, decision.run_id) != (caller.workflow_id, caller.run_id):
            return SignatureCheck(verified=False, reason="the decision is for another run")
        async with self._work(write=False) as w:
            return await w.reviewers.verify_decision(decision)

    @activity.defn(name=contract.FREEZE_STATE.name)
    async def freeze_state(self, query: FreezeQuery) -> FreezeState:
        await self._caller()
        async with self._work(write=False) as w:
            return await w.environments.freeze_state(query.environment, query.at)

    @activity.defn(name=contract.RECORD_PROMOTION_OUTCOME.name)
    async def record_promotion_outcome(self, outcome: PromotionOutcome) -> None:
        caller = await self._caller()
        async with self._work() as w:
            await w.deployments.record_promotion_outcome(outcome, caller=caller)

    async def _is_running(self, workflow_id: str, run_id: str) -> bool:
        if self.client is None:
            return True
        try:
            described = await self.client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return described.status == WorkflowExecutionStatus.RUNNING

    @activity.defn(name=contract.VERIFY_INTERRUPTION.name)
    async def verify_interruption(self, check: InterruptionToVerify) -> InterruptionCheck:
        """Whether a supersede or preempt signal really comes from a later promotion or a
        rollback of the same app and environment (anyone with namespace access can send one)."""
        await self._caller(check.target)
        async with self._work() as w:
            return await w.deployments.check_interruption(check)

    @activity.defn(name=contract.ENTER_QUEUE.name)
    async def enter_queue(self, request: LockRequest) -> LockState:
        await self._caller(request.run)
        # The kind comes from the caller's workflow type, whatever its workflow id says.
        kind = (
            contract.ROLLBACK.kind
            if contract.kind_of(activity.info().workflow_type) == contract.ROLLBACK.kind
            else contract.PROMOTION.kind
        )
        async with self._work() as w:
            state = await w.queue.enter(
                request.app, request.environment, request.run, kind, self._is_running
            )
        if state.preempt is not None:
            await self._preempt(state.preempt, request.run)
        return state

    async def _preempt(self, holder: WorkflowRef, by: WorkflowRef) -> None:
        """Tell the promotion holding the environment that a rollback takes precedence."""
        if (handle := self._promotion(holder)) is not None:
            with suppress(RPCError):  # it finished meanwhile: nothing to stop
                await handle.preempt(by.workflow_id)

    @activity.defn(name=contract.TAKE_TURN.name)
    async def take_turn(self, request: TurnRequest) -> Turn:
        await self._caller(request.lock.run)
        if request.begin is not None:
            await self._caller(request.begin.run)
        async with self._work() as w:
            return await w.deployments.take_turn(request, self._is_running)

    @activity.defn(name=contract.LEAVE_QUEUE.name)
    async def leave_queue(self, request: LockRequest) -> None:
        await self._caller(request.run)
        async with self._work() as w:
            following = await w.queue.leave(request.run)
        await self._wake(following)

    @activity.defn(name=contract.END_PROMOTION.name)
    async def end_promotion(self, ending: PromotionEnding) -> None:
        caller = await self._caller(ending.leave.run if ending.leave is not None else None)
        async with self._work() as w:
            following = await w.deployments.end_promotion(ending, caller=caller)
        await self._wake(following)

    async def _wake(self, following: WorkflowRef | None) -> None:
        """Tell the run next in the queue that its turn may have come (once committed)."""
        if following is not None and self.client is not None:
            # It polls too: a missed wake-up costs seconds, not correctness.
            with suppress(RPCError):
                await QueuedHandle.of(
                    self.client, following.workflow_id, following.run_id
                ).queue_moved()

    @activity.defn(name=contract.BEGIN_DEPLOYMENT.name)
    async def begin_deployment(self, request: BeginDeployment) -> DeploymentStarted:
        await self._caller(request.run)
        async with self._work() as w:
            return await w.deployments.begin_deployment(request.promotion_record_id, request.run)

    @activity.defn(name=contract.FINISH_DEPLOYMENT.name)
    async def finish_deployment(self, request: FinishDeployment) -> DeploymentFinished:
        caller = await self._caller()
        async with self._work() as w:
            status = await w.deployments.finish_deployment(
                request.deployment_id,
                request.succeeded,
                request.reason,
                request.interrupted,
                caller=caller,
            )
        return DeploymentFinished(status=status)

    @activity.defn(name=contract.CHECK_ROLLBACK.name)
    async def check_rollback(self, request: PlanRollback) -> RollbackPlan:
        caller = await self._caller(request.run)
        async with self._work() as w:
            requester = await self._rollback_requester(w, request, caller)
            return await w.deployments.check_rollback(request.request, requester)

    def _namespace(self) -> str:
        """The namespace of the workflow this activity serves (what request signatures are
        bound to)."""
        info = activity.info()
        return info.workflow_namespace or (self.client.namespace if self.client else "")

    async def _rollback_requester(
        self, w: Work, request: PlanRollback, caller: WorkflowRef
    ) -> SignatureCheck:
        """Whether the stageline server signed this rollback's request, for this workflow."""
        asked = rollback_request(
            request.request,
            namespace=self._namespace(),
            workflow_id=caller.workflow_id,
        )
        return await w.reviewers.verify_request(asked)

    @activity.defn(name=contract.PLAN_ROLLBACK.name)
    async def plan_rollback(self, request: PlanRollback) -> RollbackPlan:
        caller = await self._caller(request.run)
        async with self._work() as w:
            requester = await self._rollback_requester(w, request, caller)
            return await w.deployments.plan_rollback(request.request, request.run, requester)

    @activity.defn(name=contract.TAKE_ROLLBACK_TURN.name)
    async def take_rollback_turn(self, turn: RollbackTurn) -> RollbackTurnState:
        caller = await self._caller(turn.plan.run)
        async with self._work() as w:
            requester = await self._rollback_requester(w, turn.plan, caller)
            state, following = await w.deployments.take_rollback_turn(
                turn, self._is_running, requester
            )
        if state.lock is not None and state.lock.preempt is not None:
            await self._preempt(state.lock.preempt, turn.plan.run)
        await self._wake(following)
        return state

    @activity.defn(name=contract.END_ROLLBACK.name)
    async def end_rollback(self, ending: RollbackEnding) -> None:
        caller = await self._caller(ending.leave.run)
        async with self._work() as w:
            following = await w.deployments.end_rollback(ending, caller=caller)
        await self._wake(following)

    @activity.defn(name=contract.RUN_STEP.name)
    async def run_step(self, request: StepRequest) -> StepOutcome:
        """Decrypt the step's own configuration, run it, and return masked output only."""
        started = utcnow()
        caller = await self._caller(local=False)
        async with self._work(write=False) as w:
            ctx = await w.deployments.step_context(
                request.deployment_id, request.step, caller=caller
            )
        secrets = ctx.config.secret_values()
        exit_code: int | None = None
        try:
            async with heartbeating():
                if ctx.step.run is not None:
                    ran = await step_run.run_step(
                        ctx,
                        request.run_id,
                        activity.heartbeat,
                        sandbox=self.step_sandbox,
                        secrets=secrets,
                    )
                    ok, exit_code, output = ran.exit_code == 0, ran.exit_code, ran.output
                    if ran.timed_out:
                        output += f"\n[timed out after {ctx.step.timeout_seconds}s; killed]"
                elif ctx.step.tool is not None:
                    called = await step_tool.call_tool(ctx, request.run_id, activity.heartbeat)
                    ok, exit_code, output = called.ok, called.status, called.output
                else:
                    checked = await step_http.check_http(ctx, activity.heartbeat)
                    ok, exit_code, output = checked.ok, checked.status, checked.output
        except asyncio.CancelledError:
            # Interrupted (a rollback took over): its process is gone; keep it on the timeline.
            await asyncio.shield(
                self._record_step(
                    request, "cancelled", None, "cancelled: interrupted", started, utcnow()
                )
            )
            raise
        except Exception as exc:
            # Whatever went wrong, its message leaves this activity masked.
            raise ApplicationError(
                mask(f"{type(exc).__name__}: {exc}", secrets), type="StepError"
            ) from None
        detail = tail(mask(output, secrets), MAX_OUTPUT_CHARS)
        finished = utcnow()
        status = StepStatus.SUCCEEDED if ok else StepStatus.FAILED
        await self._record_step(request, status, exit_code, detail, started, finished)
        return StepOutcome(
            succeeded=ok,
            exit_code=exit_code,
            detail=detail,
            started_at=started,
            finished_at=finished,
        )

    async def _record_step(
        self,
        request: StepRequest,
        status: str,
        exit_code: int | None,
        output: str | None,
        started: datetime,
        finished: datetime,
    ) -> None:
        async with self._work(one_statement=True) as w:  # one INSERT
            await w.deployments.record_step(
                request.deployment_id,
                request.step,
                activity.info().attempt,
                status,
                exit_code,
                output,
                started,
                finished,
            )

    def all(self) -> list[object]:
        return [
            self.prepare_promotion,
            self.plan_train,
            self.record_decision,
            self.verify_decision,
            self.freeze_state,
            self.verify_interruption,
            self.record_promotion_outcome,
            self.end_promotion,
            self.enter_queue,
            self.take_turn,
            self.leave_queue,
            self.begin_deployment,
            self.finish_deployment,
            self.check_rollback,
            self.plan_rollback,
            self.take_rollback_turn,
            self.end_rollback,
            self.run_step,
        ]
