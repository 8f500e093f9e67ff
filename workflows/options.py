"""How the workflows call their activities (named in workflows.contract): timeouts, retry
policies, and typed helpers that take an activity's contract and its input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from models.errors import describe
    from models.promotion import StepOutcome, StepRequest
    from workflows.contract import RUN_STEP, ActivityContract

M = TypeVar("M", bound=BaseModel)
I = TypeVar("I", bound=BaseModel)  # noqa: E741 (an activity's input)

# Errors that no retry can fix: the activity reports them once.
BUSINESS_ERRORS = [
    "InvalidInput",
    "Refused",
    "AlreadyEnded",
    "MissingConfiguration",
    "DecryptionError",
    "BadInput",
    "NotFound",
    "Conflict",
    "ConfigurationError",
]

# Database work: retried through a brief outage (about five minutes), then given up.
STORE_TIMEOUT = timedelta(seconds=60)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=12,
    non_retryable_error_types=BUSINESS_ERRORS,
)

# A dead worker is noticed within this, and its step retried elsewhere.
STEP_HEARTBEAT = timedelta(seconds=10)
# Steps run at least once: a crashed worker's step is run again (see STAGELINE_RUN_ID).
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=BUSINESS_ERRORS,
)


# Database work runs as *local* activities: in the worker, inside the workflow task, with only
# a marker in the history. Each would otherwise cost a round trip through the server (the
# benchmark showed ten of them made a promotion 3.9x slower than bare Temporal). They are
# short, idempotent and retried by the worker like any activity.


async def _local(activity: ActivityContract[Any, Any], arg: BaseModel, result_type: Any) -> Any:
    # A business error (InvalidInput, Refused, ...) is raised as the activity's own
    # ApplicationError, the same however the activity ran; left alone, it fails the
    # workflow with that type and message.
    try:
        return await workflow.execute_local_activity(
            activity.name,
            arg,
            result_type=result_type,
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
    except ActivityError as exc:
        if isinstance(exc.cause, ApplicationError):
            raise exc.cause from None
        raise


async def store(activity: ActivityContract[I, M], arg: I) -> M:
    """Run a database activity and return its typed result."""
    result: M = await _local(activity, arg, activity.result)
    return result


async def store_only(activity: ActivityContract[I, Any], arg: I) -> None:
    """Run a database activity whose result the caller does not need."""
    await _local(activity, arg, None)


async def store_or_none(activity: ActivityContract[I, M], arg: I) -> M | None:
    """Like `store`, for an activity whose result histories recorded before it had one
    hold as null."""
    result: M | None = await _local(activity, arg, activity.result | None)
    return result


async def step(request: StepRequest) -> StepOutcome:
    result: StepOutcome = await workflow.execute_activity(
        RUN_STEP.name,
        request,
        result_type=RUN_STEP.result,
        start_to_close_timeout=timedelta(seconds=request.step.timeout_seconds + 60),
        heartbeat_timeout=STEP_HEARTBEAT,
        retry_policy=STEP_RETRY,
        # On interruption, wait until the step's process is really gone before going on.
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        # What the Temporal UI's event history and timeline call this step.
        summary=f"{request.step.section}/{request.step.name}",
    )
    return result


def only_input(args: tuple[Any, ...], what: str) -> Any:
    """The one input a start or a signal carries. Handlers take `*args` so that none, or
    two, from a hand-typed `temporal workflow start|signal` are refused with this error
    rather than a TypeError, which would fail the workflow task over and over."""
    if len(args) != 1:
        raise ApplicationError(
            f"invalid input: {what} takes one JSON object, got {len(args)} inputs",
            type="InvalidInput",
            non_retryable=True,
        )
    return args[0]


def validate_input(model: type[M], raw: Any) -> M:
    """Validate a start input inside the workflow, so bad input fails the workflow itself
    (with a message naming each field) instead of failing its task, which Temporal retries
    forever while the workflow shows as running."""
    if not isinstance(raw, dict):
        raise ApplicationError(
            f"invalid input: expected a JSON object with the fields "
            f"{', '.join(model.model_fields)}, got {type(raw).__name__}",
            type="InvalidInput",
            non_retryable=True,
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ApplicationError(
            f"invalid input: {describe(exc, whole='input')}",
            type="InvalidInput",
            non_retryable=True,
        ) from None
