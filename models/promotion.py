"""What goes in and out of the workflows and activities: small, JSON-friendly, no secrets.

A person can type a `PromotionInput` into the Temporal UI's "Start workflow" form; the
workflow validates it itself so that bad input fails the workflow, not its task.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from models.names import KeyName, ResourceName, VersionName
from models.review import FreezeState
from models.status import PromotionEnd, RollbackEnd, StepStatus
from models.workspace import Protection

Source = Literal["cli", "ci", "ui", "api", "train", "compensation"]


class Phase(StrEnum):
    VALIDATING = "validating"
    GATES = "gates"
    AWAITING_APPROVAL = "awaiting_approval"
    WAITING = "waiting"  # the wait timer: soak time after the previous stage
    FROZEN = "frozen"  # a deploy freeze holds it, until it ends or an override is approved
    QUEUED = "queued"  # waiting for another deployment of the same app and environment
    DEPLOYING = "deploying"
    VERIFYING = "verifying"
    COMPENSATING = "compensating"
    DEPLOYED = "deployed"
    FAILED = "failed"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"
    SUPERSEDED = "superseded"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {Phase.DEPLOYED, Phase.FAILED, Phase.REJECTED, Phase.ROLLED_BACK, Phase.SUPERSEDED}

# Base64 of a 64-byte Ed25519 signature is 88 characters; room for whitespace around it.
SIGNATURE_MAX = 200


class StartInput(BaseModel):
    """A workflow's start input. Fields added later are left out of its JSON while unset, so
    the same request reads exactly as it did before they existed, and a worker that predates
    them (its inputs forbid unknown fields) still accepts it during an upgrade."""

    _LATER_FIELDS: ClassVar[tuple[str, ...]] = ("requester_signature", "signed_for")

    @model_serializer(mode="wrap")
    def _without_unset_later_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self._LATER_FIELDS:
                if name in data and data[name] is None:
                    del data[name]
        return data


class SignedFor(BaseModel):
    """The request a stage's `requester_signature` was made for: its release train's. A
    train passes its own signature on to each stage with this; it counts only in a promotion
    that train really started (its parent, as Temporal records it)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["train"] = "train"
    workflow_id: str = Field(min_length=1, max_length=255)
    through: ResourceName


class PromotionInput(StartInput):
    """Input of PromotionWorkflow, e.g. {"app": "web", "version": "1.4.0", "target": "staging",
    "requested_by": "ci@acme"}."""

    model_config = ConfigDict(extra="forbid")

    app: ResourceName
    version: VersionName
    target: ResourceName
    requested_by: str = Field(min_length=1, max_length=200)
    # Who the requester says they act for (`--requested-by` naming someone else): recorded,
    # and barred from approving it just like the requester.
    on_behalf_of: str | None = Field(default=None, min_length=1, max_length=200)
    source: Source = "ui"
    force: bool = False
    # Set by the stageline server: its signature of this request
    # (`services.signatures.request_message`) for the person or CI token that signed in.
    # Optional, so a start typed into the Temporal UI validates; without it (or when it does
    # not verify) the requester is a claim, and an environment with
    # `require_verified_requester` refuses the promotion at its gates.
    requester_signature: str | None = Field(default=None, max_length=SIGNATURE_MAX)
    # With a train's signature: the train it was made for (set by ReleaseTrainWorkflow).
    signed_for: SignedFor | None = None


def _id(kind: str, *parts: str) -> str:
    """Readable, deterministic and unambiguous: parts joined by `-`, a `-` inside a part
    doubled. Names never start with `-`, so a run of hyphens always reads one way: `web-4`
    version `0.0` is `promote-web--4-0.0-dev`, `web` version `4-0.0` is
    `promote-web-4--0.0-dev`. Names without hyphens read as they always did."""
    return "-".join([kind, *(part.replace("-", "--") for part in parts)])


def promotion_workflow_id(app: str, version: str, target: str) -> str:
    """Readable and deterministic, so a retried CI job attaches to the running promotion."""
    return _id("promote", app, version, target)


def rollback_workflow_id(app: str, environment: str, suffix: str) -> str:
    return _id("rollback", app, environment, suffix)


def rollback_suffix(current: int | None, to_version: str | None) -> str:
    """Without a request id, a rollback is named for where it starts (the deployment now
    current) and where it goes: two started at once are one, but once it has moved the
    environment, the same command again is a new rollback, one release further back."""
    start = f"from-{current}" if current is not None else "from-nothing"
    return f"{start}-to-{to_version}" if to_version else start


class GateResult(BaseModel):
    name: str
    passed: bool
    reason: str


class StepSpec(BaseModel):
    """What the workflow needs to know of a step to schedule it (never its values)."""

    section: Literal["steps", "activate", "verify"]
    index: int
    name: str
    kind: Literal["run", "tool", "http"]
    timeout_seconds: float


class StepProgress(BaseModel):
    section: str
    name: str
    kind: str
    status: StepStatus = StepStatus.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    detail: str | None = None


class ConfigRef(BaseModel):
    """One configuration entry a deployment ran with: its version and where it came from."""

    model_config = ConfigDict(frozen=True)

    version: int
    scope: Literal["env", "app"]


class ConfigVersions(BaseModel):
    """Names and versions of configuration, as recorded on a deployment (never values)."""

    model_config = ConfigDict(frozen=True)

    vars: dict[KeyName, ConfigRef] = Field(default_factory=dict)
    secrets: dict[KeyName, ConfigRef] = Field(default_factory=dict)
    tools: dict[str, ConfigRef] = Field(default_factory=dict)


class PromotionStatus(BaseModel):
    """What the `status` query answers."""

    promotion_id: str
    app: str | None = None
    version: str | None = None
    environment: str | None = None
    requested_by: str | None = None
    on_behalf_of: str | None = None
    # The stageline server signed this request for `requested_by`, who signed in to it; False:
    # the requester is only what the start input claims (the Temporal UI, the embedded CLI).
    requester_verified: bool = False
    phase: Phase = Phase.VALIDATING
    gates: list[GateResult] = Field(default_factory=list)
    approvals_required: int = 0
    signed_approvals_required: bool = False  # only decisions signed by a registered key count
    approvals: list[str] = Field(default_factory=list)
    # Who may still approve: eligible reviewers who have not, less the requester if barred.
    may_approve: list[str] = Field(default_factory=list)
    refusals: list[str] = Field(default_factory=list)
    override: str | None = None
    superseded_by: str | None = None
    interrupted_by: str | None = None
    not_before: datetime | None = None
    frozen_until: datetime | None = None
    waiting_for: str | None = None
    steps: list[StepProgress] = Field(default_factory=list)
    reason: str | None = None


class RollbackInput(StartInput):
    """Input of RollbackWorkflow, e.g. {"app": "web", "environment": "production",
    "to_version": null, "requested_by": "oncall"}."""

    model_config = ConfigDict(extra="forbid")

    app: ResourceName
    environment: ResourceName
    to_version: VersionName | None = None
    requested_by: str = Field(min_length=1, max_length=200)
    source: Source = "ui"
    reason: str | None = Field(default=None, max_length=2000)
    # Set by PromotionWorkflow when it compensates: the failed deployment to undo.
    compensating_deployment_id: int | None = None
    # The stageline server's signature of this request, as on PromotionInput.
    requester_signature: str | None = Field(default=None, max_length=SIGNATURE_MAX)


class RollbackTurn(BaseModel):
    """Input of the `take_rollback_turn` activity: check the rollback has somewhere to go
    (the first time only), enter the queue and, once it is this rollback's turn, plan it
    (record it and move the pointer), in one transaction."""

    plan: PlanRollback
    check: bool = True
    # With no `activate:` steps to run, close the rollback and leave the queue in the same
    # transaction (`ended` in the state): one local activity where there were two.
    end_without_steps: bool = False


class RollbackTurnState(BaseModel):
    """What `take_rollback_turn` found: no `lock` when the check refused it (it never
    queued); else the queue's answer and, once acquired, the plan."""

    lock: LockState | None = None
    plan: RollbackPlan | None = None
    # Closed (deployed) and out of the queue already: asked with `end_without_steps`.
    ended: bool = False


class RollbackEnding(BaseModel):
    """Input of the `end_rollback` activity: close the rollback's deployment (when it began
    one) and leave the queue, in one transaction."""

    finish: FinishDeployment | None = None
    leave: LockRequest


class RollbackResult(BaseModel):
    status: RollbackEnd
    app: str
    environment: str
    from_version: str | None = None
    to_version: str | None = None
    reason: str | None = None
    deployment_id: int | None = None
    steps: list[StepProgress] = Field(default_factory=list)
    requester_verified: bool = False


class PromotionResult(BaseModel):
    status: PromotionEnd
    app: str
    environment: str
    version: str
    reason: str | None = None
    promotion_id: str
    noop: bool = False
    deployment_id: int | None = None
    gates: list[GateResult] = Field(default_factory=list)
    steps: list[StepProgress] = Field(default_factory=list)
    compensation: RollbackResult | None = None
    # The stageline server signed the request for its requester (see PromotionStatus).
    requester_verified: bool = False


# -- activity inputs and outputs ------------------------------------------------------------


class WorkflowRef(BaseModel):
    workflow_id: str
    run_id: str


class PrepareInput(BaseModel):
    promotion: PromotionInput
    run: WorkflowRef
    # The workflow that started this run as its child, as Temporal recorded it (never from
    # the input): a train's signature counts only in the stages that train started.
    parent: WorkflowRef | None = None


class PreparedPromotion(BaseModel):
    promotion_record_id: int
    gates: list[GateResult]
    passed: bool
    noop: bool = False
    reason: str | None = None
    protection: Protection = Field(default_factory=Protection)
    # The people who may decide: the reviewer list with groups expanded, at request time.
    eligible_reviewers: list[str] = Field(default_factory=list)
    # Older promotions of the same app and environment still waiting: this one supersedes them.
    supersedes: list[WorkflowRef] = Field(default_factory=list)
    # The wait timer: how long the release must still soak, measured when the gates ran
    # (verified in the previous stage at T, wait minutes W: T + W - now).
    wait_seconds: float = 0
    steps: list[StepSpec] = Field(default_factory=list)
    # The stageline server's active key signed this request for this workflow.
    requester_verified: bool = False


class LockRequest(BaseModel):
    app: str
    environment: str
    run: WorkflowRef


class LockState(BaseModel):
    acquired: bool
    holder: str | None = None
    # A rollback waiting behind a promotion interrupts it: the promotion to interrupt.
    preempt: WorkflowRef | None = None


class BeginDeployment(BaseModel):
    promotion_record_id: int
    run: WorkflowRef


class DeploymentStarted(BaseModel):
    deployment_id: int
    config: ConfigVersions


class StepRequest(BaseModel):
    deployment_id: int
    step: StepSpec
    run_id: str  # stable across retries: STAGELINE_RUN_ID for idempotent deploy scripts


class StepOutcome(BaseModel):
    succeeded: bool
    exit_code: int | None = None
    detail: str | None = None  # masked, truncated output or reason
    started_at: datetime
    finished_at: datetime


class FinishDeployment(BaseModel):
    deployment_id: int
    succeeded: bool
    reason: str | None = None
    interrupted: bool = False  # stopped by a rollback: recorded as such, not as a failure


class DeploymentFinished(BaseModel):
    """The status a deployment has on record once closed; not always the one asked for: a
    deployment is closed once, and an earlier attempt of the same workflow task may have
    closed it already."""

    status: str


class PromotionOutcome(BaseModel):
    promotion_record_id: int
    status: PromotionEnd
    reason: str | None = None
    # Rejected because the approvals did not come in time (audited as promotion.timed_out).
    timed_out: bool = False
    gates: list[GateResult] = Field(default_factory=list)


class TurnRequest(BaseModel):
    """Input of the `take_turn` activity: enter the queue and, once it is this run's turn,
    check the freeze and begin the deployment, in one transaction."""

    lock: LockRequest
    # Workflow time to check the freeze at; None when an approved override lets it through.
    freeze_at: datetime | None = None
    # None when it must not begin (a rollback preempted it before it began).
    begin: BeginDeployment | None = None


class Turn(BaseModel):
    """What `take_turn` found: the queue's answer; once acquired, the freeze (when it was
    checked) and, when not frozen, the deployment it began."""

    lock: LockState
    freeze: FreezeState | None = None
    started: DeploymentStarted | None = None


class PromotionEnding(BaseModel):
    """Input of the `end_promotion` activity: a promotion's last database work, in one
    transaction: close its deployment (when it deployed), record its outcome, leave the
    queue (when it entered it)."""

    outcome: PromotionOutcome
    finish: FinishDeployment | None = None
    leave: LockRequest | None = None


class RollbackPlan(BaseModel):
    possible: bool
    # Not possible because a rule said no (nothing to roll back to): the rollback ends
    # `refused`, not `failed`.
    refused: bool = False
    reason: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    deployment_id: int | None = None
    steps: list[StepSpec] = Field(default_factory=list)
    # The stageline server's active key signed this rollback's request for this workflow.
    requester_verified: bool = False


class PlanRollback(BaseModel):
    request: RollbackInput
    run: WorkflowRef


# -- release train --------------------------------------------------------------------------


class TrainInput(StartInput):
    """Input of ReleaseTrainWorkflow, e.g. {"app": "web", "version": "1.4.0",
    "through": "production", "requested_by": "ci@acme"}."""

    model_config = ConfigDict(extra="forbid")

    app: ResourceName
    version: VersionName
    through: ResourceName
    requested_by: str = Field(min_length=1, max_length=200)
    on_behalf_of: str | None = Field(default=None, min_length=1, max_length=200)
    source: Source = "ui"
    # The stageline server's signature of this request, as on PromotionInput; the train
    # passes it on to its stages (`PromotionInput.signed_for`).
    requester_signature: str | None = Field(default=None, max_length=SIGNATURE_MAX)


def train_workflow_id(app: str, version: str, through: str) -> str:
    return _id("train", app, version, through)


class TrainPlan(BaseModel):
    stages: list[str]
    requester_verified: bool = False


class TrainStage(BaseModel):
    environment: str
    promotion_id: str
    status: str = "pending"  # pending, running, then how its promotion ended
    # Its promotion's result once it ended, so a follower needs no second call for it.
    result: PromotionResult | None = None


class TrainStatus(BaseModel):
    train_id: str
    app: str | None = None
    version: str | None = None
    through: str | None = None
    stages: list[TrainStage] = Field(default_factory=list)
    active: str | None = None  # the promotion now running, to which decisions are forwarded
    refusals: list[str] = Field(default_factory=list)
    requester_verified: bool = False  # the stageline server signed the train's request


class TrainResult(BaseModel):
    status: PromotionEnd
    app: str
    version: str
    through: str
    reason: str | None = None
    stages: list[PromotionResult] = Field(default_factory=list)
    requester_verified: bool = False


class Interruption(BaseModel):
    """The `supersede` and `preempt` signals: which workflow stops this one."""

    by: str = Field(min_length=1, max_length=255)


class InterruptionToVerify(BaseModel):
    """Input of `verify_interruption`: the run a supersede or preempt signal reached (from the
    workflow itself) and the workflow the signal names."""

    kind: Literal["supersede", "preempt"]
    target: WorkflowRef
    by: str


class InterruptionCheck(BaseModel):
    verified: bool
    reason: str
