"""Reviewers decide: approve, reject, override. Each is sent to the promotion (or the train
stage) that waits, signed when the reviewer has a key."""

from __future__ import annotations

from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from cli.context import run
from cli.output import done, emit_json
from cli.params import json_option
from models.errors import (
    BadInput,
    ExitCode,
    NotFound,
    Refused,
    Unavailable,
)
from models.names import shown
from models.review import DecisionKind, DecisionOutcome, DecisionRequest
from models.settings import Settings
from services import signatures
from services.reviewers import check_person
from services.unit import Units
from worker.client import connect
from workflows.contract import TRAIN, PromotionHandle, TrainHandle


def _not_reachable(promotion_id: str, exc: RPCError) -> Exception:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return NotFound(
            f"promotion {promotion_id!r} is not running (finished, or never started); "
            "see 'stageline status'"
        )
    return Unavailable(f"cannot reach the promotion on Temporal ({exc.message})")


async def _sign(
    client: Client, promotion_id: str, request: DecisionRequest, key: Ed25519PrivateKey
) -> tuple[PromotionHandle, DecisionRequest]:
    """Sign the decision for the run now under `promotion_id`, and aim at that very run: a
    newer run under the same id would refuse the signature rather than take it."""
    try:
        run_id = (await client.get_workflow_handle(promotion_id).describe()).run_id
    except RPCError as exc:
        raise _not_reachable(promotion_id, exc) from None
    message = signatures.decision_message(
        namespace=client.namespace,
        workflow_id=promotion_id,
        run_id=run_id,
        kind=request.kind,
        reviewer=request.reviewer,
        comment=request.comment,
    )
    signed = request.model_copy(update={"signature": signatures.sign(key, message)})
    return PromotionHandle.of(client, promotion_id, run_id), signed


async def send_decision(
    client: Client,
    promotion_id: str,
    request: DecisionRequest,
    key: Ed25519PrivateKey | None = None,
) -> DecisionOutcome:
    """The `decide` update: the answer says at once whether the decision counted. With a
    reviewer's private key, the decision is signed for this promotion run.

    Given a release train's id, the decision goes to the stage that is running.
    """
    # What the workflow is, from Temporal, never from how its id looks (any id can be
    # given to a workflow started from the UI).
    try:
        described = await client.get_workflow_handle(promotion_id).describe()
    except RPCError as exc:
        raise _not_reachable(promotion_id, exc) from None
    if described.workflow_type == TRAIN.name:
        try:
            train = await TrainHandle.of(client, promotion_id).status()
        except RPCError as exc:
            raise NotFound(
                f"release train {promotion_id!r} cannot be reached ({exc.message})"
            ) from None
        if train.active is None:
            raise Refused(f"no stage of {promotion_id} is running; nothing to decide")
        promotion_id = train.active
    handle = PromotionHandle.of(client, promotion_id)
    if key is not None:
        handle, request = await _sign(client, promotion_id, request, key)
    try:
        # Unsigned, the payload stays exactly what it always was (no "signature": null).
        outcome = await handle.decide(request)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise BadInput(
            f"the decision was not accepted: {getattr(cause, 'message', cause)}"
        ) from None
    except RPCError as exc:
        raise _not_reachable(promotion_id, exc) from None
    return outcome


def _reviewer_key(
    settings: Settings, reviewer: str, key_file: Path | None
) -> Ed25519PrivateKey | None:
    """The key to sign with: --key-file (which must work), else the reviewer's default key
    file when there is one, else none (the decision goes unsigned)."""
    if key_file is not None:
        return signatures.read_private_key(key_file)
    default = signatures.default_key_file(settings.home, reviewer)
    if default is None or not default.exists():
        return None
    return signatures.read_private_key(default)


def check_promotion_id(value: str) -> str:
    """A workflow id as stageline prints them; checked before anything goes to Temporal."""
    if not value or len(value) > 255 or any(c.isspace() or not c.isprintable() for c in value):
        raise BadInput(
            f"promotion id {shown(value)} is not valid: give the id 'stageline promote' or "
            "'stageline train' printed (for example promote-web-1.4.0-production)"
        )
    return value


def _decision_command(kind: DecisionKind, help_text: str) -> click.Command:
    @click.command(name=kind, help=help_text)
    @click.argument("promotion_id")
    @click.option("--reviewer", required=True, metavar="WHO", help="Who decides.")
    @click.option("--comment", metavar="TEXT", help="Why (required for an override).")
    @click.option(
        "--key-file",
        type=click.Path(path_type=Path),
        metavar="PATH",
        help="Sign with this Ed25519 private key (default: $STAGELINE_HOME/keys/WHO.ed25519, "
        "when it exists; without a key the decision is unsigned).",
    )
    @json_option
    def command(
        promotion_id: str,
        reviewer: str,
        comment: str | None,
        key_file: Path | None,
        as_json: bool,
    ) -> int:
        request = DecisionRequest(kind=kind, reviewer=reviewer, comment=comment)

        async def work(units: Units) -> int:
            settings = units.settings
            # Before any network: fail fast on what cannot be right.
            check_promotion_id(promotion_id)
            check_person(reviewer, "a decision is one person's: give yours")
            key = _reviewer_key(settings, reviewer, key_file)
            client = await connect(settings)
            outcome = await send_decision(client, promotion_id, request, key)
            signed = " (signed)" if key is not None else ""
            if as_json:
                emit_json(outcome)
            elif outcome.accepted:
                done(f"{outcome.reason}; {promotion_id}{signed}")
            if not outcome.accepted:
                hint = ""
                if key is None and outcome.signature_required:
                    where = signatures.default_key_file(settings.home, reviewer)
                    hint = f" (no key file at {where}; give one with --key-file)" if where else ""
                raise Refused(f"{kind} refused: {outcome.reason}{hint}")
            return ExitCode.OK

        return run(work)

    return command


approve = _decision_command("approve", "Approve a promotion waiting for approval.")
reject = _decision_command("reject", "Reject a promotion: it ends rejected, nothing deployed.")
override = _decision_command(
    "override", "Break-glass: let a promotion through a deploy freeze (audited; needs --comment)."
)


COMMANDS = [approve, reject, override]
