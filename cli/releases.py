"""`stageline release`: releases, immutable app versions with their pipeline."""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import actor, run
from cli.output import done, emit_json, table
from cli.params import APP, TEXT, json_option
from models.errors import BadInput
from services.unit import Units


@click.group()
def release() -> None:
    """Releases: immutable app versions with their pipeline."""


@release.command("create")
@click.argument("app_name", metavar="APP", type=APP)
@click.argument("version", type=TEXT)
@click.option(
    "--pipeline", "pipeline_file", required=True, type=click.Path(path_type=Path, dir_okay=False)
)
@click.option(
    "--artifact",
    metavar="REF",
    type=TEXT,
    help="What was built: an image, a URL, a digest.",
)
@json_option
def release_create(
    app_name: str, version: str, pipeline_file: Path, artifact: str | None, as_json: bool
) -> None:
    """Create release APP VERSION from a pipeline file (validated now, immutable after)."""
    try:
        text = pipeline_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read pipeline file {pipeline_file}: {exc}") from None

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.releases.create_release(
                app_name, version, text, actor=actor(), source=str(pipeline_file), artifact=artifact
            )
        if as_json:
            emit_json(view)
        else:
            done(
                f"created release {app_name}@{version}; it needs: "
                f"{', '.join(view.references) or 'nothing'}"
            )

    run(work)


@release.command("list")
@click.argument("app_name", metavar="APP", type=APP)
@json_option
def release_list(app_name: str, as_json: bool) -> None:
    """List an app's releases."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            views = await w.releases.list_releases(app_name)
        if as_json:
            emit_json(views)
        else:
            table(
                ["VERSION", "ARTIFACT", "CREATED BY", "CREATED AT"],
                [
                    (r.version, r.artifact or "", r.created_by, f"{r.created_at:%Y-%m-%d %H:%M}")
                    for r in views
                ],
            )

    run(work)


COMMANDS = [release]
