"""Reviewer decisions: as the `approve`, `reject` and `override` signals carry them, and as
the `decide` update (which `stageline approve` uses, to learn at once whether it counted)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DecisionKind = Literal["approve", "reject", "override"]


class Decision(BaseModel):
    """{"reviewer": "alice", "comment": "optional"}"""

    model_config = ConfigDict(extra="forbid")

    reviewer: str = Field(min_length=1, max_length=200)
    comment: str | None = Field(default=None, max_length=2000)


class DecisionRequest(Decision):
    """The `decide` update: a decision and its kind."""

    kind: DecisionKind


class DecisionOutcome(BaseModel):
    accepted: bool
    reason: str
    approvals: list[str] = Field(default_factory=list)
    approvals_required: int = 0


class DecisionRecord(BaseModel):
    """For the audit log."""

    promotion_record_id: int
    workflow_id: str
    kind: DecisionKind
    reviewer: str
    accepted: bool
    reason: str
    comment: str | None = None


class FreezeState(BaseModel):
    frozen: bool
    window_id: int | None = None
    until: datetime | None = None
    reason: str | None = None


class FreezeQuery(BaseModel):
    environment: str
    at: datetime  # workflow time, so the answer is the same on replay and under time skipping
