"""Commands of reviewers and release managers: approve, reject, override; groups; freezes."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta

import click
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from cli.context import actor, run
from cli.output import done, emit_json, table
from models.errors import BadInput, ExitCode, NotFound, Refused, Unavailable
from models.promotion import TrainStatus
from models.review import DecisionKind, DecisionOutcome, DecisionRequest
from models.settings import Settings
from services.environments import EnvironmentService
from store.database import Database
from worker.client import connect


async def send_decision(
    client: Client, promotion_id: str, request: DecisionRequest
) -> DecisionOutcome:
    """The `decide` update: the answer says at once whether the decision counted.

    Given a release train's id, the decision goes to the stage that is running.
    """
    if promotion_id.startswith("train-"):
        try:
            train = await client.get_workflow_handle(promotion_id).query(
                "status", result_type=TrainStatus
            )
        except RPCError as exc:
            raise NotFound(
                f"release train {promotion_id!r} cannot be reached ({exc.message})"
            ) from None
        if train.active is None:
            raise Refused(f"no stage of {promotion_id} is running; nothing to decide")
        promotion_id = train.active
    handle = client.get_workflow_handle(promotion_id)
    try:
        outcome: DecisionOutcome = await handle.execute_update(
            "decide", request, result_type=DecisionOutcome
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise BadInput(
            f"the decision was not accepted: {getattr(cause, 'message', cause)}"
        ) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(
                f"promotion {promotion_id!r} is not running (finished, or never started); "
                "see 'stageline status'"
            ) from None
        raise Unavailable(f"cannot reach the promotion on Temporal ({exc.message})") from None
    return outcome


def _decision_command(kind: DecisionKind, help_text: str) -> click.Command:
    @click.command(name=kind, help=help_text)
    @click.argument("promotion_id")
    @click.option("--reviewer", required=True, metavar="WHO", help="Who decides.")
    @click.option("--comment", metavar="TEXT", help="Why (required for an override).")
    @click.option("--json", "as_json", is_flag=True)
    def command(promotion_id: str, reviewer: str, comment: str | None, as_json: bool) -> int:
        request = DecisionRequest(kind=kind, reviewer=reviewer, comment=comment)

        async def work(settings: Settings, db: Database) -> int:
            client = await connect(settings)
            outcome = await send_decision(client, promotion_id, request)
            if as_json:
                emit_json(outcome)
            elif outcome.accepted:
                done(f"{outcome.reason}; {promotion_id}")
            if not outcome.accepted:
                raise Refused(f"{kind} refused: {outcome.reason}")
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
@click.option("--json", "as_json", is_flag=True)
def env_protect(
    name: str,
    required_approvals: int | None,
    reviewers: tuple[str, ...],
    allow_self_review: bool | None,
    wait_minutes: int | None,
    approval_timeout_minutes: int | None,
    as_json: bool,
) -> None:
    """Change an environment's protection rules (waiting promotions keep theirs)."""

    async def work(settings: Settings, db: Database) -> None:
        view = await EnvironmentService(db, settings).protect_environment(
            name,
            actor=actor(),
            required_approvals=required_approvals,
            reviewers=list(reviewers) if reviewers else None,
            allow_self_review=allow_self_review,
            wait_minutes=wait_minutes,
            approval_timeout_minutes=approval_timeout_minutes,
        )
        if as_json:
            emit_json(view)
        else:
            p = view.protection
            done(
                f"{name}: {p.required_approvals} approval(s) from {', '.join(p.reviewers) or '-'}"
                f", self-review {'allowed' if p.allow_self_review else 'not allowed'}, wait "
                f"{p.wait_minutes} min, approval timeout {p.approval_timeout_minutes or 'none'}"
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
    except Unavailable:
        return  # they look again by themselves within minutes
    for promotion in view.in_progress:
        with suppress(RPCError):
            await client.get_workflow_handle(promotion.promotion_id).signal("freeze_changed")


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
def env_unfreeze(name: str) -> None:
    """Lift every freeze of an environment; held promotions go on."""

    async def work(settings: Settings, db: Database) -> None:
        lifted = await EnvironmentService(db, settings).unfreeze(name, actor=actor())
        await _nudge_frozen(settings, db, name)
        done(f"lifted {len(lifted)} freeze(s) of {name}" if lifted else f"{name} was not frozen")

    run(work)


ENV_COMMANDS = [env_protect, env_freeze, env_unfreeze]
COMMANDS = [approve, reject, override, group]
