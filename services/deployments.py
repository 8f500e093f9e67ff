"""Promotions, deployments and rollbacks as stored facts; the activities call these.

Every method is idempotent for its workflow run: a retried activity finds the row its
earlier attempt wrote and returns it instead of writing a second one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import AlreadyEnded, BadInput, NotFound, Refused, Unavailable
from models.pipeline import Pipeline
from models.promotion import (
    ConfigVersions,
    DeploymentStarted,
    GateResult,
    InterruptionCheck,
    InterruptionToVerify,
    PreparedPromotion,
    PromotionEnding,
    PromotionInput,
    PromotionOutcome,
    RollbackEnding,
    RollbackInput,
    RollbackPlan,
    RollbackTurn,
    RollbackTurnState,
    StepSpec,
    Turn,
    TurnRequest,
    WorkflowRef,
)
from models.resolution import StepContext
from models.review import DecisionRecord, SignatureCheck
from models.status import DeploymentKind, DeploymentStatus, PromotionEnd, PromotionState
from services import gates
from services.base import Service
from services.data import DATA_KINDS
from services.environments import not_pointing, protection_of
from services.queue import IsRunning
from store import audit
from store import data as data_repo
from store import deployments as deployment_repo
from store import environments as env_repo
from store import pointers as pointer_repo
from store import promotions as promotion_repo
from store import queue as queue_repo
from store import releases as release_repo
from store import step_runs as step_run_repo
from store.deployments import DeploymentState
from store.tables import App, Deployment, Environment, Promotion, Release, utcnow


class InvalidRequest(BadInput):
    """A start input naming an app, environment or release that does not exist."""


def step_specs(pipeline: Pipeline, sections: tuple[str, ...]) -> list[StepSpec]:
    return [
        StepSpec.model_validate(
            {
                "section": section,
                "index": i,
                "name": step.name,
                "kind": step.kind,
                "timeout_seconds": float(step.timeout_seconds),
            }
        )
        for section, steps in pipeline.sections()
        if section in sections
        for i, step in enumerate(steps)
    ]


def pipeline_of(release: Release) -> Pipeline:
    return Pipeline.model_validate(release.pipeline)


# What a rollback would do: its app and environment, the release it rolls back from, and the
# deployment whose state it restores (None: a compensation with nothing before it).
_Choice = tuple[App, Environment, int | None, DeploymentState | None]


def _verified(requester: SignatureCheck | None) -> bool:
    return requester is not None and requester.verified


def _stamped(plan: RollbackPlan, requester: SignatureCheck | None) -> RollbackPlan:
    """The plan, saying whether the stageline server signed the rollback's request."""
    return plan.model_copy(update={"requester_verified": _verified(requester)})


def _rollback_kind(request: RollbackInput) -> DeploymentKind:
    """A promotion's compensation, or a rollback asked for."""
    if request.compensating_deployment_id:
        return DeploymentKind.COMPENSATION
    return DeploymentKind.ROLLBACK


class DeploymentService(Service):
    async def _lookup(
        self, app: str, environment: str, version: str | None
    ) -> tuple[App, Environment, Release | None]:
        try:
            app_row, env = await self.app_and_environment(app, environment)
        except NotFound as exc:
            raise InvalidRequest(exc.message) from None
        release = None
        if version is not None:
            release = await release_repo.find_release(self.session, app_row.id, version)
            if release is None:
                known = [r.version for r in await release_repo.releases(self.session, app_row.id)]
                raise InvalidRequest(
                    f"release {app}@{version} does not exist; known versions: "
                    f"{', '.join(known[-10:]) or 'none yet'} (create it with 'stageline "
                    f"release create {app} {version} --pipeline FILE')"
                )
        return app_row, env, release

    async def check_request(self, app: str, environment: str, version: str | None) -> None:
        """Fail fast, before any workflow starts, on an unknown app, environment or release."""
        await self._lookup(app, environment, version)

    async def current_deployment_id(self, app: str, environment: str) -> int | None:
        """The deployment the environment's release pointer is on (None: no release yet);
        a rollback's id is derived from it, so a retried rollback is the same request."""
        app_row, env, _ = await self._lookup(app, environment, None)
        pointer = await pointer_repo.current_release(self.session, app_row.id, env.id)
        return pointer.deployment_id if pointer else None

    async def plan_train(self, app: str, version: str, through: str) -> list[str]:
        """The app's environments from its first up to `through`, in chain order."""
        app_row, env, _ = await self._lookup(app, through, version)
        chain = await self.work.environments.require_app_in(app_row, env, error=InvalidRequest)
        return chain[: chain.index(env.name) + 1]

    async def _app_chain(self, app: App) -> list[Environment]:
        chain = list(await env_repo.chain_of_app(self.session, app.id))
        self.work.remember(*chain)
        return chain

    # -- promotion -------------------------------------------------------------------------

    async def _gate_context(
        self, request: PromotionInput, run: WorkflowRef, requester: SignatureCheck | None
    ) -> tuple[gates.GateContext, Promotion | None]:
        """The gates' context, and the run's own promotion record if an earlier attempt
        wrote it."""
        app, env, release = await self._lookup(request.app, request.target, request.version)
        assert release is not None
        pipeline = pipeline_of(release)

        chain = await self._app_chain(app)

        async def preflight() -> None:
            # As `resolve` by name would, refused when the app does not point there (from the
            # chain already loaded).
            problem = not_pointing(app.name, env.name, [e.name for e in chain])
            if problem is not None:
                raise NotFound(problem)
            await self.work.resolution.resolve_for(env, app, pipeline.references())

        in_progress, mine = await promotion_repo.in_progress_and_mine(
            self.session, app.id, env.id, run.workflow_id, run.run_id
        )
        context = gates.GateContext(
            session=self.session,
            app=app,
            target=env,
            release=release,
            pipeline=pipeline,
            app_chain=chain,
            pointer=await pointer_repo.current_release(self.session, app.id, env.id),
            preflight=preflight,
            # A retry finds its own record under way: it never supersedes itself.
            in_progress=[p for p in in_progress if p.workflow_id != run.workflow_id],
            workflow_id=run.workflow_id,
            force=request.force,
            requester=requester,
        )
        return context, mine

    async def prepare_promotion(
        self, request: PromotionInput, run: WorkflowRef, requester: SignatureCheck | None = None
    ) -> PreparedPromotion:
        """Record the promotion and check its gates, in one unit of work. `requester`: whether
        the stageline server signed the request (`ReviewerKeyService.verify_request`, which
        the activity asks in this same unit); None: not checked, so not verified."""
        context, mine = await self._gate_context(request, run, requester)
        app, env, release = context.app, context.target, context.release
        results = await gates.evaluate(context)
        passed = all(g.passed for g in results)
        reason = None if passed else "; ".join(g.reason for g in results if not g.passed)
        noop_reason = await self._already_there(context, request.force)
        noop = passed and noop_reason is not None
        record = await self._record_promotion(
            self.session, mine, request, run, app, env, release, results, requester
        )
        eligible = await self.work.environments.eligible_reviewers(env)
        protection = protection_of(env)
        if mine is None and passed and not noop and protection.protected:
            # The "approval needed" notification (services/notifications.py): written with the
            # request, in this unit of work, by the activity, never by the workflow (whose
            # recorded histories must replay unchanged). Only protected promotions add it.
            _audit_promotion(
                self.session,
                app,
                env,
                release,
                request.requested_by,
                "promotion.awaiting_approval",
                {
                    "workflow_id": run.workflow_id,
                    "version": release.version,
                    "required_approvals": protection.required_approvals,
                    "reviewers": protection.reviewers,
                    "on_behalf_of": request.on_behalf_of,
                },
            )
        # Only older ones: a retried attempt may find newer promotions that started meanwhile.
        supersedes = (
            [
                WorkflowRef(workflow_id=p.workflow_id, run_id=p.run_id)
                for p in context.in_progress
                if p.id < record.id
            ]
            if passed and not noop
            else []
        )
        return PreparedPromotion(
            supersedes=supersedes,
            promotion_record_id=record.id,
            gates=results,
            passed=passed,
            noop=noop,
            reason=noop_reason if noop else reason,
            protection=protection,
            eligible_reviewers=eligible,
            wait_seconds=await self._soak_left(context),
            steps=step_specs(context.pipeline, ("steps", "verify")),
            requester_verified=_verified(requester),
        )

    @staticmethod
    async def _soak_left(context: gates.GateContext) -> float:
        """The wait timer: how long the release must still soak after its verification in the
        previous stage (0 when it has, or when the target has no wait)."""
        verified = await gates.verified_in_previous_stage(context)
        wait_minutes = context.target.wait_minutes
        if verified is None or not verified.verified_at or not wait_minutes:
            return 0.0
        soaked = verified.verified_at + timedelta(minutes=wait_minutes)
        return max(0.0, (soaked - utcnow()).total_seconds())

    async def _already_there(self, context: gates.GateContext, force: bool) -> str | None:
        """Why promoting the release would change nothing (it is current and verified in the
        target), or None. --force redeploys anyway."""
        pointer, app, env, release = context.pointer, context.app, context.target, context.release
        if force or pointer is None or pointer.release_id != release.id:
            return None
        current = await deployment_repo.get_deployment(self.session, pointer.deployment_id)
        if current is None or current.verified_at is None:
            return None
        return (
            f"{app.name}@{release.version} is already deployed and verified in "
            f"{env.name} (use --force to redeploy)"
        )

    @staticmethod
    async def _record_promotion(
        session: AsyncSession,
        record: Promotion | None,
        request: PromotionInput,
        run: WorkflowRef,
        app: App,
        env: Environment,
        release: Release,
        results: list[GateResult],
        requester: SignatureCheck | None,
    ) -> Promotion:
        """The run's promotion record (`record`: the one an earlier attempt wrote), with these
        gate results: added and audited on the first attempt, updated on a retry."""
        if record is not None:
            record.gates = [g.model_dump() for g in results]
            record.requester_verified = _verified(requester)
            return record
        record = Promotion(
            workflow_id=run.workflow_id,
            run_id=run.run_id,
            app_id=app.id,
            release_id=release.id,
            environment_id=env.id,
            requested_by=request.requested_by,
            requester_verified=_verified(requester),
            source=request.source,
            status=PromotionState.RUNNING,
            gates=[g.model_dump() for g in results],
            required_approvals=protection_of(env).required_approvals,
        )
        session.add(record)
        await session.flush()
        _audit_promotion(
            session,
            app,
            env,
            release,
            request.requested_by,
            "promotion.request",
            {
                "workflow_id": run.workflow_id,
                "source": request.source,
                "force": request.force,
                "on_behalf_of": request.on_behalf_of,
                "requester_verified": _verified(requester),
                # Why (not): the server's key that signed it, or what was wrong.
                "requester_check": requester.reason if requester is not None else None,
            },
        )
        return record

    async def _promotion(self, record_id: int) -> tuple[Promotion, App, Environment, Release]:
        """A promotion record with the app, environment and release it names."""
        found = await deployment_repo.with_subjects(self.session, Promotion, record_id)
        assert found is not None, f"promotion {record_id} vanished; records are never deleted"
        self.work.remember(found[1], found[2])
        return found

    async def check_interruption(self, check: InterruptionToVerify) -> InterruptionCheck:
        """Whether a supersede or preempt signal comes from what it claims: a later promotion
        of the same app into the same environment that passed its gates, or a rollback of that
        app and environment waiting in the queue. A forged signal is refused and audited."""
        mine = await promotion_repo.find_promotion_of_run(
            self.session, check.target.workflow_id, check.target.run_id
        )
        if mine is None:
            return InterruptionCheck(verified=False, reason="this run has no promotion record")
        reason = None
        if check.kind == "supersede":
            newer = await promotion_repo.later_promotion(self.session, mine, check.by)
            if newer is None or not all(g.get("passed") for g in newer.gates or []):
                reason = (
                    f"{check.by} is not a later promotion of the same app into the same "
                    "environment that passed its gates"
                )
        else:
            rollback = await queue_repo.waiting_rollback(self.session, mine, check.by)
            if rollback is None:
                reason = (
                    f"{check.by} is not a rollback of the same app and environment waiting "
                    "for its turn"
                )
        if reason is None:
            return InterruptionCheck(verified=True, reason=f"{check.kind} by {check.by}")
        _, app, env, release = await self._promotion(mine.id)
        _audit_promotion(
            self.session,
            app,
            env,
            release,
            check.by,
            f"promotion.{check.kind}_refused",
            {"workflow_id": mine.workflow_id, "reason": reason},
        )
        return InterruptionCheck(verified=False, reason=reason)

    async def refuse_activity(self, activity_type: str, caller: str, problem: str) -> None:
        """Audit an activity call that did not come from a run of stageline's workflows."""
        await self.audit(caller, "activity.refused", activity_type, detail={"reason": problem})

    async def record_promotion_outcome(
        self, outcome: PromotionOutcome, *, caller: WorkflowRef | None = None, noop: bool = False
    ) -> None:
        record_id = outcome.promotion_record_id
        record, app, env, release = await self._promotion(record_id)
        _owned_by(record.workflow_id, record.run_id, caller, f"promotion record {record_id}")
        if record.finished_at is not None:
            return
        record.status = outcome.status
        record.reason = outcome.reason
        if outcome.gates:
            record.gates = [g.model_dump() for g in outcome.gates]
        record.finished_at = utcnow()
        _audit_promotion(
            self.session,
            app,
            env,
            release,
            record.requested_by,
            "promotion.timed_out" if outcome.timed_out else f"promotion.{outcome.status}",
            {"workflow_id": record.workflow_id, "reason": outcome.reason}
            | ({"noop": True} if noop else {}),
        )

    async def take_turn(self, request: TurnRequest, is_running: IsRunning) -> Turn:
        """A promotion's queue, freeze and begin in this one unit of work: enter the queue;
        once it is this run's turn, check the freeze (unless overridden) and, when not
        frozen, begin the deployment. A refusal to begin rolls the whole unit back."""
        lock = request.lock
        state = await self.work.queue.enter(
            lock.app, lock.environment, lock.run, DeploymentKind.PROMOTION, is_running
        )
        if not state.acquired:
            return Turn(lock=state)
        freeze = None
        if request.freeze_at is not None:
            freeze = await self.work.environments.freeze_state(lock.environment, request.freeze_at)
            if freeze.frozen:
                return Turn(lock=state, freeze=freeze)
        if request.begin is None:
            return Turn(lock=state, freeze=freeze)
        started = await self.begin_deployment(request.begin.promotion_record_id, request.begin.run)
        return Turn(lock=state, freeze=freeze, started=started)

    async def end_promotion(
        self, ending: PromotionEnding, *, caller: WorkflowRef | None = None
    ) -> WorkflowRef | None:
        """A promotion's last database work, in this one unit of work: close its deployment
        (when it deployed), record its outcome, leave the queue (when it entered it).
        Returns the run waiting next in the queue, to be woken up."""
        if (finish := ending.finish) is not None:
            await self.finish_deployment(
                finish.deployment_id,
                finish.succeeded,
                finish.reason,
                finish.interrupted,
                caller=caller,
            )
        # Deployed without a deployment: the release was there already (a CI retry); the
        # audit entry says so, and sends no "deployed" notification.
        noop = finish is None and ending.outcome.status == PromotionEnd.DEPLOYED
        await self.record_promotion_outcome(ending.outcome, caller=caller, noop=noop)
        if ending.leave is None:
            return None
        return await self.work.queue.leave(ending.leave.run)

    async def record_decision(
        self, decision: DecisionRecord, *, caller: WorkflowRef | None = None
    ) -> None:
        """Audit a reviewer's decision, counted or refused, with who, when and the comment;
        only the promotion run it belongs to records it."""
        record, app, env, release = await self._promotion(decision.promotion_record_id)
        what = f"promotion record {decision.promotion_record_id}"
        _owned_by(record.workflow_id, record.run_id, caller, what)
        if caller is not None and decision.workflow_id != caller.workflow_id:
            raise Refused(f"the decision names {decision.workflow_id}, not its caller")
        if decision.accepted and decision.kind == "approve":
            record.approved_by = sorted({*record.approved_by, decision.reviewer})
        action = f"promotion.{decision.kind}" if decision.accepted else "promotion.refused"
        _audit_promotion(
            self.session,
            app,
            env,
            release,
            decision.reviewer,
            action,
            {
                "workflow_id": decision.workflow_id,
                "decision": decision.kind,
                "reason": decision.reason,
                "comment": decision.comment,
            },
        )

    async def begin_deployment(self, record_id: int, run: WorkflowRef) -> DeploymentStarted:
        """Pin the configuration versions this deployment will inject, and record it."""
        found = await deployment_repo.promotion_and_begun(
            self.session, record_id, run.workflow_id, run.run_id
        )
        assert found is not None, f"promotion {record_id} vanished; records are never deleted"
        record, app, env, release, existing = found
        if existing is not None:  # an earlier attempt began it
            return DeploymentStarted(
                deployment_id=existing.id, config=ConfigVersions.model_validate(existing.config)
            )
        self.work.remember(app, env)
        # Only the run that recorded the promotion, once its gates passed, deploys it.
        _owned_by(record.workflow_id, record.run_id, run, f"promotion record {record_id}")
        if record.finished_at is not None:
            raise AlreadyEnded(
                f"promotion record {record_id} already ended {record.status}",
                str(record.status),
                record.reason,
            )
        if not all(gate.get("passed") for gate in record.gates or []):
            raise Refused(f"promotion record {record_id} did not pass its gates")
        approved = len(record.approved_by or [])
        if record.required_approvals is not None and approved < record.required_approvals:
            # Retried, not refused: the run's own record_decision may still be landing
            # (it runs beside the run's next steps). Only a run that was approved gets past.
            raise Unavailable(
                f"promotion record {record_id} has {approved} of "
                f"{record.required_approvals} approvals on record; it cannot deploy yet"
            )
        # The gates found the app pointing here, and it cannot stop pointing here while this
        # promotion is under way (`set_app_environments` refuses).
        resolved = await self.work.resolution.resolve_for(
            env, app, pipeline_of(release).references()
        )
        pointer = await pointer_repo.current_release(self.session, app.id, env.id)
        deployment = Deployment(
            app_id=app.id,
            environment_id=env.id,
            release_id=release.id,
            previous_release_id=pointer.release_id if pointer else None,
            kind=DeploymentKind.PROMOTION,
            promotion_id=record.id,
            workflow_id=run.workflow_id,
            run_id=run.run_id,
            requested_by=record.requested_by,
            requester_verified=record.requester_verified,
            source=record.source,
            status=DeploymentStatus.RUNNING,
            config=resolved.versions().model_dump(mode="json"),
        )
        self.session.add(deployment)
        await self.session.flush()
        return DeploymentStarted(deployment_id=deployment.id, config=resolved.versions())

    async def finish_deployment(
        self,
        deployment_id: int,
        succeeded: bool,
        reason: str | None,
        interrupted: bool = False,
        *,
        caller: WorkflowRef | None = None,
    ) -> str:
        """Close a deployment, once; on success the environment's pointer moves to its
        release. Returns the status on record."""
        deployment, app, env, release = await self._own_deployment(deployment_id, caller)
        if deployment.finished_at is not None:
            return str(deployment.status)
        self._close(deployment, succeeded, reason, interrupted)
        if succeeded:
            await pointer_repo.set_current_release(
                self.session,
                deployment.app_id,
                deployment.environment_id,
                deployment.release_id,
                deployment.id,
            )
        if deployment.kind != DeploymentKind.PROMOTION:
            # A promotion's outcome is audited with its record; a rollback's or a
            # compensation's here.
            await self._audit_rollback_outcome(deployment, app, env, release)
        return str(deployment.status)

    @staticmethod
    def _close(
        deployment: Deployment, succeeded: bool, reason: str | None, interrupted: bool = False
    ) -> None:
        now = utcnow()
        deployment.finished_at = now
        deployment.reason = reason
        if succeeded:
            deployment.status = DeploymentStatus.DEPLOYED
            deployment.verified_at = now
        else:
            deployment.status = (
                DeploymentStatus.INTERRUPTED if interrupted else DeploymentStatus.FAILED
            )

    async def _audit_rollback_outcome(
        self, deployment: Deployment, app: App, env: Environment, release: Release
    ) -> None:
        previous = (
            await release_repo.release_by_id(self.session, deployment.previous_release_id)
            if deployment.previous_release_id
            else None
        )
        outcome = (
            PromotionState.ROLLED_BACK
            if deployment.status == DeploymentStatus.DEPLOYED
            else str(deployment.status)
        )
        audit.record(
            self.session,
            app.workspace_id,
            deployment.requested_by,
            f"{deployment.kind}.{outcome}",
            f"{app.name} in {env.name}: "
            f"{previous.version if previous else '-'} -> {release.version}",
            environment=env.name,
            app=app.name,
            detail={"workflow_id": deployment.workflow_id, "reason": deployment.reason},
        )

    async def _own_deployment(
        self, deployment_id: int, caller: WorkflowRef | None
    ) -> tuple[Deployment, App, Environment, Release]:
        """The deployment with its app, environment and release, refused unless it exists and
        belongs to the calling run."""
        found = await deployment_repo.with_subjects(self.session, Deployment, deployment_id)
        if found is None:
            raise Refused(f"deployment {deployment_id} does not exist")
        deployment = found[0]
        _owned_by(deployment.workflow_id, deployment.run_id, caller, f"deployment {deployment_id}")
        self.work.remember(found[1], found[2])
        return found

    # -- steps -----------------------------------------------------------------------------

    async def step_context(
        self, deployment_id: int, spec: StepSpec, *, caller: WorkflowRef | None = None
    ) -> StepContext:
        # A step decrypts its environment's secrets: only for the run deploying it.
        deployment, app, env, release = await self._own_deployment(deployment_id, caller)
        if deployment.finished_at is not None:
            raise Refused(f"deployment {deployment_id} is finished; its steps cannot run")
        step = getattr(pipeline_of(release), spec.section)[spec.index]
        refs = Pipeline(steps=[step]).references()
        config = await self.work.resolution.resolve_for(
            env,
            app,
            refs,
            decrypt=True,
            pinned=ConfigVersions.model_validate(deployment.config),
        )
        namespaces = await data_repo.namespaces(self.session, env, app, DATA_KINDS)
        return StepContext(
            app=app.name,
            environment=env.name,
            version=release.version,
            artifact=release.artifact,
            step=step,
            config=config,
            workflow_id=deployment.workflow_id,
            data_namespaces=namespaces,
        )

    async def record_step(
        self,
        deployment_id: int,
        spec: StepSpec,
        attempt: int,
        status: str,
        exit_code: int | None,
        output: str | None,
        started_at: datetime,
        finished_at: datetime,
    ) -> None:
        await step_run_repo.add_step_run(
            self.session,
            deployment_id,
            section=spec.section,
            position=spec.index,
            name=spec.name,
            kind=spec.kind,
            attempt=attempt,
            status=status,
            exit_code=exit_code,
            output=output,
            started_at=started_at,
            finished_at=finished_at,
        )

    # -- rollback --------------------------------------------------------------------------

    async def check_rollback(
        self, request: RollbackInput, requester: SignatureCheck | None = None
    ) -> RollbackPlan:
        """Whether a rollback has somewhere to go, before it queues: a rollback that will be
        refused must not take its place ahead of (and interrupt) a deploying promotion. A
        refusal is audited here; nothing else is written. `requester`: whether the stageline
        server signed the request (as for `prepare_promotion`)."""
        chosen = await self._choice(request, requester)
        plan = chosen if isinstance(chosen, RollbackPlan) else await self._checked(chosen)
        return _stamped(plan, requester)

    async def preview_rollback(
        self, app: str, environment: str, to_version: str | None = None
    ) -> RollbackPlan:
        """Where a rollback of `app` in `environment` would go now, to show before asking
        for one (nothing written, nothing audited)."""
        app_row, env, _ = await self._lookup(app, environment, None)
        request = RollbackInput(
            app=app, environment=environment, to_version=to_version, requested_by="preview"
        )
        try:
            current, target = await self._choose_rollback(app_row, env, request)
        except Refused as exc:
            return RollbackPlan(possible=False, refused=True, reason=exc.message)
        return await self._checked((app_row, env, current, target))

    async def _checked(self, chosen: _Choice) -> RollbackPlan:
        """The plan a choice makes, checked before queueing (nothing recorded yet)."""
        _, _, current, target = chosen
        if target is None:
            return RollbackPlan(possible=False, reason="nothing to compensate")
        to_release, from_release = await self._releases(target.release_id, current)
        return RollbackPlan(
            possible=True,
            from_version=from_release.version if from_release else None,
            to_version=to_release.version,
        )

    async def plan_rollback(
        self, request: RollbackInput, run: WorkflowRef, requester: SignatureCheck | None = None
    ) -> RollbackPlan:
        """Choose the release to go back to, record the rollback, and move the pointer; once
        per run (run again, it answers with what it recorded)."""
        existing = await self._rollback_of(request, run)
        if existing is not None:
            return await self._plan_of(existing)
        return _stamped(await self._record_rollback(request, run, requester), requester)

    async def _rollback_of(self, request: RollbackInput, run: WorkflowRef) -> Deployment | None:
        """The rollback (or compensation) this run recorded, if it did."""
        return await deployment_repo.find_deployment_of_run(
            self.session, run.workflow_id, run.run_id, _rollback_kind(request)
        )

    async def _record_rollback(
        self,
        request: RollbackInput,
        run: WorkflowRef,
        requester: SignatureCheck | None,
        chosen: _Choice | None = None,
        end_without_steps: bool = False,
    ) -> RollbackPlan:
        """Record the rollback of a run that has none on record, and move the pointer
        (`chosen`: what this unit of work already chose). `end_without_steps`: with no
        `activate:` steps to run it is recorded closed, deployed."""
        kind = _rollback_kind(request)
        if chosen is None:
            # Refused here, after it queued: the environment changed while it waited.
            choice = await self._choice(request, requester)
            if isinstance(choice, RollbackPlan):
                return choice
            chosen = choice
        app, env, current_release_id, target = chosen
        if target is None:
            reason = f"no earlier release in {env.name} to go back to; it stays without a release"
            audit.record(
                self.session,
                app.workspace_id,
                request.requested_by,
                "compensation.failed",
                f"{app.name} in {env.name}",
                environment=env.name,
                app=app.name,
                detail={"workflow_id": run.workflow_id, "reason": reason},
            )
            return RollbackPlan(possible=False, reason=reason)
        to_release, from_release = await self._releases(target.release_id, current_release_id)
        deployment = Deployment(
            app_id=app.id,
            environment_id=env.id,
            release_id=target.release_id,
            previous_release_id=current_release_id,
            kind=kind,
            restores_deployment_id=target.id,
            workflow_id=run.workflow_id,
            run_id=run.run_id,
            requested_by=request.requested_by,
            requester_verified=_verified(requester),
            source=request.source,
            status=DeploymentStatus.RUNNING,
            config=target.config,
            reason=request.reason,
        )
        ends = end_without_steps and not step_specs(pipeline_of(to_release), ("activate",))
        if ends:  # written once, closed
            self._close(deployment, True, None)
        self.session.add(deployment)
        await self.session.flush()
        # Instant: the pointer moves now; activation steps follow.
        await pointer_repo.set_current_release(
            self.session, app.id, env.id, target.release_id, deployment.id
        )
        audit.record(
            self.session,
            app.workspace_id,
            request.requested_by,
            f"{kind}.start",
            f"{app.name} in {env.name}: "
            f"{from_release.version if from_release else '-'} -> {to_release.version}",
            environment=env.name,
            app=app.name,
            detail={
                "workflow_id": run.workflow_id,
                "reason": request.reason,
                "restores_deployment": target.id,
            },
        )
        if ends:
            await self._audit_rollback_outcome(deployment, app, env, to_release)
        return await self._plan_of(deployment)

    async def _releases(
        self, release_id: int, other_id: int | None
    ) -> tuple[Release, Release | None]:
        """Two releases (the second may be None) in one query."""
        ids = [release_id] if other_id is None else [release_id, other_id]
        found = await release_repo.releases_by_id(self.session, ids)
        return found[release_id], (found[other_id] if other_id is not None else None)

    async def take_rollback_turn(
        self, turn: RollbackTurn, is_running: IsRunning, requester: SignatureCheck | None = None
    ) -> tuple[RollbackTurnState, WorkflowRef | None]:
        """A rollback's check, queue and plan in this one unit of work: check it has
        somewhere to go (the first time: a rollback that will be refused must not queue
        ahead of a deploying promotion), enter the queue and, once it is its turn, plan it;
        with `turn.end_without_steps` and no `activate:` steps, end it too (close and leave
        the queue). Returns the state, and the run waiting next when it left the queue.
        `requester`: whether the stageline server signed the request (as for
        `prepare_promotion`)."""
        state, following = await self._rollback_turn(turn, is_running, requester)
        if state.plan is not None:
            state.plan = _stamped(state.plan, requester)
        return state, following

    async def _rollback_turn(
        self, turn: RollbackTurn, is_running: IsRunning, requester: SignatureCheck | None
    ) -> tuple[RollbackTurnState, WorkflowRef | None]:
        request, run = turn.plan.request, turn.plan.run
        # Run again after it committed (its local activity retried), it finds what it
        # recorded, and does not check again against the state it made itself.
        existing = await self._rollback_of(request, run)
        chosen = None
        if turn.check and existing is None:
            choice = await self._choice(request, requester)
            if isinstance(choice, RollbackPlan):  # refused, audited
                return RollbackTurnState(plan=choice), None
            checked = await self._checked(choice)
            if not checked.possible:
                return RollbackTurnState(plan=checked), None
            chosen = choice  # entering the queue changes no deployment: the choice stands
        lock = await self.work.queue.enter(
            request.app, request.environment, run, DeploymentKind.ROLLBACK, is_running
        )
        if not lock.acquired:
            return RollbackTurnState(lock=lock), None
        ends = turn.end_without_steps
        if existing is None:
            plan = await self._record_rollback(
                request, run, requester, chosen, end_without_steps=ends
            )
        else:
            plan = await self._plan_of(existing)
            if ends and not plan.steps:
                await self.finish_deployment(existing.id, True, None, caller=run)  # once
        if not (ends and plan.possible and not plan.steps):
            return RollbackTurnState(lock=lock, plan=plan), None
        following = await self.work.queue.leave(run)
        return RollbackTurnState(lock=lock, plan=plan, ended=True), following

    async def end_rollback(
        self, ending: RollbackEnding, *, caller: WorkflowRef | None = None
    ) -> WorkflowRef | None:
        """Close the rollback's deployment (when it began one) and leave the queue, in this
        one unit of work; returns the run waiting next, to be woken up."""
        if (finish := ending.finish) is not None:
            await self.finish_deployment(
                finish.deployment_id, finish.succeeded, finish.reason, caller=caller
            )
        return await self.work.queue.leave(ending.leave.run)

    async def _choice(
        self, request: RollbackInput, requester: SignatureCheck | None
    ) -> _Choice | RollbackPlan:
        """What a rollback would do (see `_choose_rollback`), or the refused plan, audited.
        Where the environment accepts only verified requesters, a rollback the stageline
        server did not sign is refused first; a promotion's compensation is not a request
        (it restores what its promotion, which passed its gates, replaced) and always goes."""
        app, env, _ = await self._lookup(request.app, request.environment, None)
        if env.require_verified_requester and request.compensating_deployment_id is None:
            refusal = gates.unverified_requester_refusal(env.name, requester)
            if refusal is not None:
                self._audit_rollback_refused(app, env, request, refusal)
                return RollbackPlan(possible=False, refused=True, reason=refusal)
        try:
            current, target = await self._choose_rollback(app, env, request)
        except Refused as exc:
            self._audit_rollback_refused(app, env, request, exc.message)
            return RollbackPlan(possible=False, refused=True, reason=exc.message)
        return app, env, current, target

    async def _choose_rollback(
        self, app: App, env: Environment, request: RollbackInput
    ) -> tuple[int | None, DeploymentState | None]:
        """The release rolled back from and the deployment whose state is restored (None: a
        compensation with nothing before it). Raises Refused when a rollback cannot go on."""
        history = await deployment_repo.deployment_states(self.session, app.id, env.id)
        pointer = await pointer_repo.current_release(self.session, app.id, env.id)
        if request.compensating_deployment_id is not None:
            failed = await deployment_repo.get_deployment(
                self.session, request.compensating_deployment_id
            )
            if failed is None or (failed.app_id, failed.environment_id) != (app.id, env.id):
                raise InvalidRequest(
                    f"deployment {request.compensating_deployment_id} is not a deployment "
                    f"of {app.name} in {env.name}; nothing to compensate"
                )
            # The pointer has not moved during the failed deployment: restore what it
            # points at (or, if that was itself a rollback, what that restored).
            by_id = {d.id: d for d in history}
            at = by_id.get(pointer.deployment_id) if pointer else None
            return failed.release_id, (
                by_id.get(at.restores_deployment_id or 0, at) if at else None
            )
        if pointer is None:
            raise Refused(f"{app.name} has no release in {env.name} to roll back from")
        target = await self._rollback_target(
            app, env, history, pointer.deployment_id, request.to_version
        )
        return pointer.release_id, target

    def _audit_rollback_refused(
        self,
        app: App,
        env: Environment,
        request: RollbackInput,
        reason: str,
    ) -> None:
        """Added to the caller's unit of work, which commits it: nothing else changed."""
        audit.record(
            self.session,
            app.workspace_id,
            request.requested_by,
            "rollback.refused",
            f"{app.name} in {env.name}"
            + (f" -> {request.to_version}" if request.to_version else ""),
            environment=env.name,
            app=app.name,
            detail={"reason": reason, "to_version": request.to_version},
        )

    async def _plan_of(self, deployment: Deployment) -> RollbackPlan:
        release = await release_repo.release_by_id(self.session, deployment.release_id)
        previous = (
            await release_repo.release_by_id(self.session, deployment.previous_release_id)
            if deployment.previous_release_id
            else None
        )
        return RollbackPlan(
            possible=True,
            from_version=previous.version if previous else None,
            to_version=release.version,
            deployment_id=deployment.id,
            steps=step_specs(pipeline_of(release), ("activate",)),
            requester_verified=deployment.requester_verified,
        )

    async def _rollback_target(
        self,
        app: App,
        env: Environment,
        history: list[DeploymentState],
        current_deployment_id: int,
        to_version: str | None,
    ) -> DeploymentState:
        by_id = {d.id: d for d in history}
        current = by_id[current_deployment_id]
        good = [
            d
            for d in history
            if d.kind == DeploymentKind.PROMOTION and d.status == DeploymentStatus.DEPLOYED
        ]
        if to_version is not None:
            release = await release_repo.find_release(self.session, app.id, to_version)
            if release is None:
                raise InvalidRequest(f"release {app.name}@{to_version} does not exist")
            if release.id == current.release_id:
                raise Refused(f"{app.name}@{to_version} is already current in {env.name}")
            chosen = [d for d in good if d.release_id == release.id]
            if not chosen:
                raise Refused(
                    f"{app.name}@{to_version} was never deployed successfully in {env.name}; "
                    "a rollback only goes back to a release that ran there"
                )
            return chosen[-1]
        # The states the environment went through, up to now. A release a rollback or a
        # compensation moved away from is bad until a promotion deploys it again: a plain
        # rollback never goes back to it (`--to` still can).
        states = [
            d for d in history if d.status == DeploymentStatus.DEPLOYED and d.id <= current.id
        ]
        bad: set[int] = set()
        for state in states:
            if state.kind == DeploymentKind.PROMOTION:
                bad.discard(state.release_id)
            elif state.previous_release_id is not None:
                bad.add(state.previous_release_id)
        for state in states[::-1]:
            if state.release_id == current.release_id or state.release_id in bad:
                continue
            # Re-run what deployed that release (a rollback's state came from a promotion).
            return by_id.get(state.restores_deployment_id or 0, state)
        raise Refused(
            f"{app.name} has no earlier successful release in {env.name} to roll back to "
            "(releases rolled back out count as bad; name one with --to)"
        )


def _audit_promotion(
    session: AsyncSession,
    app: App,
    env: Environment,
    release: Release,
    actor: str,
    action: str,
    detail: dict[str, Any],
) -> None:
    """An audit entry about one promotion, named `app@version -> environment`."""
    audit.record(
        session,
        app.workspace_id,
        actor,
        action,
        f"{app.name}@{release.version} -> {env.name}",
        environment=env.name,
        app=app.name,
        detail=detail,
    )


def _owned_by(
    workflow_id: str | None, run_id: str | None, caller: WorkflowRef | None, what: str
) -> None:
    """Refuse a run that touches a record another run made (a forged or replayed call)."""
    if caller is not None and (workflow_id, run_id) != (caller.workflow_id, caller.run_id):
        raise Refused(f"{what} belongs to another workflow run than {caller.workflow_id}")
