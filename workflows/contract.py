"""The Temporal boundary of stageline, in one place: every name that crosses it (workflow
types, signals, queries, updates, activities), which model goes in and comes out of each,
and typed handles for talking to a running workflow.

The names are part of the external contract (README, "From the Temporal UI or the `temporal`
CLI"): the Temporal UI and the `temporal` CLI type them, and recorded histories hold them, so
a value here never changes. Nowhere else in cli/, activities/, workflows/, worker/ or bench/
is a Temporal name written as a string (tests/workflows/test_contract.py keeps it so). The
search attributes live beside this module, in workflows.search_attributes (re-exported here
as SEARCH_ATTRIBUTES); the task queue is a setting (`Settings.task_queue`, `stageline`).

The workflows still take their start input raw (`run(self, *args)`) and validate it inside,
so a hand-typed input from the UI fails the workflow cleanly instead of its task: the input
model each one expects is declared here (`PROMOTION.input`, ...), and `start` takes only it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, Self, TypeVar

from pydantic import BaseModel
from temporalio.client import Client, WorkflowHandle

from models.promotion import (
    BeginDeployment,
    DeploymentFinished,
    DeploymentStarted,
    FinishDeployment,
    Interruption,
    InterruptionCheck,
    InterruptionToVerify,
    LockRequest,
    LockState,
    PlanRollback,
    PreparedPromotion,
    PrepareInput,
    PromotionEnding,
    PromotionInput,
    PromotionOutcome,
    PromotionResult,
    PromotionStatus,
    RollbackEnding,
    RollbackInput,
    RollbackPlan,
    RollbackResult,
    RollbackTurn,
    RollbackTurnState,
    StepOutcome,
    StepRequest,
    TrainInput,
    TrainPlan,
    TrainResult,
    TrainStatus,
    Turn,
    TurnRequest,
)
from models.review import (
    Decision,
    DecisionOutcome,
    DecisionRecord,
    DecisionRequest,
    DecisionToVerify,
    FreezeQuery,
    FreezeState,
    SignatureCheck,
)
from workflows import search_attributes

SEARCH_ATTRIBUTES: Final = search_attributes.ALL

I = TypeVar("I", bound=BaseModel)  # noqa: E741 (input)
R = TypeVar("R")  # result
S = TypeVar("S", bound=BaseModel)  # status

WorkflowKind = Literal["promotion", "rollback", "train"]


# -- workflows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowContract(Generic[I, R, S]):
    """A workflow type: its name, the one JSON object it starts with, what it returns (also
    carried by the failure it ends with when it does not reach its goal, see
    workflows.outcomes) and what its `status` query answers."""

    name: str
    kind: WorkflowKind
    input: type[I]
    result: type[R]
    status: type[S]


PROMOTION: Final = WorkflowContract(
    "PromotionWorkflow", "promotion", PromotionInput, PromotionResult, PromotionStatus
)
ROLLBACK: Final = WorkflowContract(
    "RollbackWorkflow", "rollback", RollbackInput, RollbackResult, PromotionStatus
)
TRAIN: Final = WorkflowContract(
    "ReleaseTrainWorkflow", "train", TrainInput, TrainResult, TrainStatus
)
WORKFLOWS: Final = (PROMOTION, ROLLBACK, TRAIN)
WORKFLOW_TYPES: Final = frozenset(w.name for w in WORKFLOWS)


def kind_of(workflow_type: str | None) -> WorkflowKind | None:
    """What a workflow is, from its type (never from how its id looks), or None when it is
    not one of stageline's."""
    for contract in WORKFLOWS:
        if contract.name == workflow_type:
            return contract.kind
    return None


# -- signals, queries, updates ----------------------------------------------------------------


class Signal:
    """Signal names. approve, reject and override are also the kinds of a decision."""

    APPROVE: Final = "approve"
    REJECT: Final = "reject"
    OVERRIDE: Final = "override"
    # Internal, sent by stageline itself.
    SUPERSEDE: Final = "supersede"
    PREEMPT: Final = "preempt"
    QUEUE_MOVED: Final = "queue_moved"
    FREEZE_CHANGED: Final = "freeze_changed"


class Query:
    STATUS: Final = "status"  # on every workflow: PromotionStatus, or TrainStatus for a train


class Update:
    DECIDE: Final = "decide"  # DecisionRequest -> DecisionOutcome


# Payloads: approve/reject/override carry a Decision; supersede/preempt an Interruption;
# queue_moved and freeze_changed nothing. The decide update takes a DecisionRequest.
SIGNAL_INPUTS: Final[dict[str, type[BaseModel] | None]] = {
    Signal.APPROVE: Decision,
    Signal.REJECT: Decision,
    Signal.OVERRIDE: Decision,
    Signal.SUPERSEDE: Interruption,
    Signal.PREEMPT: Interruption,
    Signal.QUEUE_MOVED: None,
    Signal.FREEZE_CHANGED: None,
}
UPDATES: Final[dict[str, tuple[type[BaseModel], type[BaseModel]]]] = {
    Update.DECIDE: (DecisionRequest, DecisionOutcome),
}


# -- activities -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityContract(Generic[I, R]):
    """An activity: its name (what the worker registers and the history records), its input
    and its result (None for none)."""

    name: str
    input: type[I]
    result: type[R]


PREPARE_PROMOTION: Final = ActivityContract("prepare_promotion", PrepareInput, PreparedPromotion)
PLAN_TRAIN: Final = ActivityContract("plan_train", TrainInput, TrainPlan)
RECORD_DECISION: Final = ActivityContract("record_decision", DecisionRecord, type(None))
VERIFY_DECISION: Final = ActivityContract("verify_decision", DecisionToVerify, SignatureCheck)
FREEZE_STATE: Final = ActivityContract("freeze_state", FreezeQuery, FreezeState)
RECORD_PROMOTION_OUTCOME: Final = ActivityContract(
    "record_promotion_outcome", PromotionOutcome, type(None)
)
VERIFY_INTERRUPTION: Final = ActivityContract(
    "verify_interruption", InterruptionToVerify, InterruptionCheck
)
END_PROMOTION: Final = ActivityContract("end_promotion", PromotionEnding, type(None))
ENTER_QUEUE: Final = ActivityContract("enter_queue", LockRequest, LockState)
TAKE_TURN: Final = ActivityContract("take_turn", TurnRequest, Turn)
LEAVE_QUEUE: Final = ActivityContract("leave_queue", LockRequest, type(None))
BEGIN_DEPLOYMENT: Final = ActivityContract("begin_deployment", BeginDeployment, DeploymentStarted)
FINISH_DEPLOYMENT: Final = ActivityContract(
    "finish_deployment", FinishDeployment, DeploymentFinished
)
CHECK_ROLLBACK: Final = ActivityContract("check_rollback", PlanRollback, RollbackPlan)
PLAN_ROLLBACK: Final = ActivityContract("plan_rollback", PlanRollback, RollbackPlan)
TAKE_ROLLBACK_TURN: Final = ActivityContract("take_rollback_turn", RollbackTurn, RollbackTurnState)
END_ROLLBACK: Final = ActivityContract("end_rollback", RollbackEnding, type(None))
RUN_STEP: Final = ActivityContract("run_step", StepRequest, StepOutcome)  # a regular activity

ACTIVITIES: Final = (
    PREPARE_PROMOTION,
    PLAN_TRAIN,
    RECORD_DECISION,
    VERIFY_DECISION,
    FREEZE_STATE,
    RECORD_PROMOTION_OUTCOME,
    VERIFY_INTERRUPTION,
    END_PROMOTION,
    ENTER_QUEUE,
    TAKE_TURN,
    LEAVE_QUEUE,
    BEGIN_DEPLOYMENT,
    FINISH_DEPLOYMENT,
    CHECK_ROLLBACK,
    PLAN_ROLLBACK,
    TAKE_ROLLBACK_TURN,
    END_ROLLBACK,
    RUN_STEP,
)


# -- the client side --------------------------------------------------------------------------


async def start(
    client: Client,
    workflow: WorkflowContract[I, R, Any],
    arg: I,
    *,
    id: str,
    task_queue: str,
    **options: Any,
) -> WorkflowHandle[Any, R]:
    """Start `workflow` with its own input model (what a person types in the UI as JSON)."""
    return await client.start_workflow(
        workflow.name,
        arg,
        id=id,
        task_queue=task_queue,
        result_type=workflow.result,
        **options,
    )


class _Handle(Generic[S]):
    """A running (or finished) stageline workflow, spoken to by its contract's names."""

    status_model: type[S]

    def __init__(self, handle: WorkflowHandle[Any, Any]) -> None:
        self.handle = handle

    @classmethod
    def of(cls, client: Client, workflow_id: str, run_id: str | None = None) -> Self:
        return cls(client.get_workflow_handle(workflow_id, run_id=run_id))

    @property
    def id(self) -> str:
        return self.handle.id

    async def status(self) -> S:
        """The `status` query."""
        answer: S = await self.handle.query(Query.STATUS, result_type=self.status_model)
        return answer


class _Decisions(_Handle[S]):
    """approve, reject and override, each with a Decision, as the Temporal UI sends them."""

    async def _decision(self, signal: str, decision: Decision) -> None:
        # No null fields: exactly what a person types.
        await self.handle.signal(signal, decision.model_dump(mode="json", exclude_none=True))

    async def approve(self, decision: Decision) -> None:
        await self._decision(Signal.APPROVE, decision)

    async def reject(self, decision: Decision) -> None:
        await self._decision(Signal.REJECT, decision)

    async def override(self, decision: Decision) -> None:
        await self._decision(Signal.OVERRIDE, decision)


class QueuedHandle(_Handle[PromotionStatus]):
    """A PromotionWorkflow or RollbackWorkflow: both answer `status` with a PromotionStatus
    and wait in the deployment queue."""

    status_model = PromotionStatus

    async def queue_moved(self) -> None:
        """Internal: the deployment ahead left the queue."""
        await self.handle.signal(Signal.QUEUE_MOVED)


class RollbackHandle(QueuedHandle):
    pass


class PromotionHandle(QueuedHandle, _Decisions[PromotionStatus]):
    async def decide(self, request: DecisionRequest) -> DecisionOutcome:
        """The `decide` update: whether the decision counted, and why. Unsigned, the payload
        is exactly what it always was (no "signature": null), so workers that predate signed
        approvals still accept it."""
        exclude = {"signature"} if request.signature is None else None
        outcome: DecisionOutcome = await self.handle.execute_update(
            Update.DECIDE,
            request.model_dump(mode="json", exclude=exclude),
            result_type=DecisionOutcome,
        )
        return outcome

    # Internal signals, sent by stageline itself.

    async def supersede(self, by: str) -> None:
        """A newer promotion into the same app and environment passed its gates."""
        await self.handle.signal(Signal.SUPERSEDE, Interruption(by=by))

    async def preempt(self, by: str) -> None:
        """A rollback of the same app and environment takes precedence."""
        await self.handle.signal(Signal.PREEMPT, Interruption(by=by))

    async def freeze_changed(self) -> None:
        """Look at the environment's freezes again now."""
        await self.handle.signal(Signal.FREEZE_CHANGED)


class TrainHandle(_Decisions[TrainStatus]):
    """A train forwards approve, reject and override to the stage now running."""

    status_model = TrainStatus
