"""`stageline env`: the ordered promotion chain of environments, and each one's protection."""

from __future__ import annotations

import click

from cli.context import actor, run
from cli.output import day, deleted, done, emit_json, print_warnings, table
from cli.params import ENVIRONMENT, TEXT, json_option
from models.settings import Settings
from models.text import duration
from models.workspace import Protection
from services.configuration import ConfigurationService, expiry_warnings
from services.environments import EnvironmentService
from store.database import Database


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

    async def work(settings: Settings, db: Database) -> None:
        view = await EnvironmentService(db, settings).create_environment(
            name, actor=actor(), after=after, protection=protection
        )
        if as_json:
            emit_json(view)
        else:
            chain = await EnvironmentService(db, settings).list_environments()
            done(f"created environment {name}; chain: {' -> '.join(e.name for e in chain)}")

    run(work)


def _protection_text(p: Protection) -> str:
    if not p.protected and not p.wait_minutes:
        return "unprotected"
    parts = []
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

    async def work(settings: Settings, db: Database) -> None:
        views = await EnvironmentService(db, settings).list_environments()
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

    async def work(settings: Settings, db: Database) -> None:
        view = await EnvironmentService(db, settings).show_environment(name)
        config = ConfigurationService(db, settings)
        variables = await config.list_variables(name)
        secrets = await config.list_secrets(name)
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

    async def work(settings: Settings, db: Database) -> None:
        view = await EnvironmentService(db, settings).rename_environment(old, new, actor=actor())
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

    async def work(settings: Settings, db: Database) -> None:
        await EnvironmentService(db, settings).delete_environment(name, actor=actor())
        if as_json:
            emit_json(deleted("environment", name))
        else:
            done(f"removed environment {name}")

    run(work)


COMMANDS = [env]
