"""`stageline app`: apps, and the environments each one points to."""

from __future__ import annotations

import click

from cli.context import actor, run
from cli.output import deleted, done, emit_json, table
from cli.params import APP, envs_option, json_option
from services.unit import Units


@click.group()
def app() -> None:
    """Apps, and the environments each one points to."""


@app.command("create")
@click.argument("name", type=APP)
@envs_option(help="Repeatable.")
@json_option
def app_create(name: str, envs: tuple[str, ...], as_json: bool) -> None:
    """Create app NAME pointing to existing environments."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.environments.create_app(name, list(envs), actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"created app {name} in {', '.join(view.environments)}")

    run(work)


@app.command("list")
@json_option
def app_list(as_json: bool) -> None:
    """List apps and their environments."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            views = await w.environments.list_apps()
        if as_json:
            emit_json(views)
        else:
            table(
                ["APP", "ENVIRONMENTS"],
                [(v.name, " -> ".join(v.environments)) for v in views],
                empty="no apps yet; create one with 'stageline app create web --env dev'",
            )

    run(work)


@app.command("envs")
@click.argument("name", type=APP)
@envs_option(help="Repeatable: the whole new set (it replaces the old one).")
@click.option(
    "--force",
    is_flag=True,
    help="Also stop pointing to environments where the app has a release deployed "
    "(its history stays).",
)
@json_option
def app_envs(name: str, envs: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Make app NAME point to exactly the environments given (a no-op when it already does)."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            change = await w.environments.set_app_environments(
                name, list(envs), actor=actor(), force=force
            )
        if as_json:
            emit_json(change)
        elif not change.changed:
            done(f"app {name} already points to {', '.join(change.environments)}; nothing to do")
        else:
            what = [f"added {', '.join(change.added)}"] if change.added else []
            what += [f"removed {', '.join(change.removed)}"] if change.removed else []
            done(f"app {name} now points to {' -> '.join(change.environments)} ({'; '.join(what)})")

    run(work)


@app.command("delete")
@click.argument("name", type=APP)
@json_option
def app_delete(name: str, as_json: bool) -> None:
    """Remove an app that has no releases."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            await w.environments.delete_app(name, actor=actor())
        if as_json:
            emit_json(deleted("app", name))
        else:
            done(f"removed app {name}")

    run(work)


COMMANDS = [app]
