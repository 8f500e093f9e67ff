"""`stageline var`: plain variables, per environment (and optionally per app within it)."""

from __future__ import annotations

import click

from cli.context import actor, run
from cli.output import done, emit_json, print_deleted_key, table
from cli.params import TEXT, app_scope_option, env_option, json_option
from services.unit import Units


@click.group()
def var() -> None:
    """Plain variables, per environment (and optionally per app within it)."""


@var.command("set")
@click.argument("key", type=TEXT)
@click.argument("value", type=TEXT)
@env_option()
@app_scope_option
@json_option
def var_set(key: str, value: str, environment: str, app: str | None, as_json: bool) -> None:
    """Set variable KEY to VALUE (a new version; old versions are kept)."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.variables.set_variable(environment, key, value, actor=actor(), app=app)
        if as_json:
            emit_json(view)
        else:
            where = f"{environment}" + (f" for app {app}" if app else "")
            done(f"set vars.{key} in {where} (version {view.version})")

    run(work)


@var.command("list")
@env_option()
@app_scope_option
@json_option
def var_list(environment: str, app: str | None, as_json: bool) -> None:
    """List current variables; with --app, the app's overrides and the env's values."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            views = await w.variables.list_variables(environment, app)
        if as_json:
            emit_json(views)
        else:
            table(
                ["KEY", "VALUE", "SCOPE", "VERSION", "SET BY"],
                [(v.key, v.value, v.app or "env", v.version, v.created_by) for v in views],
            )

    run(work)


@var.command("delete")
@click.argument("key", type=TEXT)
@env_option()
@app_scope_option
@json_option
def var_delete(key: str, environment: str, app: str | None, as_json: bool) -> None:
    """Delete variable KEY from ENV (with --app: the app's own value only). Old versions stay
    for the record; setting it again later makes a new version."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            result = await w.variables.delete_variable(environment, key, actor=actor(), app=app)
        print_deleted_key(result, as_json)

    run(work)


COMMANDS = [var]
