"""`stageline data`: an app's threads, sources, memory and artifacts, per environment."""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import actor, run
from cli.output import done, emit_json, table
from cli.params import APP, ENVIRONMENT, TEXT, env_option, json_option
from models.errors import BadInput
from services.data import DATA_KINDS
from services.unit import Units

kind_argument = click.argument("kind", type=click.Choice(DATA_KINDS))


@click.group()
def data() -> None:
    """App data in namespaces: each environment has its own unless the app shares a kind."""


@data.command("put")
@click.argument("app_name", metavar="APP", type=APP)
@kind_argument
@click.argument("key", type=TEXT)
@env_option()
@click.option("--value", metavar="TEXT", type=TEXT)
@click.option("--from-file", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def data_put(
    app_name: str,
    kind: str,
    key: str,
    environment: str,
    value: str | None,
    from_file: Path | None,
    as_json: bool,
) -> None:
    """Store KEY in APP's KIND namespace of ENV."""
    if (value is None) == (from_file is None):
        raise BadInput("give the value with exactly one of --value TEXT or --from-file FILE")
    if from_file is not None:
        try:
            value = from_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read {from_file}: {exc}") from None
    assert value is not None

    async def work(units: Units) -> None:
        async with units.write() as w:
            item = await w.data.put(environment, app_name, kind, key, value, actor=actor())
        if as_json:
            emit_json(item)
        else:
            done(f"stored {kind}/{key} in {item.namespace}")

    run(work)


@data.command("get")
@click.argument("app_name", metavar="APP", type=APP)
@kind_argument
@click.argument("key", type=TEXT)
@env_option()
@json_option
def data_get(app_name: str, kind: str, key: str, environment: str, as_json: bool) -> None:
    """Print KEY from APP's KIND namespace of ENV."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            item = await w.data.get(environment, app_name, kind, key)
        if as_json:
            emit_json(item)
        else:
            click.echo(item.value)

    run(work)


@data.command("list")
@click.argument("app_name", metavar="APP", type=APP)
@kind_argument
@env_option()
@json_option
def data_list(app_name: str, kind: str, environment: str, as_json: bool) -> None:
    """List APP's KIND entries as ENV sees them."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            items = await w.data.entries(environment, app_name, kind)
        if as_json:
            emit_json(items)
        else:
            table(
                ["NAMESPACE", "KEY", "SIZE", "BY"],
                [(i.namespace, i.key, len(i.value), i.updated_by) for i in items],
            )

    run(work)


@data.command("copy")
@click.argument("app_name", metavar="APP", type=APP)
@kind_argument
@click.option("--from", "source", required=True, metavar="ENV", type=ENVIRONMENT)
@click.option("--to", "target", required=True, metavar="ENV", type=ENVIRONMENT)
@click.option(
    "--key", "keys", multiple=True, metavar="KEY", type=TEXT, help="Only these (repeatable)."
)
@json_option
def data_copy(
    app_name: str, kind: str, source: str, target: str, keys: tuple[str, ...], as_json: bool
) -> None:
    """Copy entries between environments, e.g. seed staging from a sanitised snapshot
    (explicit and audited; nothing is ever copied implicitly)."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            count = await w.data.copy(
                app_name, kind, source, target, actor=actor(), keys=list(keys) or None
            )
        if as_json:
            emit_json(
                {
                    "app": app_name,
                    "kind": kind,
                    "from": source,
                    "to": target,
                    "keys": list(keys) or None,
                    "copied": count,
                }
            )
            return
        done(
            f"copied {count} {kind} entr{'y' if count == 1 else 'ies'} of {app_name} "
            f"from {source} to {target}"
        )

    run(work)


@data.command("share")
@click.argument("app_name", metavar="APP", type=APP)
@kind_argument
@click.option("--off", is_flag=True, help="Stop sharing: each environment has its own again.")
@json_option
def data_share(app_name: str, kind: str, off: bool, as_json: bool) -> None:
    """Share APP's KIND across all its environments (shared/APP), or stop with --off."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.data.share(app_name, kind, not off, actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"{app_name}'s {kind} are {'per environment' if off else 'shared'} now")

    run(work)


COMMANDS = [data]
