"""`stageline tool`: tools (webhooks) and their per-environment profiles."""

from __future__ import annotations

from typing import cast

import click

from cli.context import actor, run
from cli.output import deleted, done, emit_json, table
from cli.params import TEXT, TOOL, app_scope_option, env_option, json_option
from models.errors import BadInput
from models.names import shown
from models.workspace import AuthScheme
from services.unit import Units


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"{what} {shown(item)} is not of the form KEY=VALUE")
        pairs[key] = value
    return pairs


@click.group()
def tool() -> None:
    """Tools (webhooks) and their per-environment profiles."""


@tool.command("create")
@click.argument("name", type=TOOL)
@click.option("--kind", type=click.Choice(["webhook"]), required=True)
@json_option
def tool_create(name: str, kind: str, as_json: bool) -> None:
    """Create tool NAME; give it a profile per environment with 'tool profile'."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.tools.create_tool(name, kind=kind, actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"created {kind} tool {name}; now give it a profile per environment")

    run(work)


@tool.command("profile")
@click.argument("name", type=TOOL)
@env_option()
@app_scope_option
@click.option("--url", required=True, type=TEXT)
@click.option(
    "--auth-secret", metavar="KEY", help="A secret of the environment used to authenticate."
)
@click.option(
    "--auth-scheme",
    type=click.Choice(["bearer", "basic", "header"]),
    default="bearer",
    show_default=True,
    help="basic: the secret is user:password; header: see --auth-header.",
)
@click.option(
    "--auth-header", metavar="NAME", help="With --auth-scheme header: the header to send."
)
@click.option("--header", "headers", multiple=True, metavar="K=V", type=TEXT)
@click.option("--param", "params", multiple=True, metavar="K=V", type=TEXT, help="Query parameter.")
@click.option(
    "--body", "body", multiple=True, metavar="K=V", type=TEXT, help="Extra JSON body field."
)
@click.option("--timeout", "timeout_seconds", type=float, default=10.0, show_default=True)
@click.option("--retries", type=int, default=3, show_default=True)
@json_option
def tool_profile(
    name: str,
    environment: str,
    app: str | None,
    url: str,
    auth_secret: str | None,
    auth_scheme: str,
    auth_header: str | None,
    headers: tuple[str, ...],
    params: tuple[str, ...],
    body: tuple[str, ...],
    timeout_seconds: float,
    retries: int,
    as_json: bool,
) -> None:
    """Set tool NAME's profile in one environment (a new version)."""
    header_map, param_map = _pairs(headers, "--header"), _pairs(params, "--param")
    body_map = _pairs(body, "--body")

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.tools.set_tool_profile(
                name,
                environment,
                url=url,
                actor=actor(),
                app=app,
                auth_secret=auth_secret,
                auth_scheme=cast(AuthScheme, auth_scheme),
                auth_header=auth_header,
                headers=header_map,
                params=param_map,
                body=body_map,
                timeout_seconds=timeout_seconds,
                retries=retries,
            )
        if as_json:
            emit_json(view)
        else:
            done(f"set tool {name}'s profile in {environment} (version {view.version}): {url}")

    run(work)


@tool.command("list")
@json_option
def tool_list(as_json: bool) -> None:
    """List tools and the environments that have a profile for each."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            views = await w.tools.list_tools()
        if as_json:
            emit_json(views)
        else:
            table(
                ["TOOL", "KIND", "PROFILES IN"],
                [(t.name, t.kind, ", ".join(t.environments)) for t in views],
            )

    run(work)


@tool.command("delete")
@click.argument("name", type=TOOL)
@json_option
def tool_delete(name: str, as_json: bool) -> None:
    """Remove a tool that no release uses."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            await w.tools.delete_tool(name, actor=actor())
        if as_json:
            emit_json(deleted("tool", name))
        else:
            done(f"removed tool {name}")

    run(work)


COMMANDS = [tool]
