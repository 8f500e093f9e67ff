"""`stageline env`: the ordered promotion chain of environments, and each one's protection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from cli.context import actor, run
from cli.output import day, deleted, done, emit_json, print_warnings, table
from cli.params import ENVIRONMENT, TEXT, json_option
from models.errors import (
    BadInput,
)
from models.text import duration
from models.workspace import Protection
from services.secrets import expiry_warnings
from services.unit import Units

if TYPE_CHECKING:
    pass


@click.group()
def env() -> None:
    """Environments: the ordered promotion chain and each one's protection rules."""


@env.command("create")
@click.argument("name", type=ENVIRONMENT)
@click.option(
    "--after",
    metavar="ENV",
    type=ENVIRONMENT,
    help="Place it right after ENV (default: at the end).",
)
@click.option("--required-approvals", type=click.IntRange(0, 20), default=0, show_default=True)
@click.option(
    "--reviewer", "reviewers", multiple=True, metavar="WHO", type=TEXT, help="Repeatable."
)
@click.option("--allow-self-review", is_flag=True, help="Let the requester approve their own.")
@click.option("--wait-minutes", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--approval-timeout-minutes",
    type=click.IntRange(0),
    default=7 * 24 * 60,
    show_default=True,
    help="0: wait for approvals forever.",
)
@click.option(
    "--require-signed-approvals",
    is_flag=True,
    help="Every decision must be signed by a registered reviewer key (see 'reviewer key').",
)
@json_option
def env_create(
    name: str,
    after: str | None,
    required_approvals: int,
    reviewers: tuple[str, ...],
    allow_self_review: bool,
    wait_minutes: int,
    approval_timeout_minutes: int,
    require_signed_approvals: bool,
    as_json: bool,
) -> None:
    """Create environment NAME in the promotion chain."""
    protection = Protection(
        required_approvals=required_approvals,
        reviewers=list(dict.fromkeys(reviewers)),
        allow_self_review=allow_self_review,
        wait_minutes=wait_minutes,
        approval_timeout_minutes=approval_timeout_minutes,
        require_signed_approvals=require_signed_approvals,
    )

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.environments.create_environment(
                name, actor=actor(), after=after, protection=protection
            )
            chain = await w.environments.list_environments()
        if as_json:
            emit_json(view)
        else:
            done(f"created environment {name}; chain: {' -> '.join(e.name for e in chain)}")

    run(work)


def _protection_text(p: Protection) -> str:
    if not p.protected and not p.wait_minutes and not p.require_verified_requester:
        return "unprotected"
    parts = []
    if p.require_verified_requester:
        parts.append("verified requesters only")
    if p.protected:
        parts.append(f"{p.required_approvals} approval(s) from {', '.join(p.reviewers)}")
        if p.allow_self_review:
            parts.append("self-review allowed")
        if p.require_signed_approvals:
            parts.append("signed approvals")
        if p.approval_timeout_minutes:
            parts.append(f"approval timeout {duration(p.approval_timeout_minutes)}")
    if p.wait_minutes:
        parts.append(f"wait {duration(p.wait_minutes)}")
    return "; ".join(parts)


@env.command("list")
@json_option
def env_list(as_json: bool) -> None:
    """List the environments in promotion order."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            views = await w.environments.list_environments()
        if as_json:
            emit_json(views)
            return
        table(
            ["#", "ENVIRONMENT", "PROTECTION", "APPS"],
            [
                (v.position + 1, v.name, _protection_text(v.protection), ", ".join(v.apps))
                for v in views
            ],
            empty="no environments yet; create one with 'stageline env create dev'",
        )

    run(work)


@env.command("show")
@click.argument("name", type=ENVIRONMENT)
@json_option
def env_show(name: str, as_json: bool) -> None:
    """Show one environment: its place, protection, apps, variables and secrets."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            view = await w.environments.show_environment(name)
            variables = await w.variables.list_variables(name)
            secrets = await w.secrets.list_secrets(name)
        if as_json:
            emit_json(
                {
                    **view.model_dump(mode="json"),
                    "variables": [v.model_dump(mode="json") for v in variables],
                    "secrets": [s.model_dump(mode="json") for s in secrets],
                }
            )
            print_warnings(expiry_warnings(secrets))
            return
        done(f"environment {view.name} (position {view.position + 1} in the chain)")
        done(f"protection: {_protection_text(view.protection)}")
        done(f"apps: {', '.join(view.apps) or 'none'}")
        done("variables:")
        table(["KEY", "VALUE", "VERSION"], [(v.key, v.value, v.version) for v in variables])
        done("secrets:")
        table(
            ["KEY", "KIND", "VERSION", "EXPIRES"],
            [(s.key, s.kind, s.version, day(s.expires_at)) for s in secrets],
        )
        print_warnings(expiry_warnings(secrets))

    run(work)


@env.command("rename")
@click.argument("old", type=ENVIRONMENT)
@click.argument("new", type=ENVIRONMENT)
@json_option
def env_rename(old: str, new: str, as_json: bool) -> None:
    """Rename an environment that no deployment refers to yet."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.environments.rename_environment(old, new, actor=actor())
        if as_json:
            emit_json({**view.model_dump(mode="json"), "renamed_from": old})
        else:
            done(f"renamed environment {old} to {new}")

    run(work)


@env.command("delete")
@click.argument("name", type=ENVIRONMENT)
@json_option
def env_delete(name: str, as_json: bool) -> None:
    """Remove an environment that no app points to and no deployment refers to."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            await w.environments.delete_environment(name, actor=actor())
        if as_json:
            emit_json(deleted("environment", name))
        else:
            done(f"removed environment {name}")

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


@env.command("protect")
@click.argument("name", type=ENVIRONMENT)
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
    "(see 'stageline reviewer key'), or by the stageline server for who signed in.",
)
@click.option(
    "--require-verified-requester/--no-require-verified-requester",
    default=None,
    help="Accept only promotions and rollbacks requested through the stageline server (its "
    "signature proves who asked); starts from the Temporal UI or an embedded CLI are refused.",
)
@json_option
def env_protect(
    name: str,
    required_approvals: int | None,
    reviewers: tuple[str, ...],
    allow_self_review: bool | None,
    wait_minutes: int | None,
    approval_timeout_minutes: int | None,
    require_signed_approvals: bool | None,
    require_verified_requester: bool | None,
    as_json: bool,
) -> None:
    """Change an environment's protection rules (waiting promotions keep theirs)."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.environments.protect_environment(
                name,
                actor=actor(),
                required_approvals=required_approvals,
                reviewers=list(reviewers) if reviewers else None,
                allow_self_review=allow_self_review,
                wait_minutes=wait_minutes,
                approval_timeout_minutes=approval_timeout_minutes,
                require_signed_approvals=require_signed_approvals,
                require_verified_requester=require_verified_requester,
            )
            missing: list[str] = []
            # Through a server, decisions are signed by it: no reviewer needs a key.
            if view.protection.require_signed_approvals and not as_json and not units.remote:
                people = await w.environments.eligible_reviewers(
                    await w.environments.environment(name)
                )
                missing = await w.reviewers.without_keys(people)
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
            + (", requests only through the server" if p.require_verified_requester else "")
        )
        if missing:
            click.echo(
                f"note: {', '.join(missing)} ha{'s' if len(missing) == 1 else 've'} no "
                "signing key yet, so their decisions are refused until one is registered "
                "with 'stageline reviewer key add'",
                err=True,
            )

    run(work)


async def _nudge(units: Units, environment: str) -> None:
    # Imported here: the Temporal client is heavy, and only freezes need it.
    from worker.runs import nudge_frozen

    await nudge_frozen(units, environment)


@env.command("freeze")
@click.argument("name", type=ENVIRONMENT)
@click.option("--reason", required=True, metavar="TEXT")
@click.option("--from", "starts", metavar="WHEN", help="ISO 8601 (default: now).")
@click.option("--until", "ends", metavar="WHEN", help="ISO 8601 (default: until lifted).")
@click.option(
    "--for", "minutes", type=click.IntRange(1), metavar="MINUTES", help="Instead of --until."
)
@json_option
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

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.environments.freeze(
                name, actor=actor(), reason=reason, starts_at=starts_at, ends_at=ends_at
            )
        await _nudge(units, name)
        if as_json:
            emit_json(view)
        else:
            until = f"{view.ends_at:%Y-%m-%d %H:%M} UTC" if view.ends_at else "lifted"
            done(f"froze {name} from {view.starts_at:%Y-%m-%d %H:%M} UTC until {until}: {reason}")

    run(work)


@env.command("unfreeze")
@click.argument("name", type=ENVIRONMENT)
@json_option
def env_unfreeze(name: str, as_json: bool) -> None:
    """Lift every freeze of an environment; held promotions go on."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            lifted = await w.environments.unfreeze(name, actor=actor())
        await _nudge(units, name)
        if as_json:
            emit_json({"environment": name, "lifted": [w.model_dump(mode="json") for w in lifted]})
        else:
            done(
                f"lifted {len(lifted)} freeze(s) of {name}" if lifted else f"{name} was not frozen"
            )

    run(work)


COMMANDS = [env]
