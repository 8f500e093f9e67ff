"""`stageline group`: named groups of reviewers, written @name in a reviewer list."""

from __future__ import annotations

import click

from cli.context import actor, run
from cli.output import done, emit_json, table
from cli.params import GROUP, json_option
from services.unit import Units

# -- groups ---------------------------------------------------------------------------------


@click.group()
def group() -> None:
    """Named groups of reviewers, written @name in an environment's reviewers."""


@group.command("create")
@click.argument("name", type=GROUP)
@click.option("--member", "members", multiple=True, required=True, metavar="WHO")
@json_option
def group_create(name: str, members: tuple[str, ...], as_json: bool) -> None:
    """Create reviewer group NAME."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.environments.create_group(name, list(members), actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"created group @{name}: {', '.join(view.members)}")

    run(work)


@group.command("rename")
@click.argument("old", type=GROUP)
@click.argument("new", type=GROUP)
@json_option
def group_rename(old: str, new: str, as_json: bool) -> None:
    """Rename reviewer group OLD to NEW, and @OLD to @NEW in every environment's reviewers."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            result = await w.environments.rename_group(old, new, actor=actor())
        if as_json:
            emit_json(result)
        else:
            where = ", ".join(result.environments) or "no environment"
            done(f"renamed group @{old} to @{new}; reviewers updated in {where}")

    run(work)


@group.command("delete")
@click.argument("name", type=GROUP)
@json_option
def group_delete(name: str, as_json: bool) -> None:
    """Remove reviewer group NAME; refused while an environment lists @NAME as a reviewer."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.environments.delete_group(name, actor=actor())
        if as_json:
            emit_json({"kind": "group", "name": name, "deleted": True, "members": view.members})
        else:
            done(f"removed group @{name}")

    run(work)


@group.command("list")
@json_option
def group_list(as_json: bool) -> None:
    """List reviewer groups."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            views = await w.environments.list_groups()
        if as_json:
            emit_json(views)
        else:
            table(["GROUP", "MEMBERS"], [(f"@{g.name}", ", ".join(g.members)) for g in views])

    run(work)


COMMANDS = [group]
