"""Commands that describe the workspace: environments, apps, variables, secrets, tools,
releases, the vault and the audit log."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import click

from cli.context import actor, run
from cli.output import done, emit_json, print_warnings, table
from models.errors import BadInput
from models.names import InvalidName, check_key, check_resource_name, shown
from models.settings import Settings
from models.text import duration
from models.workspace import SECRET_KINDS, AuthScheme, Protection, SecretKind
from services.configuration import ConfigurationService, DeletedKey, expiry_warnings
from services.environments import EnvironmentService
from services.releases import ReleaseService
from store import audit as audit_repo
from store.database import Database
from vault.keys import generate_key_text, read_key_file
from vault.secret_value import SecretValue

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")

Callback = Callable[[click.Context, click.Parameter, Any], Any]


def _each(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, tuple | list) else (value,)


def resource(what: str) -> Callback:
    """Check a name argument before anything runs: a name that cannot exist is refused with
    what is wrong, instead of being looked up, echoed whole or stored."""

    def check(_: click.Context, __: click.Parameter, value: Any) -> Any:
        for item in _each(value):
            try:
                check_resource_name(item, what)
            except InvalidName as exc:
                raise click.BadParameter(str(exc)) from None
        return value

    return check


def text(_: click.Context, __: click.Parameter, value: Any) -> Any:
    """Free text must be text: bytes that are not UTF-8 reach Python as lone surrogates,
    which no database, file or request can hold."""
    for item in _each(value):
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise click.BadParameter(
                f"{shown(item)} is not UTF-8 text (the shell passed other bytes)"
            ) from None
    return value


def _expires(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d}" if at is not None else ""


def _deleted(kind: str, name: str) -> dict[str, Any]:
    """What a delete prints with --json."""
    return {"kind": kind, "name": name, "deleted": True}


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"{what} {shown(item)} is not of the form KEY=VALUE")
        pairs[key] = value
    return pairs


# -- env ------------------------------------------------------------------------------------


@click.group()
def env() -> None:
    """Environments: the ordered promotion chain and each one's protection rules."""


@env.command("create")
@click.argument("name", callback=resource("environment name"))
@click.option(
    "--after",
    metavar="ENV",
    callback=resource("environment name"),
    help="Place it right after ENV (default: at the end).",
)
@click.option("--required-approvals", type=click.IntRange(0, 20), default=0, show_default=True)
@click.option(
    "--reviewer", "reviewers", multiple=True, metavar="WHO", callback=text, help="Repeatable."
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
@click.argument("name", callback=resource("environment name"))
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
            [(s.key, s.kind, s.version, _expires(s.expires_at)) for s in secrets],
        )
        print_warnings(expiry_warnings(secrets))

    run(work)


@env.command("rename")
@click.argument("old", callback=resource("environment name"))
@click.argument("new", callback=resource("environment name"))
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
@click.argument("name", callback=resource("environment name"))
@json_option
def env_delete(name: str, as_json: bool) -> None:
    """Remove an environment that no app points to and no deployment refers to."""

    async def work(settings: Settings, db: Database) -> None:
        await EnvironmentService(db, settings).delete_environment(name, actor=actor())
        if as_json:
            emit_json(_deleted("environment", name))
        else:
            done(f"removed environment {name}")

    run(work)


# -- app ------------------------------------------------------------------------------------


@click.group()
def app() -> None:
    """Apps, and the environments each one points to."""


@app.command("create")
@click.argument("name", callback=resource("app name"))
@click.option(
    "--env",
    "envs",
    multiple=True,
    required=True,
    metavar="ENV",
    callback=resource("environment name"),
    help="Repeatable.",
)
@json_option
def app_create(name: str, envs: tuple[str, ...], as_json: bool) -> None:
    """Create app NAME pointing to existing environments."""

    async def work(settings: Settings, db: Database) -> None:
        view = await EnvironmentService(db, settings).create_app(name, list(envs), actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"created app {name} in {', '.join(view.environments)}")

    run(work)


@app.command("list")
@json_option
def app_list(as_json: bool) -> None:
    """List apps and their environments."""

    async def work(settings: Settings, db: Database) -> None:
        views = await EnvironmentService(db, settings).list_apps()
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
@click.argument("name", callback=resource("app name"))
@click.option(
    "--env",
    "envs",
    multiple=True,
    required=True,
    metavar="ENV",
    callback=resource("environment name"),
    help="Repeatable: the whole new set (it replaces the old one).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also stop pointing to environments where the app has a release deployed "
    "(its history stays).",
)
@json_option
def app_envs(name: str, envs: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Make app NAME point to exactly the environments given (a no-op when it already does)."""

    async def work(settings: Settings, db: Database) -> None:
        change = await EnvironmentService(db, settings).set_app_environments(
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
@click.argument("name", callback=resource("app name"))
@json_option
def app_delete(name: str, as_json: bool) -> None:
    """Remove an app that has no releases."""

    async def work(settings: Settings, db: Database) -> None:
        await EnvironmentService(db, settings).delete_app(name, actor=actor())
        if as_json:
            emit_json(_deleted("app", name))
        else:
            done(f"removed app {name}")

    run(work)


# -- var ------------------------------------------------------------------------------------

env_option = click.option(
    "--env",
    "environment",
    required=True,
    metavar="ENV",
    callback=resource("environment name"),
)
app_option = click.option(
    "--app",
    metavar="APP",
    callback=resource("app name"),
    help="Scope to one app (overrides the env's).",
)


@click.group()
def var() -> None:
    """Plain variables, per environment (and optionally per app within it)."""


@var.command("set")
@click.argument("key", callback=text)
@click.argument("value", callback=text)
@env_option
@app_option
@json_option
def var_set(key: str, value: str, environment: str, app: str | None, as_json: bool) -> None:
    """Set variable KEY to VALUE (a new version; old versions are kept)."""

    async def work(settings: Settings, db: Database) -> None:
        view = await ConfigurationService(db, settings).set_variable(
            environment, key, value, actor=actor(), app=app
        )
        if as_json:
            emit_json(view)
        else:
            where = f"{environment}" + (f" for app {app}" if app else "")
            done(f"set vars.{key} in {where} (version {view.version})")

    run(work)


@var.command("list")
@env_option
@app_option
@json_option
def var_list(environment: str, app: str | None, as_json: bool) -> None:
    """List current variables; with --app, the app's overrides and the env's values."""

    async def work(settings: Settings, db: Database) -> None:
        views = await ConfigurationService(db, settings).list_variables(environment, app)
        if as_json:
            emit_json(views)
        else:
            table(
                ["KEY", "VALUE", "SCOPE", "VERSION", "SET BY"],
                [(v.key, v.value, v.app or "env", v.version, v.created_by) for v in views],
            )

    run(work)


def _print_deleted(result: DeletedKey, as_json: bool) -> None:
    prefix = "vars" if result.kind == "variable" else "secrets"
    where = result.environment + (f" for app {result.app}" if result.app else "")
    if as_json:
        emit_json(result)
    elif result.already_deleted:
        done(f"{prefix}.{result.key} in {where} was already deleted; nothing to do")
    else:
        done(
            f"deleted {prefix}.{result.key} in {where} (version {result.version}; versions up "
            f"to {result.last_version} stay on record for past deployments and rollbacks)"
        )


@var.command("delete")
@click.argument("key", callback=text)
@env_option
@app_option
@json_option
def var_delete(key: str, environment: str, app: str | None, as_json: bool) -> None:
    """Delete variable KEY from ENV (with --app: the app's own value only). Old versions stay
    for the record; setting it again later makes a new version."""

    async def work(settings: Settings, db: Database) -> None:
        result = await ConfigurationService(db, settings).delete_variable(
            environment, key, actor=actor(), app=app
        )
        _print_deleted(result, as_json)

    run(work)


# -- secret ---------------------------------------------------------------------------------


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
    try:
        data = sys.stdin.read()
    except UnicodeDecodeError:
        raise BadInput(
            f"secret {shown(key)} on stdin is not UTF-8 text; pipe a binary value base64-encoded"
        ) from None
    # `echo value |` adds one newline that is not part of the secret.
    if data.endswith("\r\n"):
        data = data[:-2]
    elif data.endswith("\n"):
        data = data[:-1]
    return SecretValue(data)


@secret.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key", callback=text)
@click.argument("stray", nargs=-1, required=False)
@env_option
@app_option
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

    async def work(settings: Settings, db: Database) -> None:
        view = await ConfigurationService(db, settings).set_secret(
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
@env_option
@app_option
@json_option
def secret_list(environment: str, app: str | None, as_json: bool) -> None:
    """List secret names, kinds and versions; never values."""

    async def work(settings: Settings, db: Database) -> None:
        views = await ConfigurationService(db, settings).list_secrets(environment, app)
        if as_json:
            emit_json(views)
        else:
            table(
                ["KEY", "KIND", "SCOPE", "VERSION", "EXPIRES", "SET BY"],
                [
                    (s.key, s.kind, s.app or "env", s.version, _expires(s.expires_at), s.created_by)
                    for s in views
                ],
            )
        print_warnings(expiry_warnings(views))

    run(work)


@secret.command("delete")
@click.argument("key", callback=text)
@env_option
@app_option
@json_option
def secret_delete(key: str, environment: str, app: str | None, as_json: bool) -> None:
    """Delete secret KEY from ENV (with --app: the app's own value only). Old versions stay,
    encrypted, for past deployments and rollbacks; setting it again makes a new version."""

    async def work(settings: Settings, db: Database) -> None:
        result = await ConfigurationService(db, settings).delete_secret(
            environment, key, actor=actor(), app=app
        )
        _print_deleted(result, as_json)

    run(work)


# -- tool -----------------------------------------------------------------------------------


@click.group()
def tool() -> None:
    """Tools (webhooks) and their per-environment profiles."""


@tool.command("create")
@click.argument("name", callback=resource("tool name"))
@click.option("--kind", type=click.Choice(["webhook"]), required=True)
@json_option
def tool_create(name: str, kind: str, as_json: bool) -> None:
    """Create tool NAME; give it a profile per environment with 'tool profile'."""

    async def work(settings: Settings, db: Database) -> None:
        view = await ConfigurationService(db, settings).create_tool(name, kind=kind, actor=actor())
        if as_json:
            emit_json(view)
        else:
            done(f"created {kind} tool {name}; now give it a profile per environment")

    run(work)


@tool.command("profile")
@click.argument("name", callback=resource("tool name"))
@env_option
@app_option
@click.option("--url", required=True, callback=text)
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
@click.option("--header", "headers", multiple=True, metavar="K=V", callback=text)
@click.option(
    "--param", "params", multiple=True, metavar="K=V", callback=text, help="Query parameter."
)
@click.option(
    "--body", "body", multiple=True, metavar="K=V", callback=text, help="Extra JSON body field."
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

    async def work(settings: Settings, db: Database) -> None:
        view = await ConfigurationService(db, settings).set_tool_profile(
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

    async def work(settings: Settings, db: Database) -> None:
        views = await ConfigurationService(db, settings).list_tools()
        if as_json:
            emit_json(views)
        else:
            table(
                ["TOOL", "KIND", "PROFILES IN"],
                [(t.name, t.kind, ", ".join(t.environments)) for t in views],
            )

    run(work)


@tool.command("delete")
@click.argument("name", callback=resource("tool name"))
@json_option
def tool_delete(name: str, as_json: bool) -> None:
    """Remove a tool that no release uses."""

    async def work(settings: Settings, db: Database) -> None:
        await ConfigurationService(db, settings).delete_tool(name, actor=actor())
        if as_json:
            emit_json(_deleted("tool", name))
        else:
            done(f"removed tool {name}")

    run(work)


# -- release --------------------------------------------------------------------------------


@click.group()
def release() -> None:
    """Releases: immutable app versions with their pipeline."""


@release.command("create")
@click.argument("app_name", metavar="APP", callback=resource("app name"))
@click.argument("version", callback=text)
@click.option(
    "--pipeline", "pipeline_file", required=True, type=click.Path(path_type=Path, dir_okay=False)
)
@click.option(
    "--artifact",
    metavar="REF",
    callback=text,
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

    async def work(settings: Settings, db: Database) -> None:
        view = await ReleaseService(db, settings).create_release(
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
@click.argument("app_name", metavar="APP", callback=resource("app name"))
@json_option
def release_list(app_name: str, as_json: bool) -> None:
    """List an app's releases."""

    async def work(settings: Settings, db: Database) -> None:
        views = await ReleaseService(db, settings).list_releases(app_name)
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


# -- vault ----------------------------------------------------------------------------------


@click.group()
def vault() -> None:
    """The master key that wraps every environment's data key."""


@vault.command("generate-key")
def vault_generate_key() -> None:
    """Print a new random master key (base64) for STAGELINE_MASTER_KEY.

    No --json: the output is the key alone, one line, made for $(...), and nothing is stored.
    """
    click.echo(generate_key_text())


@vault.command("rotate")
@click.option(
    "--new-key-file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="File (mode 0600) holding the new base64 key.",
)
@json_option
def vault_rotate(new_key_file: Path, as_json: bool) -> None:
    """Re-wrap every environment's data key with a new master key; secrets stay as they are."""
    new_key = read_key_file(new_key_file)

    async def work(settings: Settings, db: Database) -> None:
        service = ConfigurationService(db, settings)
        old_key_id = service.key.key_id
        count = await service.rotate_master_key(new_key, actor=actor())
        if as_json:
            emit_json(
                {
                    "environments": count,
                    "from_key_id": old_key_id,
                    "key_id": new_key.key_id,
                    "key_file": str(new_key_file.absolute()),
                }
            )
            return
        done(
            f"re-wrapped the data keys of {count} environment(s) with key {new_key.key_id}; "
            f"point STAGELINE_MASTER_KEY_FILE at {new_key_file} from now on"
        )

    run(work)


# -- audit ----------------------------------------------------------------------------------


@click.command()
@click.option("--env", "environment", metavar="ENV", callback=resource("environment name"))
@click.option("--app", metavar="APP", callback=resource("app name"))
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@json_option
def audit(environment: str | None, app: str | None, limit: int, as_json: bool) -> None:
    """Show the audit log, oldest first."""

    async def work(settings: Settings, db: Database) -> None:
        service = EnvironmentService(db, settings)
        async with db.read() as session:
            ws = await service.workspace_id(session)
            events = await audit_repo.events(
                session, ws, environment=environment, app=app, limit=limit
            )
        if as_json:
            emit_json(
                [
                    {
                        "at": e.at.isoformat(),
                        "actor": e.actor,
                        "action": e.action,
                        "environment": e.environment,
                        "app": e.app,
                        "subject": e.subject,
                        "detail": e.detail,
                    }
                    for e in events
                ]
            )
        else:
            table(
                ["AT", "ACTOR", "ACTION", "SUBJECT"],
                [(f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor, e.action, e.subject) for e in events],
            )

    run(work)


COMMANDS = [env, app, var, secret, tool, release, vault, audit]
