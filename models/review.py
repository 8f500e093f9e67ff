"""Reviewer decisions: as the `approve`, `reject` and `override` signals carry them, and as
the `decide` update (which `stageline approve` uses, to learn at once whether it counted)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DecisionKind = Literal["approve", "reject", "override"]
# What a request signature starts: `environment` is a promotion's target, a train's `through`,
# a rollback's environment.
RequestKind = Literal["promotion", "train", "rollback"]

# The reviewer name the stageline server's own signing key is stored under. Never a person's
# name (`models.names.PERSON_NAME` cannot start with ':'), so no person can register a key
# under it nor claim it in a decision; the server signs decisions for the people who signed
# in to it, and the start of promotions, trains and rollbacks they ask for.
SERVER_KEY_OWNER = ":server"


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


class RequestToVerify(BaseModel):
    """A request to check against the stageline server's key: the start of a promotion, a
    train or a rollback, bound to the workflow it started (its namespace and id come from the
    workflow itself, never from the input), signed by the server for the person or CI token
    that signed in (see `services.signatures.request_message`)."""

    namespace: str
    workflow_id: str
    kind: RequestKind
    app: str
    version: str | None
    environment: str
    requested_by: str
    on_behalf_of: str | None = None
    force: bool = False
    signature: str | None = None


class SignatureCheck(BaseModel):
    """Result of `verify_decision` (whether a registered, unrevoked key of the reviewer, or
    the stageline server's active key, signed this decision for this run) and of
    `verify_request` (whether the server's active key signed this request); `reason` says
    which key, or why not."""

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
