"""Reviewer decisions: as the `approve`, `reject` and `override` signals carry them, and as
the `decide` update (which `stageline approve` uses, to learn at once whether it counted)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DecisionKind = Literal["approve", "reject", "override"]


class Decision(BaseModel):
    """{"reviewer": "alice", "comment": "optional"}, and on an environment that requires signed
    approvals also "signature": base64 Ed25519 over the canonical decision message (see
    services.signatures), which `stageline approve|reject|override` adds."""

    model_config = ConfigDict(extra="forbid")

    reviewer: str = Field(min_length=1, max_length=200)
    comment: str | None = Field(default=None, max_length=2000)
    # Optional, so plain signals from the UI or the temporal CLI keep validating. Checked
    # only where the environment requires signatures; the shape is checked by the verifier,
    # so a garbled signature is refused and audited rather than dropped as malformed.
    signature: str | None = Field(default=None, max_length=200)


class DecisionRequest(Decision):
    """The `decide` update: a decision and its kind."""

    kind: DecisionKind


class DecisionOutcome(BaseModel):
    accepted: bool
    reason: str
    approvals: list[str] = Field(default_factory=list)
    approvals_required: int = 0
    # Refused because the environment accepts only signed decisions and this one was not.
    signature_required: bool = False


class DecisionToVerify(BaseModel):
    """Input of the `verify_decision` activity: a signed decision and the promotion run it
    must have been signed for (taken from the workflow itself, never from the sender)."""

    namespace: str
    workflow_id: str
    run_id: str
    kind: DecisionKind
    reviewer: str
    comment: str | None = None
    signature: str


class SignatureCheck(BaseModel):
    """Result of `verify_decision`: whether a registered, unrevoked key of the reviewer
    signed this decision for this run; `reason` says why not."""

    verified: bool
    reason: str
    fingerprint: str | None = None


class ReviewerKeyView(BaseModel):
    """A reviewer's registered public key, as `stageline reviewer key list` shows it."""

    reviewer: str
    fingerprint: str
    public_key: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


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
