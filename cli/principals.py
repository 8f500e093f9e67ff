"""`stageline user`, `stageline token` and `stageline login`: the people and the CI jobs a
stageline server lets in, and their roles per environment. Embedded, or through a server by
an admin; passwords are read from a terminal prompt or stdin, never from an argument, and a CI
token is printed once."""

from __future__ import annotations

import os
import sys

import click

from cli.context import actor, run, stdin_text
from cli.output import day, done, emit_json, table
from cli.params import json_option
from models.errors import BadInput
from models.identity import (
    Grant,
    PrincipalKind,
    PrincipalView,
    Role,
    TokenView,
    check_principal_name,
    parse_duration,
    parse_grant,
)
from models.names import shown
from services.unit import Units


@click.command()
@click.argument("name")
@click.option(
    "--url",
    envvar="STAGELINE_URL",
    required=True,
    metavar="URL",
    help="The server (default: STAGELINE_URL).",
)
@json_option
def login(name: str, url: str, as_json: bool) -> None:
    """Sign in to a stageline server as NAME; the session (12 hours) is kept in
    $STAGELINE_HOME/session.json (mode 0600) for every later command with STAGELINE_URL.
    The password is asked on a terminal or read from stdin."""
    import asyncio

    from cli.remote import Connection, save_session
    from models.settings import Settings

    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise BadInput(f"--url {url!r} is not an http:// or https:// address")
    check_principal_name(name)
    password = _password(name, confirm=False)

    async def sign_in() -> dict[str, str]:
        server = Connection(url, None)
        try:
            answer: dict[str, str] = await server.call(
                "POST", "/login", {"name": name, "password": password}
            )
            return answer
        finally:
            await server.close()

    issued = asyncio.run(sign_in())
    path = save_session(
        Settings.from_env(), url, issued["name"], issued["token"], issued["expires_at"]
    )
    if as_json:  # never the token: it is in the session file
        emit_json({"url": url, "name": issued["name"], "expires_at": issued["expires_at"]})
    else:
        done(f"signed in to {url} as {issued['name']} until {issued['expires_at']} ({path})")


@click.command()
@json_option
def logout(as_json: bool) -> None:
    """End the session 'stageline login' stored for STAGELINE_URL: on the server (the token
    stops working at once) and here (the session file is removed)."""
    import asyncio

    from cli.remote import connection, server_url, session_file, stored_token
    from models.settings import Settings

    settings = Settings.from_env()
    url = server_url()
    if url is None:
        raise BadInput("STAGELINE_URL is not set: there is no server session to end")
    token = stored_token(settings, url)
    if token is not None:
        os.environ["STAGELINE_TOKEN"] = token  # end this session, not a CI token in the env

        async def end() -> None:
            server = connection(settings)
            assert server is not None
            try:
                await server.call("POST", "/logout")
            finally:
                await server.close()

        asyncio.run(end())
    session_file(settings).unlink(missing_ok=True)
    if as_json:
        emit_json({"url": url, "ended": token is not None})
    else:
        done(f"signed out of {url}" if token else f"no session for {url} here; nothing to end")


def _roles(grants: list[Grant]) -> str:
    return ", ".join(str(g) for g in grants) or "-"


def _state(view: PrincipalView) -> str:
    return "active" if view.disabled_at is None else f"disabled {day(view.disabled_at)}"


def _password(name: str, confirm: bool = True) -> str:
    """From a terminal, asked (twice for a new one) without echo; else all of stdin."""
    if sys.stdin is None or sys.stdin.closed:
        raise BadInput(f"no password for {shown(name)}: pipe it on stdin or run on a terminal")
    if sys.stdin.isatty():
        return str(
            click.prompt(
                f"password for {name}", hide_input=True, confirmation_prompt=confirm, err=True
            )
        )
    return stdin_text(f"the password for {shown(name)}", "type it, or pipe text")


@click.group()
def user() -> None:
    """People: their passwords and their roles per environment."""


@user.command("add")
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="ENV:ROLE",
    help="A role in an environment ('*' for every one): viewer, deployer, reviewer or admin. "
    "Repeatable, e.g. --role production:reviewer --role '*:viewer'.",
)
@json_option
def user_add(name: str, roles: tuple[str, ...], as_json: bool) -> None:
    """Add person NAME. The password is asked on a terminal (twice) or read from stdin; at
    least 12 characters. Names are never reused, even once disabled."""
    grants = [parse_grant(r) for r in roles]
    password = _password(name)

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.principals.add_user(name, password, grants, actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"added user {name} ({_roles(view.roles)})")

    run(work)


@user.command("list")
@json_option
def user_list(as_json: bool) -> None:
    """People, their roles, and whether they are disabled."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            views = await w.principals.list_principals(PrincipalKind.PERSON)
        if as_json:
            emit_json(views)
            return
        table(
            ["NAME", "ROLES", "STATE", "ADDED"],
            [
                (v.name, _roles(v.roles), _state(v), f"{day(v.created_at)} by {v.created_by}")
                for v in views
            ],
            empty="no users yet; add one with 'stageline user add NAME --role ENV:ROLE'",
        )

    run(work)


@user.command("disable")
@click.argument("name")
@json_option
def user_disable(name: str, as_json: bool) -> None:
    """Disable person NAME: no more logins, and their sessions end at once."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.principals.disable_user(name, actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"disabled user {name}")

    run(work)


@click.group()
def token() -> None:
    """CI tokens: one per job, scoped to apps and environments, with an expiry."""


@token.command("create")
@click.argument("name")
@click.option("--app", "apps", multiple=True, metavar="APP", help="Only this app (repeatable).")
@click.option(
    "--env",
    "environments",
    multiple=True,
    metavar="ENV",
    help="Only this environment (repeatable); the role applies in each.",
)
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.DEPLOYER.value,
    show_default=True,
    help="What the job may do in its environments.",
)
@click.option(
    "--expires", default="30d", show_default=True, metavar="DURATION", help="e.g. 12h, 90d"
)
@json_option
def token_create(
    name: str,
    apps: tuple[str, ...],
    environments: tuple[str, ...],
    role: str,
    expires: str,
    as_json: bool,
) -> None:
    """Create CI job NAME and print its token, once: store it in the CI system's secrets
    (as STAGELINE_TOKEN). Only a hash of it is kept."""
    lifetime = parse_duration(expires)

    async def work(units: Units) -> None:
        async with units.write() as w:
            issued = await w.principals.create_ci_token(
                name,
                apps=list(apps),
                environments=list(environments),
                role=Role(role),
                lifetime=lifetime,
                actor=actor(),
            )
        if as_json:
            emit_json(issued)
            return
        click.echo(issued.token)
        scope = ", ".join(environments) or "every environment"
        click.echo(
            f"token for {name} ({role} in {scope}; apps: {', '.join(apps) or 'all'}), valid "
            f"until {issued.expires_at:%Y-%m-%d %H:%M} UTC; it is shown this once",
            err=True,
        )

    run(work)


@token.command("list")
@json_option
def token_list(as_json: bool) -> None:
    """CI jobs with their roles and tokens (the start of each, never the token)."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            views = await w.principals.list_principals(PrincipalKind.CI)
        if as_json:
            emit_json(views)
            return
        rows = []
        for v in views:
            tokens: list[TokenView | None] = [*v.tokens] or [None]
            for t in tokens:
                rows.append(
                    (
                        v.name,
                        _roles(v.roles),
                        ", ".join(t.apps) or "all" if t else "-",
                        f"{t.prefix}..." if t else "-",
                        day(t.expires_at) if t else "-",
                        _state(v),
                    )
                )
        table(
            ["NAME", "ROLES", "APPS", "TOKEN", "EXPIRES", "STATE"],
            rows,
            empty="no CI tokens yet; create one with 'stageline token create NAME --env ENV'",
        )

    run(work)


@token.command("revoke")
@click.argument("name")
@json_option
def token_revoke(name: str, as_json: bool) -> None:
    """Revoke CI job NAME's token; it fails from its next use. The name stays taken."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.principals.revoke_token(name, actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"revoked the token of {name}")

    run(work)


COMMANDS = [login, logout, user, token]
