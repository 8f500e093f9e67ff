"""Commands of reviewers and release managers: approve, reject, override; groups; freezes."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from cli.context import actor, run
from cli.output import done, emit_json, table
from models.errors import (
    BadInput,
    ConfigurationError,
    ExitCode,
    NotFound,
    Refused,
    Unavailable,
)
from models.names import shown
from models.review import DecisionKind, DecisionOutcome, DecisionRequest
from models.settings import Settings
from models.text import duration
from services import signatures
from services.environments import EnvironmentService
from services.reviewers import ReviewerKeyService, check_person
from store.database import Database
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
    @click.option("--json", "as_json", is_flag=True)
    def command(
        promotion_id: str,
        reviewer: str,
        comment: str | None,
        key_file: Path | None,
        as_json: bool,
    ) -> int:
        request = DecisionRequest(kind=kind, reviewer=reviewer, comment=comment)

        async def work(settings: Settings, db: Database) -> int:
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
                if key is None and outcome.reason.startswith("unsigned"):
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


# -- groups ---------------------------------------------------------------------------------


@click.group()
def group() -> None:
    """Named groups of reviewers, written @name in an environment's reviewers."""


@group.command("create")
@click.argument("name")
@click.option("--member", "members", multiple=True, required=True, metavar="WHO")
@click.option("--json", "as_json", is_flag=True)
def group_create(name: str, members: tuple[str, ...], as_json: bool) -> None:
    """Create reviewer group NAME."""

    async def work(settings: Settings, db: Database) -> None:
        view = await EnvironmentService(db, settings).create_group(
            name, list(members), actor=actor()
        )
        if as_json:
            emit_json(view)
        else:
            done(f"created group @{name}: {', '.join(view.members)}")

    run(work)


@group.command("rename")
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True)
def group_rename(old: str, new: str, as_json: bool) -> None:
    """Rename reviewer group OLD to NEW, and @OLD to @NEW in every environment's reviewers."""

    async def work(settings: Settings, db: Database) -> None:
        result = await EnvironmentService(db, settings).rename_group(old, new, actor=actor())
        if as_json:
            emit_json(result)
        else:
            where = ", ".join(result.environments) or "no environment"
            done(f"renamed group @{old} to @{new}; reviewers updated in {where}")

    run(work)


@group.command("delete")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def group_delete(name: str, as_json: bool) -> None:
    """Remove reviewer group NAME; refused while an environment lists @NAME as a reviewer."""

    async def work(settings: Settings, db: Database) -> None:
        view = await EnvironmentService(db, settings).delete_group(name, actor=actor())
        if as_json:
            emit_json({"kind": "group", "name": name, "deleted": True, "members": view.members})
        else:
            done(f"removed group @{name}")

    run(work)


@group.command("list")
@click.option("--json", "as_json", is_flag=True)
def group_list(as_json: bool) -> None:
    """List reviewer groups."""

    async def work(settings: Settings, db: Database) -> None:
        views = await EnvironmentService(db, settings).list_groups()
        if as_json:
            emit_json(views)
        else:
            table(["GROUP", "MEMBERS"], [(f"@{g.name}", ", ".join(g.members)) for g in views])

    run(work)


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
@click.option("--json", "as_json", is_flag=True)
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
@click.option("--json", "as_json", is_flag=True)
def reviewer_key_add(who: str, public_key: str, as_json: bool) -> None:
    """Register PUBLIC_KEY (as 'reviewer key generate' printed it) as a key of reviewer WHO."""

    async def work(settings: Settings, db: Database) -> None:
        view = await ReviewerKeyService(db, settings).add_key(who, public_key, actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"registered key {view.fingerprint} for {who}")

    run(work)


@reviewer_key.command("list")
@click.option("--reviewer", metavar="WHO", help="Only this reviewer's keys.")
@click.option("--json", "as_json", is_flag=True)
def reviewer_key_list(reviewer: str | None, as_json: bool) -> None:
    """List registered keys, revoked ones included."""

    async def work(settings: Settings, db: Database) -> None:
        views = await ReviewerKeyService(db, settings).list_keys(reviewer)
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
@click.option("--json", "as_json", is_flag=True)
def reviewer_key_revoke(who: str, fingerprint: str, as_json: bool) -> None:
    """Revoke the key of reviewer WHO whose fingerprint starts with FINGERPRINT; decisions
    signed with it are refused from now on, in promotions already waiting too."""

    async def work(settings: Settings, db: Database) -> None:
        view = await ReviewerKeyService(db, settings).revoke_key(who, fingerprint, actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"revoked key {view.fingerprint} of {who}")

    run(work)


# -- environment protection and freezes --------------------------------------------------------


def _when(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(
            f"{what} {value!r} is not a date and time; use ISO 8601, e.g. 2026-12-24T18:00"
            " (UTC unless it names an offset)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@click.command("protect")
@click.argument("name")
@click.option("--required-approvals", type=click.IntRange(0, 20))
@click.option(
    "--reviewer",
    "reviewers",
    multiple=True,
    metavar="WHO",
    help="Replaces the reviewer list; repeatable; @group for a group.",
)
@click.option("--allow-self-review/--no-self-review", default=None)
@click.option("--wait-minutes", type=click.IntRange(0))
@click.option("--approval-timeout-minutes", type=click.IntRange(0), help="0: wait forever.")
@click.option(
    "--require-signed-approvals/--no-require-signed-approvals",
    default=None,
    help="Accept only decisions signed by a key registered for their reviewer "
    "(see 'stageline reviewer key').",
)
@click.option("--json", "as_json", is_flag=True)
def env_protect(
    name: str,
    required_approvals: int | None,
    reviewers: tuple[str, ...],
    allow_self_review: bool | None,
    wait_minutes: int | None,
    approval_timeout_minutes: int | None,
    require_signed_approvals: bool | None,
    as_json: bool,
) -> None:
    """Change an environment's protection rules (waiting promotions keep theirs)."""

    async def work(settings: Settings, db: Database) -> None:
        envs = EnvironmentService(db, settings)
        view = await envs.protect_environment(
            name,
            actor=actor(),
            required_approvals=required_approvals,
            reviewers=list(reviewers) if reviewers else None,
            allow_self_review=allow_self_review,
            wait_minutes=wait_minutes,
            approval_timeout_minutes=approval_timeout_minutes,
            require_signed_approvals=require_signed_approvals,
        )
        if as_json:
            emit_json(view)
            return
        p = view.protection
        done(
            f"{name}: {p.required_approvals} approval(s) from {', '.join(p.reviewers) or '-'}"
            f", self-review {'allowed' if p.allow_self_review else 'not allowed'}, wait "
            f"{duration(p.wait_minutes)}, approval timeout "
            f"{duration(p.approval_timeout_minutes) if p.approval_timeout_minutes else 'none'}"
            f", signed approvals {'required' if p.require_signed_approvals else 'not required'}"
        )
        if p.require_signed_approvals:
            people = await envs.eligible_reviewers_of(name)
            missing = await ReviewerKeyService(db, settings).without_keys(people)
            if missing:
                click.echo(
                    f"note: {', '.join(missing)} ha{'s' if len(missing) == 1 else 've'} no "
                    "signing key yet, so their decisions are refused until one is registered "
                    "with 'stageline reviewer key add'",
                    err=True,
                )

    run(work)


async def _nudge_frozen(settings: Settings, db: Database, environment: str) -> None:
    """Tell promotions held by a freeze in `environment` to look again now."""
    from services.views import ViewService

    view = await ViewService(db, settings).status(environment=environment)
    if not view.in_progress:
        return
    try:
        client = await connect(settings)
    except (Unavailable, ConfigurationError):
        return  # they look again by themselves within minutes
    for promotion in view.in_progress:
        with suppress(RPCError):
            await PromotionHandle.of(client, promotion.promotion_id).freeze_changed()


@click.command("freeze")
@click.argument("name")
@click.option("--reason", required=True, metavar="TEXT")
@click.option("--from", "starts", metavar="WHEN", help="ISO 8601 (default: now).")
@click.option("--until", "ends", metavar="WHEN", help="ISO 8601 (default: until lifted).")
@click.option(
    "--for", "minutes", type=click.IntRange(1), metavar="MINUTES", help="Instead of --until."
)
@click.option("--json", "as_json", is_flag=True)
def env_freeze(
    name: str, reason: str, starts: str | None, ends: str | None, minutes: int | None, as_json: bool
) -> None:
    """Freeze deploys into an environment: promotions wait until it ends or an override."""
    if ends and minutes:
        raise BadInput("give --until or --for, not both")
    starts_at = _when(starts, "--from")
    ends_at = _when(ends, "--until")
    if minutes:
        ends_at = (starts_at or datetime.now(UTC)) + timedelta(minutes=minutes)

    async def work(settings: Settings, db: Database) -> None:
        view = await EnvironmentService(db, settings).freeze(
            name, actor=actor(), reason=reason, starts_at=starts_at, ends_at=ends_at
        )
        await _nudge_frozen(settings, db, name)
        if as_json:
            emit_json(view)
        else:
            until = f"{view.ends_at:%Y-%m-%d %H:%M} UTC" if view.ends_at else "lifted"
            done(f"froze {name} from {view.starts_at:%Y-%m-%d %H:%M} UTC until {until}: {reason}")

    run(work)


@click.command("unfreeze")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def env_unfreeze(name: str, as_json: bool) -> None:
    """Lift every freeze of an environment; held promotions go on."""

    async def work(settings: Settings, db: Database) -> None:
        lifted = await EnvironmentService(db, settings).unfreeze(name, actor=actor())
        await _nudge_frozen(settings, db, name)
        if as_json:
            emit_json({"environment": name, "lifted": [w.model_dump(mode="json") for w in lifted]})
        else:
            done(
                f"lifted {len(lifted)} freeze(s) of {name}" if lifted else f"{name} was not frozen"
            )

    run(work)


ENV_COMMANDS = [env_protect, env_freeze, env_unfreeze]
COMMANDS = [approve, reject, override, group, reviewer]
