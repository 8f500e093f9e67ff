"""The vocabularies stored in the promotion, deployment and queue tables, as StrEnums.

Each member is its serialized value ("deployed" == DeploymentStatus.DEPLOYED), so rows
written before these existed, and JSON results, read and compare the same.
"""

from __future__ import annotations

from enum import StrEnum


class PromotionState(StrEnum):
    """A promotion record's status: running until it ends, then its outcome."""

    RUNNING = "running"
    DEPLOYED = "deployed"
    FAILED = "failed"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"
    SUPERSEDED = "superseded"


class DeploymentStatus(StrEnum):
    RUNNING = "running"
    DEPLOYED = "deployed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class DeploymentKind(StrEnum):
    """How a release got into an environment; also the kind of a queue ticket (promotion or
    rollback)."""

    PROMOTION = "promotion"
    ROLLBACK = "rollback"
    COMPENSATION = "compensation"


class TicketState(StrEnum):
    """A queue ticket: waiting for its turn, holding the environment, or gone."""

    WAITING = "waiting"
    HOLDING = "holding"
    DONE = "done"


class PromotionEnd(StrEnum):
    """How a promotion (or a train) ended: the `status` of its result."""

    DEPLOYED = "deployed"
    FAILED = "failed"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"
    SUPERSEDED = "superseded"


class RollbackEnd(StrEnum):
    """How a rollback ended: `refused` when a rule said no (nothing to go back to)."""

    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    REFUSED = "refused"


class StepStatus(StrEnum):
    """A pipeline step in a promotion's or rollback's progress."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
