"""The reviewer policy of one promotion: who may decide, and what each decision does.

Pure and deterministic (no I/O), so the workflow can run it inside signal and update
handlers, and tests can run it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.promotion import Phase
    from models.review import Decision, DecisionKind, DecisionOutcome, SignatureCheck

# Phases in which reviewers can still stop or unblock the promotion.
BEFORE_DEPLOY = {Phase.AWAITING_APPROVAL, Phase.WAITING, Phase.FROZEN, Phase.QUEUED}


@dataclass
class Review:
    requester: str
    environment: str
    eligible: list[str]
    required: int
    allow_self_review: bool
    # Signed mode: every decision must carry a signature that a registered, unrevoked key of
    # its reviewer made for this promotion run (checked by the `verify_decision` activity).
    signed: bool = False
    # Whom the requester said they act for: barred from approving exactly like the requester.
    on_behalf_of: str | None = None
    approvals: list[str] = field(default_factory=list)
    rejection: str | None = None
    override: str | None = None
    refusals: list[str] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return len(self.approvals) >= self.required

    def may_approve(self) -> list[str]:
        return [
            person
            for person in self.eligible
            if person not in self.approvals
            and (self.allow_self_review or person not in self._requesters)
        ]

    @property
    def _requesters(self) -> set[str]:
        # Names, compared as they are: where the stageline server verified the requester
        # (`requester_verified`) and signed the decision for whoever signed in, both are
        # authenticated principals' names, so this compares identities, not claims.
        return {self.requester} | ({self.on_behalf_of} if self.on_behalf_of else set())

    def needs_verification(self, kind: DecisionKind, decision: Decision, phase: Phase) -> bool:
        """Whether the workflow must check this decision's signature before deciding: only in
        signed mode, only a signed decision, only one the policy would otherwise accept (so
        no activity runs for what is refused anyway)."""
        return (
            self.signed
            and decision.signature is not None
            and self._refusal(kind, decision, phase) is None
        )

    def decide(
        self,
        kind: DecisionKind,
        decision: Decision,
        phase: Phase,
        check: SignatureCheck | None = None,
    ) -> DecisionOutcome:
        """Judge a decision; in signed mode `check` is the verdict on its signature."""
        refusal = self._refusal(kind, decision, phase)
        # Refused only for want of a signature: the sender's CLI can say how to sign.
        unsigned = refusal is None and self.signed and decision.signature is None
        refusal = refusal or self._unsigned(kind, decision, check)
        if refusal is not None:
            self.refusals.append(f"{kind} by {decision.reviewer} refused: {refusal}")
            outcome = self._outcome(False, refusal)
            outcome.signature_required = unsigned
            return outcome
        comment = f": {decision.comment}" if decision.comment else ""
        if kind == "approve":
            self.approvals.append(decision.reviewer)
            return self._outcome(
                True, f"approved by {decision.reviewer} ({len(self.approvals)}/{self.required})"
            )
        if kind == "reject":
            self.rejection = f"rejected by {decision.reviewer}{comment}"
            return self._outcome(True, self.rejection)
        self.override = f"freeze overridden by {decision.reviewer}{comment}"
        return self._outcome(True, self.override)

    def _refusal(self, kind: DecisionKind, decision: Decision, phase: Phase) -> str | None:
        reviewer = decision.reviewer
        if kind == "approve" and phase != Phase.AWAITING_APPROVAL:
            return f"the promotion is {phase.value}, not awaiting approval"
        if kind != "approve" and phase not in BEFORE_DEPLOY:
            return f"the promotion is {phase.value}; it can no longer be {kind}ed"
        if reviewer not in self.eligible:
            return f"{reviewer} is not a reviewer of {self.environment}"
        if reviewer in self._requesters:
            asked = (
                "requested this promotion"
                if reviewer == self.requester
                else f"is whom {self.requester} requested this promotion for"
            )
            if kind == "override":
                return f"{reviewer} {asked}; a break-glass override needs someone else"
            if kind == "approve" and not self.allow_self_review:
                return f"{reviewer} {asked} and may not approve it"
        if kind == "approve" and reviewer in self.approvals:
            return f"{reviewer} already approved"
        if kind == "override" and not (decision.comment or "").strip():
            return "a break-glass override needs a comment saying why"
        if kind == "override" and self.override is not None:
            return "the freeze is already overridden"
        return None

    def _unsigned(
        self, kind: DecisionKind, decision: Decision, check: SignatureCheck | None
    ) -> str | None:
        if not self.signed:
            return None
        if decision.signature is None:
            return (
                f"unsigned: {self.environment} accepts only signed decisions; 'stageline {kind} "
                f"PROMOTION_ID --reviewer {decision.reviewer}' signs with the reviewer's key "
                "(see 'stageline reviewer key generate')"
            )
        if check is None:
            return "signature does not verify: it could not be checked"
        return None if check.verified else check.reason

    def _outcome(self, accepted: bool, reason: str) -> DecisionOutcome:
        return DecisionOutcome(
            accepted=accepted,
            reason=reason,
            approvals=list(self.approvals),
            approvals_required=self.required,
        )
