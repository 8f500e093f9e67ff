"""Reviewers decide: approve, reject, override. Each is sent to the promotion (or the train
stage) that waits, signed when the reviewer has a key."""

from __future__ import annotations

from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cli.context import run
from cli.output import done, emit_json
from cli.params import json_option
from cli.remote import RemoteUnits
from models.errors import (
    BadInput,
    ExitCode,
    Refused,
)
from models.names import shown
from models.review import DecisionKind, DecisionRequest
from models.settings import Settings
from services import signatures
from services.reviewers import check_person
from services.unit import Units
from worker.client import connect
from worker.runs import send_decision


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


async def _remote_decision(
    units: RemoteUnits,
    kind: DecisionKind,
    promotion_id: str,
    reviewer: str | None,
    comment: str | None,
    as_json: bool,
) -> int:
    """Through the server: decided as the signed-in principal, signed by the server."""
    outcome = await units.decide(promotion_id, kind, reviewer, comment)
    if as_json:
        emit_json(outcome)
    elif outcome.accepted:
        done(f"{outcome.reason}; {promotion_id} (signed by the server)")
    if not outcome.accepted:
        raise Refused(f"{kind} refused: {outcome.reason}")
    return ExitCode.OK


def _decision_command(kind: DecisionKind, help_text: str) -> click.Command:
    @click.command(name=kind, help=help_text)
    @click.argument("promotion_id")
    @click.option(
        "--reviewer",
        metavar="WHO",
        help="Who decides (required embedded; through a server it is who signed in).",
    )
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
        reviewer: str | None,
        comment: str | None,
        key_file: Path | None,
        as_json: bool,
    ) -> int:
        async def work(units: Units) -> int:
            check_promotion_id(promotion_id)
            if isinstance(units, RemoteUnits):
                return await _remote_decision(units, kind, promotion_id, reviewer, comment, as_json)
            if reviewer is None:
                raise click.UsageError(
                    "Missing option '--reviewer'.", click.get_current_context(silent=True)
                )
            request = DecisionRequest(kind=kind, reviewer=reviewer, comment=comment)
            settings = units.settings
            # Before any network: fail fast on what cannot be right.
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
