"""Reviewers' signing keys: register, list and revoke public keys, and verify signed
decisions against them."""

from __future__ import annotations

from models.errors import BadInput, Conflict, NotFound
from models.review import DecisionToVerify, ReviewerKeyView, SignatureCheck
from services import signatures
from services.base import Service
from services.environments import check_reviewer
from store import reviewer_keys as key_repo
from store.tables import ReviewerKey, utcnow

# A revoke names a key by the start of its fingerprint; this short a start is ambiguous too easily.
MIN_FINGERPRINT_PREFIX = 8


def check_person(
    reviewer: str, why: str = "keys belong to people: register one for each member"
) -> str:
    """A reviewer name that is one person's, not a group's."""
    check_reviewer(reviewer)
    if reviewer.startswith("@"):
        raise BadInput(f"{reviewer!r} is a group; {why}")
    return reviewer


def _view(key: ReviewerKey) -> ReviewerKeyView:
    return ReviewerKeyView(
        reviewer=key.reviewer,
        fingerprint=signatures.short(key.fingerprint),
        public_key=key.public_key,
        created_by=key.created_by,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
        revoked_by=key.revoked_by,
    )


class ReviewerKeyService(Service):
    async def add_key(self, reviewer: str, public_key: str, *, actor: str) -> ReviewerKeyView:
        """Register `public_key` as one of `reviewer`'s signing keys (audited)."""
        check_person(reviewer)
        raw = signatures.parse_public_key(public_key)
        digest = signatures.fingerprint(raw)
        session = self.session
        ws = await self.workspace_id()
        existing = await key_repo.find_by_fingerprint(session, ws, digest)
        if existing is not None:
            shown = signatures.short(digest)
            if existing.revoked_at is not None:
                raise Conflict(
                    f"key {shown} was revoked on {existing.revoked_at:%Y-%m-%d}; a revoked "
                    "key is never registered again: generate a new one"
                )
            if existing.reviewer != reviewer:
                raise Conflict(
                    f"key {shown} is already registered for {existing.reviewer}; each key "
                    "belongs to one reviewer, so generate one for each"
                )
            raise Conflict(f"key {shown} is already registered for {reviewer}")
        key = ReviewerKey(
            workspace_id=ws,
            reviewer=reviewer,
            public_key=signatures.public_key_text(raw),
            fingerprint=digest,
            created_by=actor,
        )
        session.add(key)
        await session.flush()
        await self.audit(
            actor,
            "reviewer.key.add",
            f"key {signatures.short(digest)} of {reviewer}",
            detail={
                "reviewer": reviewer,
                "fingerprint": digest,
                "public_key": key.public_key,
            },
        )
        return _view(key)

    async def list_keys(self, reviewer: str | None = None) -> list[ReviewerKeyView]:
        """Registered keys, revoked ones included (they explain old audit entries)."""
        ws = await self.workspace_id()
        return [_view(k) for k in await key_repo.keys(self.session, ws, reviewer)]

    async def revoke_key(self, reviewer: str, fingerprint: str, *, actor: str) -> ReviewerKeyView:
        """Revoke the key of `reviewer` whose fingerprint starts with `fingerprint` (audited).
        Decisions signed with it are refused from now on, in running promotions too."""
        check_person(reviewer)
        prefix = fingerprint.strip().lower()
        if len(prefix) < MIN_FINGERPRINT_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
            raise BadInput(
                f"fingerprint {fingerprint!r} is not valid: give at least "
                f"{MIN_FINGERPRINT_PREFIX} hex digits of it, as 'stageline reviewer key list' "
                "shows them"
            )
        owned = await key_repo.keys(self.session, await self.workspace_id(), reviewer)
        matches = [k for k in owned if k.fingerprint.startswith(prefix)]
        if not matches:
            known = ", ".join(signatures.short(k.fingerprint) for k in owned) or "none"
            raise NotFound(f"{reviewer} has no key with fingerprint {prefix}; their keys: {known}")
        if len(matches) > 1:
            raise BadInput(f"fingerprint {prefix} matches several keys; give more digits")
        key = matches[0]
        if key.revoked_at is not None:
            raise Conflict(
                f"key {signatures.short(key.fingerprint)} of {reviewer} was already revoked "
                f"on {key.revoked_at:%Y-%m-%d %H:%M} UTC by {key.revoked_by}"
            )
        key.revoked_at, key.revoked_by = utcnow(), actor
        await self.audit(
            actor,
            "reviewer.key.revoke",
            f"key {signatures.short(key.fingerprint)} of {reviewer}",
            detail={"reviewer": reviewer, "fingerprint": key.fingerprint},
        )
        return _view(key)

    async def without_keys(self, reviewers: list[str]) -> list[str]:
        """Those of `reviewers` (people) who have no active key: their decisions would be
        refused where signatures are required."""
        have = await key_repo.reviewers_with_active_keys(self.session, await self.workspace_id())
        return [r for r in reviewers if r not in have]

    async def verify_decision(self, decision: DecisionToVerify) -> SignatureCheck:
        """Whether an active key of the reviewer signed this decision for this promotion run.

        A refusal reason always starts with "signature does not verify", then says why.
        """
        refused = "signature does not verify"
        who = decision.reviewer
        signature = signatures.decode_signature(decision.signature)
        if signature is None:
            return SignatureCheck(
                verified=False,
                reason=f"{refused}: it is not a base64-encoded Ed25519 signature",
            )
        message = signatures.decision_message(
            namespace=decision.namespace,
            workflow_id=decision.workflow_id,
            run_id=decision.run_id,
            kind=decision.kind,
            reviewer=who,
            comment=decision.comment,
        )
        keys = list(await key_repo.keys(self.session, await self.workspace_id(), who))
        public = signatures.parse_public_key
        signer = next(
            (k for k in keys if signatures.verifies(public(k.public_key), message, signature)),
            None,
        )
        if signer is not None:
            shown = signatures.short(signer.fingerprint)
            if signer.revoked_at is None:
                return SignatureCheck(
                    verified=True, reason=f"signed with key {shown} of {who}", fingerprint=shown
                )
            return SignatureCheck(
                verified=False,
                reason=f"{refused}: it was made with key {shown} of {who}, revoked on "
                f"{signer.revoked_at:%Y-%m-%d %H:%M} UTC",
            )
        if all(k.revoked_at is not None for k in keys):
            return SignatureCheck(
                verified=False,
                reason=f"{refused}: {who} has no active signing key (register one with "
                f"'stageline reviewer key add {who} PUBLIC_KEY')",
            )
        return SignatureCheck(
            verified=False,
            reason=f"{refused}: no registered key of {who} signed this {decision.kind} of this "
            "promotion run (made with another key, or for another promotion, run, reviewer, "
            "decision or comment)",
        )
