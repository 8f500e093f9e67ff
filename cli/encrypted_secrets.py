"""`stageline secret`: encrypted secrets, per environment; values go in, never come out.

(Not `cli/secrets.py`: run as a script, `cli/` comes first on the path and that name would
hide the standard library's `secrets`, which `vault.keys` uses.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import click

from cli.context import actor, run, stdin_text
from cli.output import day, done, emit_json, print_deleted_key, print_warnings, table
from cli.params import TEXT, app_scope_option, env_option, json_option
from models.errors import BadInput
from models.names import check_key, shown
from models.workspace import SECRET_KINDS, SecretKind
from services.secrets import expiry_warnings
from services.unit import Units
from vault.secret_value import SecretValue


@click.group()
def secret() -> None:
    """Encrypted secrets, per environment; values go in, never come out."""


def _read_secret(from_file: Path | None, key: str) -> SecretValue:
    if from_file is not None:
        try:
            return SecretValue(from_file.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read {from_file}: {exc.__class__.__name__}") from None
    if sys.stdin is None or sys.stdin.closed:
        raise BadInput(f"no value for secret {shown(key)}: pipe it on stdin or pass --from-file")
    if sys.stdin.isatty():
        return SecretValue(click.prompt(f"value for {key}", hide_input=True, err=True))
    return SecretValue(stdin_text(f"secret {shown(key)}", "pipe a binary value base64-encoded"))


@secret.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key", type=TEXT)
@click.argument("stray", nargs=-1, required=False)
@env_option()
@app_scope_option
@click.option("--kind", type=click.Choice(SECRET_KINDS), default="api-key", show_default=True)
@click.option("--from-file", type=click.Path(path_type=Path, dir_okay=False), default=None)
@json_option
def secret_set(
    key: str,
    stray: tuple[str, ...],
    environment: str,
    app: str | None,
    kind: str,
    from_file: Path | None,
    as_json: bool,
) -> None:
    """Set secret KEY from stdin or --from-file (a new version; old versions are kept)."""
    check_key(key, "secret name")  # before reading a value that could not be stored
    if stray:
        raise BadInput(
            "secret values are never taken as arguments (shell history and process lists "
            f'would keep them); pipe it: printf %s "$VALUE" | stageline secret set {key} '
            f"--env {environment}, or use --from-file"
        )
    value = _read_secret(from_file, key)

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.secrets.set_secret(
                environment,
                key,
                value,
                actor=actor(),
                kind=cast(SecretKind, kind),
                app=app,
            )
        if as_json:
            emit_json(view)
        else:
            where = f"{environment}" + (f" for app {app}" if app else "")
            expires = f", expires {view.expires_at:%Y-%m-%d}" if view.expires_at else ""
            done(f"set secrets.{key} ({kind}) in {where} (version {view.version}{expires})")
        print_warnings(expiry_warnings([view]))

    run(work)


@secret.command("list")
@env_option()
@app_scope_option
@json_option
def secret_list(environment: str, app: str | None, as_json: bool) -> None:
    """List secret names, kinds and versions; never values."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            views = await w.secrets.list_secrets(environment, app)
        if as_json:
            emit_json(views)
        else:
            table(
                ["KEY", "KIND", "SCOPE", "VERSION", "EXPIRES", "SET BY"],
                [
                    (s.key, s.kind, s.app or "env", s.version, day(s.expires_at), s.created_by)
                    for s in views
                ],
            )
        print_warnings(expiry_warnings(views))

    run(work)


@secret.command("delete")
@click.argument("key", type=TEXT)
@env_option()
@app_scope_option
@json_option
def secret_delete(key: str, environment: str, app: str | None, as_json: bool) -> None:
    """Delete secret KEY from ENV (with --app: the app's own value only). Old versions stay,
    encrypted, for past deployments and rollbacks; setting it again makes a new version."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            result = await w.secrets.delete_secret(environment, key, actor=actor(), app=app)
        print_deleted_key(result, as_json)

    run(work)


COMMANDS = [secret]
