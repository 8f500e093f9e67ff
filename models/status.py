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
