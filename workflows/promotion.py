"""PromotionWorkflow: gates, approvals, the queue, the pipeline, verification, compensation."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from models.promotion import (
        BeginDeployment,
        DeploymentStarted,
        FinishDeployment,
        Interruption,
        InterruptionCheck,
        InterruptionToVerify,
        LockRequest,
        Phase,
        PreparedPromotion,
        PrepareInput,
        PromotionEnding,
        PromotionInput,
        PromotionOutcome,
        PromotionResult,
        RollbackInput,
        RollbackResult,
        TurnRequest,
        WorkflowRef,
    )
    from models.review import (
        Decision,
        DecisionKind,
        DecisionOutcome,
        DecisionRecord,
        DecisionRequest,
        DecisionToVerify,
        FreezeQuery,
        FreezeState,
        SignatureCheck,
    )
    from models.text import duration, head, tail
    from workflows import search_attributes as sa
    from workflows.base import Orchestration, failure_reason
    from workflows.contract import (
        BEGIN_DEPLOYMENT,
        END_PROMOTION,
        FINISH_DEPLOYMENT,
        FREEZE_STATE,
        LEAVE_QUEUE,
        PREPARE_PROMOTION,
        PROMOTION,
        RECORD_DECISION,
        RECORD_PROMOTION_OUTCOME,
        ROLLBACK,
        TAKE_TURN,
        VERIFY_DECISION,
        VERIFY_INTERRUPTION,
        Signal,
        Update,
    )
    from workflows.options import (
        only_input,
        store,
        store_only,
        store_or_none,
        validate_input,
    )
    from workflows.outcomes import outcome_error, outcome_of
    from workflows.patches import (
        ENDED_AS_RECORDED_PATCH,
        ONE_TRANSACTION_PATCH,
        OUTCOME_PATCH,
        VERIFY_INTERRUPTIONS_PATCH,
    )
    from workflows.review import Review

# A reason quotes at most this much of a failed step's output (the end, where failures are
# explained), and is at most REASON_LIMIT in all: it travels in the compensation's input, the
# result, the failure message and the audit log.
REASON_OUTPUT = 1_000
REASON_LIMIT = 2_000

# A freeze with no end is looked at again this often (`stageline env unfreeze` also wakes
# held promotions at once).
FREEZE_POLL = timedelta(minutes=5)


@workflow.defn(name=PROMOTION.name)
class PromotionWorkflow(Orchestration):
    """Input: PromotionInput (`PROMOTION.input`), taken raw and validated inside, so a
    malformed start from the UI fails the workflow at once; result: PromotionResult."""

    def __init__(self) -> None:
        super().__init__()
        self._request: PromotionInput | None = None
        self._prepared: PreparedPromotion | None = None
        self._review: Review | None = None
        self._approval_timed_out = False
        self._freeze_changed = False
        self._superseded_by: str | None = None
        self._preempted_by: str | None = None
        # Refusals the review policy does not keep: malformed and unverified signals.
        self._signal_refusals: list[str] = []

    # -- reviewers: plain signals (UI, temporal CLI) and an update (stageline approve) -------

    @workflow.signal(
        name=Signal.APPROVE,
        description='A reviewer approves: {"reviewer": "alice", "comment": "optional"}. '
        "Counts only from an eligible reviewer (not the requester, unless self-review is "
        "allowed); a refusal shows in the status query.",
    )
    async def approve(self, *args: Any) -> None:
        await self._decide(Signal.APPROVE, *args)

    @workflow.signal(
        name=Signal.REJECT,
        description='A reviewer rejects: {"reviewer": "alice", "comment": "why"}. The '
        "promotion ends rejected before anything is deployed.",
    )
    async def reject(self, *args: Any) -> None:
        await self._decide(Signal.REJECT, *args)

    @workflow.signal(
        name=Signal.OVERRIDE,
        description="Break-glass through a deploy freeze: "
        '{"reviewer": "bob", "comment": "why"}, from a reviewer other than the requester, '
        "with a comment; audited.",
    )
    async def override(self, *args: Any) -> None:
        await self._decide(Signal.OVERRIDE, *args)

    @workflow.update(
        name=Update.DECIDE,
        description='approve, reject or override with an answer: {"kind": "approve", '
        '"reviewer": "alice", "comment": "optional"}; returns whether the decision counted '
        "and why (what `stageline approve` uses).",
    )
    async def decide(self, raw: Any) -> DecisionOutcome:
        request = DecisionRequest.model_validate(raw)
        return await self._decide(request.kind, request.model_dump(exclude={"kind"}))

    @decide.validator
    def _validate_decide(self, raw: Any) -> None:
        DecisionRequest.model_validate(raw)  # malformed: rejected before it reaches history

    @workflow.signal(
        name=Signal.SUPERSEDE,
        description="Internal, sent by stageline itself: a newer promotion into the same app "
        "and environment passed its gates, so this one, if not yet deploying, ends superseded.",
    )
    async def supersede(self, *args: Any) -> None:
        by = await self._verified_interruption(Signal.SUPERSEDE, args)
        if by is not None:
            self._superseded_by = by
            self._status.superseded_by = by

    @workflow.signal(
        name=Signal.PREEMPT,
        description="Internal, sent by stageline itself: a rollback of the same app and "
        "environment takes precedence; stop deploying at once.",
    )
    async def preempt(self, *args: Any) -> None:
        by = await self._verified_interruption(Signal.PREEMPT, args)
        if by is not None:
            self._preempted_by = by
            self._status.interrupted_by = by

    async def _verified_interruption(
        self, kind: Literal["supersede", "preempt"], args: tuple[Any, ...]
    ) -> str | None:
        """Who a supersede or preempt signal says stops this promotion, once checked: anyone
        with access to the namespace can send one, so it counts only if the database shows a
        later promotion or a waiting rollback of the same app and environment under that name.
        A handler never raises: a forged or malformed signal is refused in the status query."""
        try:
            by = Interruption.model_validate(only_input(args, kind)).by
        except (ValidationError, ApplicationError):
            self._refuse_signal(f"malformed {kind} ignored")
            return None
        if not self._patches.patched(VERIFY_INTERRUPTIONS_PATCH):
            return by  # recorded before verification: replay as it ran
        info = workflow.info()
        try:
            check = await store(
                VERIFY_INTERRUPTION,
                InterruptionToVerify(
                    kind=kind,
                    target=WorkflowRef(workflow_id=info.workflow_id, run_id=info.run_id),
                    by=by,
                ),
            )
        except (ActivityError, ApplicationError) as exc:
            check = InterruptionCheck(verified=False, reason=failure_reason(exc))
        if not check.verified:
            self._refuse_signal(f"{kind} from {by} refused: {check.reason}")
            return None
        return by

    @workflow.signal(
        name=Signal.FREEZE_CHANGED,
        description="Internal, sent by stageline itself (`stageline env freeze|unfreeze`): "
        "look at the environment's freezes again now.",
    )
    def freeze_changed(self, *_: Any) -> None:
        self._freeze_changed = True

    async def _decide(self, kind: DecisionKind, *args: Any) -> DecisionOutcome:
        # A signal handler must never raise (that fails the workflow task, which Temporal
        # retries forever): a decision that cannot count is recorded as refused instead.
        try:
            decision = Decision.model_validate(only_input(args, kind))
        except (ApplicationError, ValidationError) as exc:
            problem = (
                exc.message.removeprefix("invalid input: ")
                if isinstance(exc, ApplicationError)
                else exc.errors()[0]["msg"]
            )
            reason = f"malformed {kind} ignored: {problem}"
            self._refuse_signal(reason)
            return DecisionOutcome(accepted=False, reason=reason)
        if self._review is None or self._prepared is None:
            reason = "the promotion is not ready for decisions yet; try again in a moment"
            self._status.refusals.append(f"{kind} by {decision.reviewer} refused: {reason}")
            return DecisionOutcome(accepted=False, reason=reason)
        check: SignatureCheck | None = None
        if self._review.needs_verification(kind, decision, self._status.phase):
            # Only in signed mode, which no recorded history has: unsigned flows schedule
            # exactly the commands they always did.
            check = await self._verify(kind, decision)
        # The phase is read again: it may have moved on while the signature was checked.
        outcome = self._review.decide(kind, decision, self._status.phase, check)
        self._sync_review()
        recorded = outcome.reason
        if outcome.accepted and check is not None:
            recorded = f"{recorded}; {check.reason}"  # which key signed it, for the audit log
        await store_only(
            RECORD_DECISION,
            DecisionRecord(
                promotion_record_id=self._prepared.promotion_record_id,
                workflow_id=workflow.info().workflow_id,
                kind=kind,
                reviewer=decision.reviewer,
                accepted=outcome.accepted,
                reason=recorded,
                comment=decision.comment,
            ),
        )
        return outcome

    async def _verify(self, kind: DecisionKind, decision: Decision) -> SignatureCheck:
        """Check a signed decision in an activity (crypto and the key store are I/O). It is
        bound to this run as the workflow knows it, not as the sender claims."""
        assert decision.signature is not None
        info = workflow.info()
        try:
            return await store(
                VERIFY_DECISION,
                DecisionToVerify(
                    namespace=info.namespace,
                    workflow_id=info.workflow_id,
                    run_id=info.run_id,
                    kind=kind,
                    reviewer=decision.reviewer,
                    comment=decision.comment,
                    signature=decision.signature,
                ),
            )
        except (ActivityError, ApplicationError) as exc:
            # A handler must never raise: the decision is refused and can be sent again.
            return SignatureCheck(
                verified=False,
                reason=f"the signature could not be checked now ({failure_reason(exc)}); "
                "send the decision again",
            )

    def _refuse_signal(self, reason: str) -> None:
        self._signal_refusals.append(reason)
        self._status.refusals.append(reason)
        self._publish()

    def _sync_review(self) -> None:
        assert self._review is not None
        self._status.approvals = list(self._review.approvals)
        self._status.may_approve = self._review.may_approve()
        self._status.refusals = [*self._signal_refusals, *self._review.refusals]
        self._status.override = self._review.override
        self._publish()

    # -- the run ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, *args: Any) -> PromotionResult:
        self._patches.start()
        request = validate_input(PROMOTION.input, only_input(args, PROMOTION.name))
        self._request = request
        info = workflow.info()
        run = WorkflowRef(workflow_id=info.workflow_id, run_id=info.run_id)
        self._status.app, self._status.version = request.app, request.version
        self._status.environment, self._status.requested_by = request.target, request.requested_by
        self._status.on_behalf_of = request.on_behalf_of
        workflow.upsert_search_attributes(
            [
                sa.APP.value_set(request.app),
                sa.ENVIRONMENT.value_set(request.target),
                sa.VERSION.value_set(request.version),
                sa.STATUS.value_set(Phase.GATES.value),
            ]
        )
        self._set_phase(Phase.GATES)
        # The run that started this one as its child (a train), as Temporal recorded it: a
        # train's signature counts only in its own stages.
        parent = (
            WorkflowRef(workflow_id=info.parent.workflow_id, run_id=info.parent.run_id)
            if info.parent is not None
            else None
        )
        # An unknown app, environment or release fails the workflow itself (InvalidInput).
        prepared = await store(
            PREPARE_PROMOTION, PrepareInput(promotion=request, run=run, parent=parent)
        )
        self._prepared = prepared
        # From the activity's recorded answer: whatever the key store says later, a replay
        # shows what it said then.
        self._status.requester_verified = prepared.requester_verified
        self._status.gates = prepared.gates
        self._status.approvals_required = prepared.protection.required_approvals
        self._status.signed_approvals_required = prepared.protection.require_signed_approvals
        self._plan_steps(prepared.steps)
        if not prepared.passed:
            return await self._end(prepared, Phase.REJECTED, prepared.reason)
        if prepared.noop:
            return await self._end(prepared, Phase.DEPLOYED, prepared.reason, noop=True)

        self._review = Review(
            requester=request.requested_by,
            on_behalf_of=request.on_behalf_of,
            environment=request.target,
            eligible=prepared.eligible_reviewers,
            required=prepared.protection.required_approvals,
            allow_self_review=prepared.protection.allow_self_review,
            signed=prepared.protection.require_signed_approvals,
        )
        self._sync_review()
        stop = await self._protection(prepared)
        if stop is not None:
            return await self._end(prepared, *stop)

        lock = LockRequest(app=request.app, environment=request.target, run=run)
        self._lock = lock
        try:
            if self._patches.patched(ONE_TRANSACTION_PATCH):
                turn = await self._take_turn(prepared, lock)
                if isinstance(turn, PromotionResult):
                    return turn
                if not isinstance(turn, DeploymentStarted):
                    return await self._end(prepared, *turn)
                self._set_phase(Phase.DEPLOYING)
                return await self._run_steps(request, prepared, run, turn)
            return await self._queue_and_deploy(request, prepared, run, lock)
        finally:
            if self._lock is not None:  # not left with the outcome (`_end`)
                await asyncio.shield(store_only(LEAVE_QUEUE, lock))

    async def _queue_and_deploy(
        self,
        request: PromotionInput,
        prepared: PreparedPromotion,
        run: WorkflowRef,
        lock: LockRequest,
    ) -> PromotionResult:
        """Histories from before ONE_TRANSACTION_PATCH: queue, freeze, begin one by one."""
        assert self._review is not None
        while True:
            if not await self._wait_for_turn(lock):
                stopped = self._stopped()
                assert stopped is not None
                return await self._end(prepared, *stopped)
            # A freeze may have begun while this waited in the queue.
            if self._review.override is not None or not (await self._freeze()).frozen:
                break
            await store_only(LEAVE_QUEUE, lock)
            stop = await self._hold_while_frozen(request.target)
            if stop is not None:
                return await self._end(prepared, *stop)
        return await self._deploy(request, prepared, run)

    def _interruption(self) -> str | None:
        stopped = self._stopped()
        return None if stopped is None else stopped[1]

    def _stopped(self) -> tuple[Phase, str] | None:
        """Why this promotion must end before deploying: a rejection or a newer promotion."""
        if self._review is not None and self._review.rejection is not None:
            return Phase.REJECTED, self._review.rejection
        if self._superseded_by is not None:
            return Phase.SUPERSEDED, (
                f"superseded by {self._superseded_by}, a newer promotion into the same "
                "environment; a stale release never deploys after a newer one"
            )
        return None

    async def _protection(self, prepared: PreparedPromotion) -> tuple[Phase, str] | None:
        """Approvals, then the wait timer, then freezes: why to stop, or None to go on."""
        review = self._review
        assert review is not None and self._request is not None
        protection = prepared.protection
        if protection.protected:
            self._set_phase(Phase.AWAITING_APPROVAL)
            self._sync_review()
            timeout = (
                timedelta(minutes=protection.approval_timeout_minutes)
                if protection.approval_timeout_minutes
                else None
            )
            try:
                await workflow.wait_condition(
                    lambda: self._stopped() is not None or review.approved,
                    timeout=timeout,
                    timeout_summary="approval timeout",
                )
            except TimeoutError:
                self._approval_timed_out = True
                return Phase.REJECTED, (
                    f"timed out: {len(review.approvals)} of {review.required} approval(s) "
                    f"within {duration(protection.approval_timeout_minutes)}"
                )
            if (stopped := self._stopped()) is not None:
                return stopped
        if prepared.wait_seconds > 0:
            # A durable timer: it survives restarts and is measured in workflow time.
            wait = timedelta(seconds=prepared.wait_seconds)
            self._status.not_before = workflow.now() + wait
            self._set_phase(Phase.WAITING)
            with suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._stopped() is not None, timeout=wait, timeout_summary="wait timer"
                )
            if (stopped := self._stopped()) is not None:
                return stopped
        if self._patches.patched(ONE_TRANSACTION_PATCH):
            return None  # the freeze is checked with the turn in the queue (`take_turn`)
        return await self._hold_while_frozen(self._request.target)

    async def _freeze(self) -> FreezeState:
        assert self._request is not None
        return await store(
            FREEZE_STATE, FreezeQuery(environment=self._request.target, at=workflow.now())
        )

    async def _hold_while_frozen(self, environment: str) -> tuple[Phase, str] | None:
        """Wait while a deploy freeze holds the environment, unless overridden."""
        review = self._review
        assert review is not None
        while True:
            if (stopped := self._stopped()) is not None:
                return stopped
            state = await self._freeze()
            if not state.frozen or review.override is not None:
                self._status.frozen_until = None
                return None
            self._status.frozen_until = state.until
            self._status.reason = f"{environment} is frozen: {state.reason}"
            self._set_phase(Phase.FROZEN)
            self._freeze_changed = False
            # Wake when the window ends; `freeze_changed` wakes it earlier on any change.
            timeout = (
                FREEZE_POLL
                if state.until is None
                else max(state.until - workflow.now(), timedelta(seconds=1))
            )
            with suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: (
                        self._freeze_changed
                        or review.override is not None
                        or self._stopped() is not None
                    ),
                    timeout=timeout,
                    timeout_summary="deploy freeze",
                )
            self._status.reason = None

    async def _take_turn(
        self, prepared: PreparedPromotion, lock: LockRequest
    ) -> DeploymentStarted | PromotionResult | tuple[Phase, str]:
        """Wait for this run's turn in the queue, held by freezes, and begin the deployment:
        each try is one `take_turn` (queue, freeze and begin in one transaction). Returns the
        deployment begun, the result it ended with, or why to stop."""
        review = self._review
        assert review is not None and self._request is not None
        while True:
            if (stopped := self._stopped()) is not None:
                return stopped
            if self._preempted_by is not None:
                return await self._interrupted(prepared, None)
            request = TurnRequest(
                lock=lock,
                freeze_at=None if review.override is not None else workflow.now(),
                begin=BeginDeployment(
                    promotion_record_id=prepared.promotion_record_id, run=lock.run
                ),
            )
            try:
                turn = await store(TAKE_TURN, request)
            except ApplicationError as exc:
                if exc.type != "AlreadyEnded":
                    raise
                status, reason = exc.details  # see `_begin`
                return await self._end(prepared, Phase(status), reason)
            if turn.started is not None:
                self._status.waiting_for = None
                return turn.started
            if turn.lock.acquired:  # frozen: give the turn up while it holds
                self._status.waiting_for = None
                await store_only(LEAVE_QUEUE, lock)
                stop = await self._hold_while_frozen(self._request.target)
                if stop is not None:
                    return stop
                continue
            await self._queued(turn.lock.holder)

    async def _begin(
        self, prepared: PreparedPromotion, run: WorkflowRef
    ) -> DeploymentStarted | PromotionResult:
        try:
            return await store(
                BEGIN_DEPLOYMENT,
                BeginDeployment(promotion_record_id=prepared.promotion_record_id, run=run),
            )
        except ApplicationError as exc:
            if exc.type != "AlreadyEnded" or not self._patches.patched(ENDED_AS_RECORDED_PATCH):
                raise
            # An earlier attempt of a workflow task of this run ended the promotion (say,
            # superseded) in the database, then the task failed and this attempt went another
            # way: the record holds, so the run ends as recorded rather than failing.
            status, reason = exc.details
            return await self._end(prepared, Phase(status), reason)

    async def _deploy(
        self, request: PromotionInput, prepared: PreparedPromotion, run: WorkflowRef
    ) -> PromotionResult:
        if self._preempted_by is not None:
            return await self._interrupted(prepared, None)
        self._set_phase(Phase.DEPLOYING)
        started = await self._begin(prepared, run)
        if isinstance(started, PromotionResult):
            return started
        return await self._run_steps(request, prepared, run, started)

    async def _run_steps(
        self,
        request: PromotionInput,
        prepared: PreparedPromotion,
        run: WorkflowRef,
        started: DeploymentStarted,
    ) -> PromotionResult:
        try:
            for position, spec in enumerate(prepared.steps):
                if spec.section == "verify":
                    self._set_phase(Phase.VERIFYING)
                step = asyncio.ensure_future(
                    self._run_step(position, spec, started.deployment_id, run)
                )
                await workflow.wait_condition(
                    lambda: step.done() or self._preempted_by is not None  # noqa: B023
                )
                if not step.done():
                    # A rollback takes over: stop the step (its process is killed) and go.
                    step.cancel()
                    with suppress(asyncio.CancelledError, ActivityError):
                        await step
                    return await self._interrupted(prepared, started)
                outcome = step.result()
                if not outcome.succeeded:
                    what = "verification" if spec.section == "verify" else "step"
                    output = tail(outcome.detail or "no output", REASON_OUTPUT)
                    reason = f"{what} {spec.name!r} failed: {output}"
                    return await self._compensate(request, prepared, started, reason)
                if self._preempted_by is not None:
                    return await self._interrupted(prepared, started)
        except asyncio.CancelledError:
            await asyncio.shield(self._compensate(request, prepared, started, "cancelled"))
            raise
        except ActivityError as exc:
            reason = head(failure_reason(exc), REASON_OUTPUT)
            return await self._compensate(request, prepared, started, reason)
        return await self._deployed(prepared, started)

    async def _deployed(
        self, prepared: PreparedPromotion, started: DeploymentStarted
    ) -> PromotionResult:
        """Every step and verification passed: close the deployment and end deployed."""
        finish = FinishDeployment(deployment_id=started.deployment_id, succeeded=True)
        if self._patches.patched(ONE_TRANSACTION_PATCH):
            return await self._end(
                prepared, Phase.DEPLOYED, None, deployment_id=started.deployment_id, finish=finish
            )
        await store_only(FINISH_DEPLOYMENT, finish)
        return await self._end(prepared, Phase.DEPLOYED, None, deployment_id=started.deployment_id)

    async def _interrupted(
        self, prepared: PreparedPromotion, started: DeploymentStarted | None
    ) -> PromotionResult:
        """A rollback of this environment took precedence. No compensation: the rollback
        decides where the environment goes, and two rollbacks must not fight."""
        assert self._request is not None
        reason = (
            f"interrupted by {self._preempted_by}, a rollback of {self._request.target}, which "
            "takes precedence; no compensation runs"
        )
        self._skip_pending()
        if started is not None:
            finished = await store_or_none(
                FINISH_DEPLOYMENT,
                FinishDeployment(
                    deployment_id=started.deployment_id,
                    succeeded=False,
                    reason=reason,
                    interrupted=True,
                ),
            )
            if finished is not None and finished.status == "deployed":
                # An earlier attempt of this task finished the deployment before it saw the
                # rollback's signal (the task was lost, e.g. its worker stalled): it is
                # deployed, and the rollback runs after it. Report what is on record.
                return await self._end(
                    prepared, Phase.DEPLOYED, None, deployment_id=started.deployment_id
                )
        return await self._end(
            prepared,
            Phase.ROLLED_BACK,
            reason,
            deployment_id=started.deployment_id if started else None,
        )

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
            FINISH_DEPLOYMENT,
            FinishDeployment(deployment_id=started.deployment_id, succeeded=False, reason=reason),
        )
        compensation: RollbackResult | None = None
        try:
            compensation = await workflow.execute_child_workflow(
                ROLLBACK.name,
                RollbackInput(
                    app=request.app,
                    environment=request.target,
                    requested_by=request.requested_by,
                    source="compensation",
                    reason=head(
                        f"compensating {workflow.info().workflow_id}: {reason}", REASON_LIMIT
                    ),
                    compensating_deployment_id=started.deployment_id,
                ),
                id=f"{workflow.info().workflow_id}-compensation",
                result_type=ROLLBACK.result,
            )
        except Exception as exc:  # reported in the result, never swallowed
            # A rollback that did not roll back ends as a failure carrying its result.
            compensation = outcome_of(exc, RollbackResult)
            if compensation is None:
                reason = f"{reason}; compensation failed too: {failure_reason(exc)}"
        if compensation is not None:
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
        finish: FinishDeployment | None = None,
    ) -> PromotionResult:
        """Record how the promotion ended and build its result. `finish`: the deployment
        to close with it (given only where ONE_TRANSACTION_PATCH holds)."""
        assert self._request is not None
        self._status.reason = reason
        self._set_phase(phase)
        outcome = PromotionOutcome(
            promotion_record_id=prepared.promotion_record_id,
            status=phase.value,
            reason=reason,
            gates=prepared.gates,
            timed_out=self._approval_timed_out,
        )
        if self._patches.patched(ONE_TRANSACTION_PATCH):
            ending = PromotionEnding(outcome=outcome, finish=finish, leave=self._lock)
            await store_only(END_PROMOTION, ending)
            self._lock = None  # left
        else:
            await store_only(RECORD_PROMOTION_OUTCOME, outcome)
        await workflow.wait_condition(workflow.all_handlers_finished)
        result = PromotionResult.model_validate(
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
                "requester_verified": prepared.requester_verified,
            }
        )
        if phase != Phase.DEPLOYED and self._patches.patched(OUTCOME_PATCH):
            # Not deployed: the workflow ends Failed, so it never looks like a success.
            raise outcome_error(PROMOTION.kind, phase.value, reason, result)
        return result
