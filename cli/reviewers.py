"""`stageline reviewer key`: reviewers' Ed25519 signing keys, for environments that
require signed approvals."""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import actor, run
from cli.output import done, emit_json, table
from cli.params import json_option
from models.settings import Settings
from services import signatures
from services.reviewers import check_person
from services.unit import Units

# -- reviewers' signing keys --------------------------------------------------------------------


@click.group()
def reviewer() -> None:
    """Reviewers: their signing keys, for environments that require signed approvals."""


@reviewer.group("key")
def reviewer_key() -> None:
    """Ed25519 keys: reviewers sign their decisions; the workspace holds the public halves."""


@reviewer_key.command("generate")
@click.argument("who")
@click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Where to write the private key (default: $STAGELINE_HOME/keys/WHO.ed25519).",
)
@json_option
def reviewer_key_generate(who: str, key_file: Path | None, as_json: bool) -> None:
    """Make a key pair for reviewer WHO on this machine: the private key goes to a file
    (mode 0600) and never leaves it; the public key is printed, for 'reviewer key add'."""
    check_person(who)
    settings = Settings.from_env()  # no database: this runs on the reviewer's own machine
    path = key_file or signatures.default_key_file(settings.home, who)
    assert path is not None  # check_person admits only file-safe names
    public = signatures.public_key_of(signatures.write_private_key(path))
    text = signatures.public_key_text(public)
    if as_json:
        emit_json(
            {
                "reviewer": who,
                "key_file": str(path.absolute()),
                "public_key": text,
                "fingerprint": signatures.short(signatures.fingerprint(public)),
            }
        )
        return
    click.echo(text)
    click.echo(
        f"wrote the private key of {who} to {path} (mode 0600; keep it there, share nothing "
        f"but the public key); register it with: stageline reviewer key add {who} {text}",
        err=True,
    )


# A private key pasted by mistake starts with "-----": without this, click would take it for
# an option and print it back in its error.
@reviewer_key.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("who")
@click.argument("public_key")
@json_option
def reviewer_key_add(who: str, public_key: str, as_json: bool) -> None:
    """Register PUBLIC_KEY (as 'reviewer key generate' printed it) as a key of reviewer WHO."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.reviewers.add_key(who, public_key, actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"registered key {view.fingerprint} for {who}")

    run(work)


@reviewer_key.command("list")
@click.option("--reviewer", metavar="WHO", help="Only this reviewer's keys.")
@json_option
def reviewer_key_list(reviewer: str | None, as_json: bool) -> None:
    """List registered keys, revoked ones included."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            views = await w.reviewers.list_keys(reviewer)
        if as_json:
            emit_json(views)
            return
        table(
            ["REVIEWER", "FINGERPRINT", "STATE", "ADDED", "PUBLIC KEY"],
            [
                (
                    v.reviewer,
                    v.fingerprint,
                    "active" if v.active else f"revoked {v.revoked_at:%Y-%m-%d} by {v.revoked_by}",
                    f"{v.created_at:%Y-%m-%d} by {v.created_by}",
                    v.public_key,
                )
                for v in views
            ],
            empty=(
                f"{reviewer} has no registered keys; see 'stageline reviewer key add --help'"
                if reviewer
                else "no reviewer keys yet; see 'stageline reviewer key generate --help'"
            ),
        )

    run(work)


@reviewer_key.command("revoke")
@click.argument("who")
@click.argument("fingerprint")
@json_option
def reviewer_key_revoke(who: str, fingerprint: str, as_json: bool) -> None:
    """Revoke the key of reviewer WHO whose fingerprint starts with FINGERPRINT; decisions
    signed with it are refused from now on, in promotions already waiting too."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.reviewers.revoke_key(who, fingerprint, actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"revoked key {view.fingerprint} of {who}")

    run(work)


COMMANDS = [reviewer]
