"""How a workflow that did not reach its goal ends: as a Temporal failure, never a success.

A Temporal operator reads the workflow list's status column: "Completed" must mean the
release is deployed (or rolled back, for a rollback). So a promotion that is rejected,
failed, superseded or rolled back, a rollback that failed or was refused, and a train that
stopped short all end *Failed*, with a typed, non-retryable ApplicationError whose message is
the reason and whose one detail is the usual result object. `stageline` commands (and
anything else built on `result_of`) read that detail back, so their output and exit codes
are the same whichever way a workflow ended.

Recorded histories that completed with such a result still replay: the failure is raised
only where `OUTCOME_PATCH` (`workflows.patches`) holds.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, ChildWorkflowError

M = TypeVar("M", bound=BaseModel)

# The error type per (workflow kind, status): what an operator filters and alerts on.
ERROR_TYPES = {
    ("promotion", "rejected"): "PromotionRejected",
    ("promotion", "superseded"): "PromotionSuperseded",
    ("promotion", "failed"): "PromotionFailed",
    ("promotion", "rolled_back"): "PromotionRolledBack",
    ("rollback", "failed"): "RollbackFailed",
    ("rollback", "refused"): "RollbackRefused",
    ("train", "rejected"): "TrainStopped",
    ("train", "superseded"): "TrainStopped",
    ("train", "failed"): "TrainStopped",
    ("train", "rolled_back"): "TrainStopped",
}
OUTCOME_TYPES = frozenset(ERROR_TYPES.values())


def outcome_error(
    kind: str, status: str, reason: str | None, result: BaseModel
) -> ApplicationError:
    """The failure a workflow of `kind` ends with for `status`, carrying its result."""
    return ApplicationError(
        reason or status.replace("_", " "),
        result.model_dump(mode="json"),
        type=ERROR_TYPES[(kind, status)],
        non_retryable=True,
    )


def outcome_of(error: BaseException, model: type[M]) -> M | None:
    """The result carried by a stageline outcome failure (directly, or as the cause of a
    child workflow or client failure), or None for any other error."""
    cause: BaseException | None = error
    while isinstance(cause, ChildWorkflowError | WorkflowFailureError):
        cause = cause.cause
    if not isinstance(cause, ApplicationError) or cause.type not in OUTCOME_TYPES:
        return None
    details: Any = cause.details
    if not details:
        return None
    try:
        return model.model_validate(details[0])
    except ValidationError:
        return None
