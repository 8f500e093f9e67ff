"""Reviewers' signing keys: register, list and revoke public keys, and verify signed
decisions against them; the stageline server's own key, and the requests it signs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from models.errors import BadInput, Conflict, NotFound
from models.promotion import PromotionInput, RollbackInput, TrainInput, WorkflowRef
from models.review import (
    SERVER_KEY_OWNER,
    DecisionToVerify,
    RequestToVerify,
    ReviewerKeyView,
    SignatureCheck,
)
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


# How the server's key is named where people read it.
SERVER = "the stageline server"
REFUSED = "signature does not verify"


def _owner(reviewer: str) -> str:
    return SERVER if reviewer == SERVER_KEY_OWNER else reviewer


def _revoked(key: ReviewerKey, revoked_at: datetime) -> str:
    shown = signatures.short(key.fingerprint)
    return (
        f"{REFUSED}: it was made with key {shown} of {_owner(key.reviewer)}, revoked on "
        f"{revoked_at:%Y-%m-%d %H:%M} UTC"
    )


def promotion_request(
    promotion: PromotionInput, *, namespace: str, workflow_id: str, parent: WorkflowRef | None
) -> RequestToVerify | str:
    """What the server must have signed for this promotion to have a verified requester:
    its own request, or (a train's stage) its train's, which counts only when that train is
    the workflow that started it (`parent`, as Temporal recorded it). A string: why the
    signature cannot count, whatever it is."""
    signed_for = promotion.signed_for
    if signed_for is None:
        return RequestToVerify(
            namespace=namespace,
            workflow_id=workflow_id,
            kind="promotion",
            app=promotion.app,
            version=promotion.version,
            environment=promotion.target,
            requested_by=promotion.requested_by,
            on_behalf_of=promotion.on_behalf_of,
            force=promotion.force,
            signature=promotion.requester_signature,
        )
    if parent is None or parent.workflow_id != signed_for.workflow_id:
        return (
            f"{REFUSED}: it was made for the train {signed_for.workflow_id}, which did not "
            "start this promotion"
        )
    return RequestToVerify(
        namespace=namespace,
        workflow_id=signed_for.workflow_id,
        kind="train",
        app=promotion.app,
        version=promotion.version,
        environment=signed_for.through,
        requested_by=promotion.requested_by,
        on_behalf_of=promotion.on_behalf_of,
        force=promotion.force,
        signature=promotion.requester_signature,
    )


def train_request(train: TrainInput, *, namespace: str, workflow_id: str) -> RequestToVerify:
    return RequestToVerify(
        namespace=namespace,
        workflow_id=workflow_id,
        kind="train",
        app=train.app,
        version=train.version,
        environment=train.through,
        requested_by=train.requested_by,
        on_behalf_of=train.on_behalf_of,
        signature=train.requester_signature,
    )


def rollback_request(
    rollback: RollbackInput, *, namespace: str, workflow_id: str
) -> RequestToVerify:
    return RequestToVerify(
        namespace=namespace,
        workflow_id=workflow_id,
        kind="rollback",
        app=rollback.app,
        version=rollback.to_version,
        environment=rollback.environment,
        requested_by=rollback.requested_by,
        signature=rollback.requester_signature,
    )


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
        shown = signatures.short(digest)
        if existing is not None:
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
        return await self._register(reviewer, raw, actor, f"key {shown} of {reviewer}")

    async def list_keys(self, reviewer: str | None = None) -> list[ReviewerKeyView]:
        """Registered keys, revoked ones included (they explain old audit entries)."""
        ws = await self.workspace_id()
        return [_view(k) for k in await key_repo.keys(self.session, ws, reviewer)]

    async def revoke_key(self, reviewer: str, fingerprint: str, *, actor: str) -> ReviewerKeyView:
        """Revoke the key of `reviewer` whose fingerprint starts with `fingerprint` (audited).
        Decisions signed with it are refused from now on, in running promotions too. The
        stageline server's key is revoked as reviewer ':server' (its requests and the
        decisions it signed stop counting; the server must be given a new key file)."""
        if reviewer != SERVER_KEY_OWNER:
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
        await self._revoke(key, actor)
        return _view(key)

    async def _revoke(self, key: ReviewerKey, actor: str, why: str | None = None) -> None:
        key.revoked_at, key.revoked_by = utcnow(), actor
        detail: dict[str, str] = {"reviewer": key.reviewer, "fingerprint": key.fingerprint}
        if why is not None:
            detail["reason"] = why
        await self.audit(
            actor,
            "reviewer.key.revoke",
            f"key {signatures.short(key.fingerprint)} of {_owner(key.reviewer)}",
            detail=detail,
        )

    async def register_server_key(self, public_key: str, *, actor: str) -> ReviewerKeyView:
        """Make `public_key` the stageline server's signing key (the server calls this at
        start-up, with the public half of the key it holds). The same key again changes
        nothing; a new one revokes the server's older keys (audited), so what they signed
        stops counting, and is registered (audited)."""
        raw = signatures.parse_public_key(public_key)
        digest = signatures.fingerprint(raw)
        shown = signatures.short(digest)
        session = self.session
        ws = await self.workspace_id()
        existing = await key_repo.find_by_fingerprint(session, ws, digest)
        if existing is not None:
            if existing.reviewer != SERVER_KEY_OWNER:
                raise Conflict(
                    f"key {shown} is registered for {existing.reviewer}; the stageline server "
                    "needs a key of its own"
                )
            if existing.revoked_at is not None:
                raise Conflict(
                    f"the stageline server's key {shown} was revoked on "
                    f"{existing.revoked_at:%Y-%m-%d} by {existing.revoked_by}; a revoked key "
                    "is never registered again: remove the server's key file so that it makes "
                    "a new one, and start it again"
                )
            return _view(existing)
        for older in await key_repo.keys(session, ws, SERVER_KEY_OWNER):
            if older.revoked_at is None:
                await self._revoke(older, actor, f"replaced by the server's new key {shown}")
        return await self._register(SERVER_KEY_OWNER, raw, actor, f"key {shown} of {SERVER}")

    async def _register(
        self, reviewer: str, raw: bytes, actor: str, subject: str
    ) -> ReviewerKeyView:
        """Store a checked, new public key as `reviewer`'s, audited as `subject`."""
        key = ReviewerKey(
            workspace_id=await self.workspace_id(),
            reviewer=reviewer,
            public_key=signatures.public_key_text(raw),
            fingerprint=signatures.fingerprint(raw),
            created_by=actor,
        )
        self.session.add(key)
        await self.session.flush()
        await self.audit(
            actor,
            "reviewer.key.add",
            subject,
            detail={
                "reviewer": reviewer,
                "fingerprint": key.fingerprint,
                "public_key": key.public_key,
            },
        )
        return _view(key)

    async def without_keys(self, reviewers: list[str]) -> list[str]:
        """Those of `reviewers` (people) who have no active key: their decisions would be
        refused where signatures are required."""
        have = await key_repo.reviewers_with_active_keys(self.session, await self.workspace_id())
        return [r for r in reviewers if r not in have]

    async def verify_decision(self, decision: DecisionToVerify) -> SignatureCheck:
        """Whether an active key of the reviewer, or the stageline server's active key (it
        signs for the people who signed in to it, whatever their name), signed this decision
        for this promotion run.

        A refusal reason always starts with "signature does not verify", then says why.
        """
        refused = REFUSED
        who = decision.reviewer
        if who == SERVER_KEY_OWNER:
            return SignatureCheck(
                verified=False,
                reason=f"{refused}: {who} names {SERVER}, which decides nothing itself",
            )
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
        ws = await self.workspace_id()
        keys = list(await key_repo.keys(self.session, ws, who))
        signer = _signer(keys, message, signature)
        if signer is None:
            # The server signs decisions for the people who signed in to it, whoever they are.
            server = await key_repo.keys(self.session, ws, SERVER_KEY_OWNER)
            signer = _signer(server, message, signature)
        if signer is not None:
            shown = signatures.short(signer.fingerprint)
            if signer.revoked_at is not None:
                return SignatureCheck(verified=False, reason=_revoked(signer, signer.revoked_at))
            if signer.reviewer == SERVER_KEY_OWNER:
                return SignatureCheck(
                    verified=True,
                    reason=f"signed by {SERVER} (key {shown}) for {who}, who signed in",
                    fingerprint=shown,
                )
            return SignatureCheck(
                verified=True, reason=f"signed with key {shown} of {who}", fingerprint=shown
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

    async def verify_request(self, request: RequestToVerify) -> SignatureCheck:
        """Whether the stageline server's active key signed this request (the start of a
        promotion, train or rollback) for this workflow: then its requester is the person or
        CI token that signed in to the server. Queries nothing for an unsigned request.

        A refusal of a signature always starts with "signature does not verify"."""
        if request.signature is None:
            return SignatureCheck(
                verified=False,
                reason=f"the request carries no signature of {SERVER}: it was started "
                "outside it (the Temporal UI, the temporal CLI or the embedded stageline CLI)",
            )
        signature = signatures.decode_signature(request.signature)
        if signature is None:
            return SignatureCheck(
                verified=False,
                reason=f"{REFUSED}: it is not a base64-encoded Ed25519 signature",
            )
        message = signatures.request_message(
            namespace=request.namespace,
            workflow_id=request.workflow_id,
            kind=request.kind,
            app=request.app,
            version=request.version,
            environment=request.environment,
            requested_by=request.requested_by,
            on_behalf_of=request.on_behalf_of,
            force=request.force,
        )
        ws = await self.workspace_id()
        keys = await key_repo.keys(self.session, ws, SERVER_KEY_OWNER)
        signer = _signer(keys, message, signature)
        if signer is None:
            if not any(k.revoked_at is None for k in keys):
                return SignatureCheck(
                    verified=False, reason=f"{REFUSED}: {SERVER} has no active signing key"
                )
            return SignatureCheck(
                verified=False,
                reason=f"{REFUSED}: {SERVER} did not sign this {request.kind} request (made "
                "for another app, version, environment, requester or workflow, or with "
                "another key)",
            )
        if signer.revoked_at is not None:
            return SignatureCheck(verified=False, reason=_revoked(signer, signer.revoked_at))
        shown = signatures.short(signer.fingerprint)
        return SignatureCheck(
            verified=True,
            reason=f"requested through {SERVER} (key {shown}) by {request.requested_by}, "
            "who signed in",
            fingerprint=shown,
        )


def _signer(keys: Sequence[ReviewerKey], message: bytes, signature: bytes) -> ReviewerKey | None:
    """The key, of `keys`, that made `signature` over `message`."""
    public = signatures.parse_public_key
    return next(
        (k for k in keys if signatures.verifies(public(k.public_key), message, signature)), None
    )
