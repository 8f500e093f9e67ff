"""Variables, secrets and tool profiles per environment, and their resolution for an app."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar, cast

from cryptography import x509
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import BadInput, Conflict, MissingConfiguration, NotFound, Refused
from models.names import HEADER_NAME, check_key, check_resource_name, header_problem, shown
from models.pipeline import Reference
from models.promotion import ConfigRef, ConfigVersions
from models.resolution import (
    ResolvedConfiguration,
    ResolvedSecret,
    ResolvedTool,
    ResolvedVariable,
    Scope,
)
from models.workspace import (
    AUTH_SCHEMES,
    SECRET_KINDS,
    AuthScheme,
    SecretKind,
    SecretView,
    ToolProfileView,
    ToolView,
    VariableView,
)
from services.base import Service, did_you_mean
from services.environments import data_key_aad_of, require_app_in, secret_aad_of
from store import audit
from store import configuration as config_repo
from store import environments as env_repo
from store import releases as release_repo
from store.tables import App, Environment, Secret, Tool, ToolProfile, Variable, utcnow
from vault.envelope import seal, unseal, unwrap_data_key, wrap_data_key
from vault.keys import KeyProvider
from vault.secret_value import SecretValue

MAX_SECRET_BYTES = 64 * 1024
# Step output masks a secret wherever it appears: a value this short is easy to guess, and
# masking it would also hide ordinary words and numbers. Stored ones of any length are masked.
MIN_SECRET_CHARS = 8
MAX_VARIABLE_CHARS = 64 * 1024
# `secret list` and `status` warn about a certificate that expires within this many days.
CERTIFICATE_WARNING_DAYS = 30


class DeletedKey(BaseModel):
    """What `var delete` / `secret delete` did: the tombstone version it added (or found)."""

    kind: Literal["variable", "secret"]
    environment: str
    app: str | None
    key: str
    deleted: bool = True
    # The tombstone's version; `last_version` is the last one with a value, kept on record.
    version: int
    last_version: int
    # True when the key was already deleted: nothing was changed (a retry is safe).
    already_deleted: bool = False


def certificate_expiry(key: str, plain: str) -> datetime:
    """When the PEM certificate(s) in `plain` stop being valid: the soonest expiry of them
    all (a chain is as good as its first certificate to expire)."""
    try:
        certificates = x509.load_pem_x509_certificates(plain.encode())
    except ValueError:
        raise BadInput(
            f"secret {key!r} is of kind certificate but is not a PEM certificate "
            "(expected '-----BEGIN CERTIFICATE-----' ...)"
        ) from None
    return min(c.not_valid_after_utc for c in certificates)


def expiry_warning(view: SecretView, now: datetime | None = None) -> str | None:
    """One sentence when a certificate secret expires within CERTIFICATE_WARNING_DAYS."""
    if view.expires_at is None:
        return None
    now = now or utcnow()
    if view.expires_at > now + timedelta(days=CERTIFICATE_WARNING_DAYS):
        return None
    where = view.environment + (f" for app {view.app}" if view.app else "")
    when = f"{view.expires_at:%Y-%m-%d %H:%M} UTC"
    if view.expires_at <= now:
        state = f"expired on {when}"
    else:
        # Rounded up: a certificate valid for 9.5 more days "expires in 10 days".
        days = math.ceil((view.expires_at - now).total_seconds() / 86400)
        state = f"expires in {days} day{'s' if days != 1 else ''} ({when})"
    app_flag = f" --app {view.app}" if view.app else ""
    return (
        f"certificate secrets.{view.key} in {where} {state}; replace it with 'stageline secret "
        f"set {view.key} --env {view.environment}{app_flag} --kind certificate --from-file "
        "cert.pem'"
    )


def expiry_warnings(views: Iterable[SecretView], now: datetime | None = None) -> list[str]:
    return [w for v in views if (w := expiry_warning(v, now)) is not None]


def check_secret_value(key: str, kind: str, value: SecretValue) -> datetime | None:
    """Refuse values that cannot be right, without ever quoting them. Returns a
    certificate's expiry (None for other kinds)."""
    if kind not in SECRET_KINDS:
        raise BadInput(f"secret kind {kind!r} is not known; use one of {', '.join(SECRET_KINDS)}")
    plain = value.reveal()
    try:
        plain.encode()
    except UnicodeEncodeError:
        raise BadInput(
            f"secret {key!r} is not UTF-8 text; store a binary value base64-encoded"
        ) from None
    if not plain.strip():
        raise BadInput(f"secret {key!r} is empty; pipe its value on stdin or pass --from-file")
    if len(plain.strip()) < MIN_SECRET_CHARS:
        raise BadInput(
            f"secret {key!r} is shorter than {MIN_SECRET_CHARS} characters, too easy to guess "
            "and to mistake for ordinary text in step output; set a longer value"
        )
    if len(plain.encode()) > MAX_SECRET_BYTES:
        raise BadInput(f"secret {key!r} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    if kind == "certificate":
        return certificate_expiry(key, plain)
    return None


def _scope_label(scope: str) -> Scope:
    return "env" if scope == config_repo.ENV_SCOPE else "app"


def _where(env: Environment, app: str | None) -> str:
    """How an audit subject or a message names the place of a value."""
    return env.name + (f" for app {app}" if app else "")


def _secret_view(row: Secret, env: Environment, app: str | None) -> SecretView:
    return SecretView(
        environment=env.name,
        app=app,
        key=row.key,
        kind=cast(SecretKind, row.kind),
        version=row.version,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def _check_tool_url(url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise BadInput(f"tool profile url {shown(url)} must start with http:// or https://")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise BadInput(
            f"tool profile url {shown(url)} has a space or control character; "
            "percent-encode it (%20)"
        )


def _check_tool_auth(auth_secret: str | None, auth_scheme: str, auth_header: str | None) -> None:
    """A tool profile's authentication: a known scheme, with the secret (and, for `header`,
    the header name) it needs."""
    if auth_secret is not None:
        check_key(auth_secret, "auth secret name")
    if auth_scheme not in AUTH_SCHEMES:
        raise BadInput(
            f"auth scheme {auth_scheme!r} is not known; use one of {', '.join(AUTH_SCHEMES)}"
        )
    if auth_scheme == "header" and not (auth_header and HEADER_NAME.fullmatch(auth_header)):
        raise BadInput(
            "--auth-scheme header needs --auth-header NAME (letters, digits and '-'), "
            "e.g. --auth-header X-Api-Key"
        )
    if auth_scheme != "bearer" and auth_secret is None:
        raise BadInput(f"--auth-scheme {auth_scheme} needs --auth-secret KEY")


class ConfigurationService(Service):
    async def _target(
        self, session: AsyncSession, environment: str, app: str | None
    ) -> tuple[Environment, App | None]:
        env = await self.environment(session, environment)
        app_row = await self.optional_app(session, app)
        if app_row is not None:
            await require_app_in(session, app_row, env)
        return env, app_row

    async def _refuse_case_twin(
        self, session: AsyncSession, env: Environment, app_row: App | None, key: str, what: str
    ) -> None:
        """Refuse a key that differs only by case from a variable or secret seen with it.

        Keys may be mixed case, and variables and secrets both become the environment
        variables of steps, where `DATABASE_URL` and `database_url` would read as one but
        be two. An app sees the environment's keys and its own, so a key at app scope is
        compared with those; one at environment scope with every scope of the environment.
        """
        scopes = None if app_row is None else config_repo.scopes_for(app_row.id)
        # Only keys that are set now: a deleted twin no longer reaches any step.
        found: list[tuple[Sequence[Variable | Secret], str]] = [
            (await config_repo.case_twins(session, Variable, env.id, scopes, key), "variable"),
            (await config_repo.case_twins(session, Secret, env.id, scopes, key), "secret"),
        ]
        for twins, kind in found:
            if not twins:
                continue
            existing, app_id = twins[0].key, twins[0].app_id
            owner = await session.get(App, app_id) if app_id is not None else None
            where = env.name + (f" for app {owner.name}" if owner is not None else "")
            raise Conflict(
                f"{what} {key!r} differs only by case from the existing {kind} {existing!r} "
                f"in {where}; steps would see two environment variables that read the same: "
                f"use {existing!r}"
            )

    # -- variables -------------------------------------------------------------------------

    async def set_variable(
        self, environment: str, key: str, value: str, *, actor: str, app: str | None = None
    ) -> VariableView:
        check_key(key, "variable name")
        if len(value) > MAX_VARIABLE_CHARS:
            raise BadInput(f"variable {key!r} is longer than {MAX_VARIABLE_CHARS} characters")
        async with self.db.write() as session:
            env, app_row = await self._target(session, environment, app)
            await self._refuse_case_twin(session, env, app_row, key, "variable")
            scope = config_repo.scope_of(app_row.id if app_row else None)
            version = await config_repo.latest_version(session, Variable, env.id, scope, key) + 1
            row = Variable(
                environment_id=env.id,
                app_id=app_row.id if app_row else None,
                scope=scope,
                key=key,
                version=version,
                value=value,
                created_by=actor,
            )
            session.add(row)
            await session.flush()
            audit.record(
                session,
                env.workspace_id,
                actor,
                "variable.set",
                f"vars.{key} v{version} in {_where(env, app)}",
                environment=env.name,
                app=app,
                detail={"key": key, "version": version},
            )
            return VariableView(
                environment=env.name,
                app=app,
                key=key,
                value=value,
                version=version,
                created_by=actor,
                created_at=row.created_at,
            )

    async def list_variables(self, environment: str, app: str | None = None) -> list[VariableView]:
        async with self.db.read() as session:
            return await self.variables_in(session, environment, app)

    async def variables_in(
        self, session: AsyncSession, environment: str, app: str | None
    ) -> list[VariableView]:
        env, app_row = await self._target(session, environment, app)
        rows = await config_repo.current(
            session, Variable, env.id, config_repo.scopes_for(app_row.id if app_row else None)
        )
        return [
            VariableView(
                environment=env.name,
                app=None if r.scope == config_repo.ENV_SCOPE else app,
                key=r.key,
                value=r.value,
                version=r.version,
                created_by=r.created_by,
                created_at=r.created_at,
            )
            for r in rows
        ]

    # -- secrets ---------------------------------------------------------------------------

    def _data_key(self, env: Environment, key: KeyProvider | None = None) -> bytes:
        return unwrap_data_key(
            key or self.key, env.wrapped_data_key, data_key_aad_of(env), env.name
        )

    async def set_secret(
        self,
        environment: str,
        key: str,
        value: SecretValue,
        *,
        actor: str,
        kind: SecretKind = "api-key",
        app: str | None = None,
    ) -> SecretView:
        check_key(key, "secret name")
        expires_at = check_secret_value(key, kind, value)
        master = self.key
        async with self.db.write() as session:
            env, app_row = await self._target(session, environment, app)
            await self._refuse_case_twin(session, env, app_row, key, "secret")
            app_id = app_row.id if app_row else None
            scope = config_repo.scope_of(app_id)
            version = await config_repo.latest_version(session, Secret, env.id, scope, key) + 1
            ciphertext = seal(
                self._data_key(env, master),
                value.reveal().encode(),
                secret_aad_of(env, app_id, key, version),
            )
            row = Secret(
                environment_id=env.id,
                app_id=app_id,
                scope=scope,
                key=key,
                version=version,
                kind=kind,
                ciphertext=ciphertext,
                expires_at=expires_at,
                created_by=actor,
            )
            session.add(row)
            await session.flush()
            audit.record(
                session,
                env.workspace_id,
                actor,
                "secret.set",
                f"secrets.{key} v{version} in {_where(env, app)}",
                environment=env.name,
                app=app,
                detail={
                    "key": key,
                    "version": version,
                    "kind": kind,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                },
            )
            return _secret_view(row, env, app)

    async def list_secrets(self, environment: str, app: str | None = None) -> list[SecretView]:
        async with self.db.read() as session:
            return await self.secrets_in(session, environment, app)

    async def secrets_in(
        self, session: AsyncSession, environment: str, app: str | None
    ) -> list[SecretView]:
        env, app_row = await self._target(session, environment, app)
        rows = await config_repo.current(
            session, Secret, env.id, config_repo.scopes_for(app_row.id if app_row else None)
        )
        return [
            _secret_view(r, env, None if r.scope == config_repo.ENV_SCOPE else app) for r in rows
        ]

    async def certificate_warnings(
        self,
        session: AsyncSession,
        environments: Sequence[Environment],
        only_app: App | None = None,
    ) -> list[str]:
        """A warning for each current certificate secret, in any scope of `environments`
        (with `only_app`, the environment's own and that app's), that expires within
        CERTIFICATE_WARNING_DAYS or has expired."""
        names = {e.id: e for e in environments}
        rows = await config_repo.current_certificates(session, list(names))
        apps: dict[int, str] = {}
        views = []
        for row in rows:
            if only_app is not None and row.app_id not in (None, only_app.id):
                continue
            app = None
            if row.app_id is not None:
                if row.app_id not in apps:
                    owner = await session.get(App, row.app_id)
                    apps[row.app_id] = owner.name if owner is not None else "?"
                app = apps[row.app_id]
            views.append(_secret_view(row, names[row.environment_id], app))
        return expiry_warnings(views)

    # -- deleting --------------------------------------------------------------------------

    async def delete_variable(
        self, environment: str, key: str, *, actor: str, app: str | None = None
    ) -> DeletedKey:
        """Delete a variable: a tombstone version, so it is absent from now on while the
        versions that deployments recorded stay. Deleting it again changes nothing."""
        return await self._delete(Variable, environment, key, actor=actor, app=app)

    async def delete_secret(
        self, environment: str, key: str, *, actor: str, app: str | None = None
    ) -> DeletedKey:
        """Delete a secret the same way; its old versions stay decryptable for rollbacks."""
        return await self._delete(Secret, environment, key, actor=actor, app=app)

    async def _delete(
        self,
        table: type[config_repo.Versioned],
        environment: str,
        key: str,
        *,
        actor: str,
        app: str | None,
    ) -> DeletedKey:
        kind: Literal["variable", "secret"] = "variable" if table is Variable else "secret"
        prefix = "vars" if table is Variable else "secrets"
        check_key(key, f"{kind} name")
        async with self.db.write() as session:
            env, app_row = await self._target(session, environment, app)
            app_id = app_row.id if app_row else None
            scope = config_repo.scope_of(app_id)
            where = _where(env, app)
            newest = await config_repo.newest(session, table, env.id, scope, key)
            if newest is None:
                raise await self._not_set(session, table, env, app_row, key, kind, prefix)
            if newest.deleted:
                return DeletedKey(
                    kind=kind,
                    environment=env.name,
                    app=app,
                    key=key,
                    version=newest.version,
                    last_version=newest.version - 1,
                    already_deleted=True,
                )
            version = newest.version + 1
            tombstone: Variable | Secret
            if isinstance(newest, Variable):
                tombstone = Variable(value="")
            else:
                tombstone = Secret(kind=newest.kind, ciphertext=b"")
            tombstone.environment_id = env.id
            tombstone.app_id = app_id
            tombstone.scope = scope
            tombstone.key = key
            tombstone.version = version
            tombstone.deleted = True
            tombstone.created_by = actor
            session.add(tombstone)
            await session.flush()
            audit.record(
                session,
                env.workspace_id,
                actor,
                f"{kind}.delete",
                f"{prefix}.{key} in {where}",
                environment=env.name,
                app=app,
                detail={"key": key, "version": version, "last_version": newest.version},
            )
            return DeletedKey(
                kind=kind,
                environment=env.name,
                app=app,
                key=key,
                version=version,
                last_version=newest.version,
            )

    async def _not_set(
        self,
        session: AsyncSession,
        table: type[config_repo.Versioned],
        env: Environment,
        app_row: App | None,
        key: str,
        kind: str,
        prefix: str,
    ) -> NotFound:
        """`key` was never set in this scope: say what is, and where `key` is if elsewhere."""
        app_id = app_row.id if app_row else None
        scope = config_repo.scope_of(app_id)
        here = [r.key for r in await config_repo.current(session, table, env.id, [scope])]
        where = _where(env, app_row.name if app_row else None)
        hint = ""
        if app_row is not None:
            if await config_repo.current(session, table, env.id, [config_repo.ENV_SCOPE], [key]):
                hint = f"; {prefix}.{key} is set for all of {env.name}: drop --app to delete it"
        else:
            owners = [
                owner.name
                for r in await config_repo.current_in_every_scope(session, table, env.id, key)
                if r.app_id is not None and (owner := await session.get(App, r.app_id))
            ]
            if owners:
                hint = (
                    f"; {prefix}.{key} is set for app {', '.join(owners)} only: add "
                    f"--app {owners[0]}"
                )
        return NotFound(
            f"{kind} {key!r} is not set in {where}{did_you_mean(key, here)}; set there: "
            f"{', '.join(here) or 'none'}{hint}"
        )

    async def rotate_master_key(self, new_key: KeyProvider, *, actor: str) -> int:
        """Re-wrap every environment's data key with `new_key`; secrets are not touched."""
        old_key = self.key
        async with self.db.write() as session:
            ws = await self.workspace_id(session)
            envs = await env_repo.chain(session, ws)
            for env in envs:
                data_key = self._data_key(env, old_key)
                env.wrapped_data_key = wrap_data_key(new_key, data_key, data_key_aad_of(env))
                env.master_key_id = new_key.key_id
            audit.record(
                session,
                ws,
                actor,
                "vault.rotate-master-key",
                "master key",
                detail={"from": old_key.key_id, "to": new_key.key_id, "environments": len(envs)},
            )
        self._key = new_key
        return len(envs)

    # -- tools -----------------------------------------------------------------------------

    async def create_tool(self, name: str, *, kind: str, actor: str) -> ToolView:
        check_resource_name(name, "tool name")
        if kind != "webhook":
            raise BadInput(f"tool kind {kind!r} is not known; the supported kind is 'webhook'")
        async with self.db.write() as session:
            ws = await self.workspace_id(session)
            if await config_repo.find_tool(session, ws, name) is not None:
                raise Conflict(f"tool {name!r} already exists")
            session.add(Tool(workspace_id=ws, name=name, kind=kind))
            audit.record(session, ws, actor, "tool.create", f"tool {name}", detail={"kind": kind})
            return ToolView(name=name, kind="webhook")

    async def _tool(self, session: AsyncSession, name: str) -> Tool:
        ws = await self.workspace_id(session)
        tool = await config_repo.find_tool(session, ws, name)
        if tool is None:
            known = [t.name for t in await config_repo.tools(session, ws)]
            raise NotFound(
                f"tool {name!r} does not exist; known tools: {', '.join(known) or 'none yet'} "
                f"(create it with 'stageline tool create {name} --kind webhook')"
            )
        return tool

    async def set_tool_profile(
        self,
        tool: str,
        environment: str,
        *,
        url: str,
        actor: str,
        app: str | None = None,
        auth_secret: str | None = None,
        auth_scheme: AuthScheme = "bearer",
        auth_header: str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        body: dict[str, str] | None = None,
        timeout_seconds: float = 10.0,
        retries: int = 3,
    ) -> ToolProfileView:
        _check_tool_url(url)
        for name, value in (headers or {}).items():
            if (problem := header_problem(name, value)) is not None:
                raise BadInput(problem)
        _check_tool_auth(auth_secret, auth_scheme, auth_header)
        if not 0 < timeout_seconds <= 300:
            raise BadInput("tool profile timeout must be between 0 and 300 seconds")
        if not 0 <= retries <= 10:
            raise BadInput("tool profile retries must be between 0 and 10")
        async with self.db.write() as session:
            tool_row = await self._tool(session, tool)
            env, app_row = await self._target(session, environment, app)
            app_id = app_row.id if app_row else None
            scope = config_repo.scope_of(app_id)
            version = await config_repo.profile_version(session, tool_row.id, env.id, scope) + 1
            session.add(
                ToolProfile(
                    tool_id=tool_row.id,
                    environment_id=env.id,
                    app_id=app_id,
                    scope=scope,
                    version=version,
                    url=url,
                    auth_secret=auth_secret,
                    auth_scheme=auth_scheme,
                    auth_header=auth_header if auth_scheme == "header" else None,
                    headers=headers or {},
                    params=params or {},
                    body=body or {},
                    timeout_seconds=timeout_seconds,
                    retries=retries,
                    created_by=actor,
                )
            )
            audit.record(
                session,
                env.workspace_id,
                actor,
                "tool.profile",
                f"tools.{tool} v{version} in {_where(env, app)}",
                environment=env.name,
                app=app,
                detail={
                    "tool": tool,
                    "version": version,
                    "url": url,
                    "auth_secret": auth_secret,
                    "auth_scheme": auth_scheme,
                },
            )
            return ToolProfileView(
                tool=tool,
                environment=env.name,
                app=app,
                url=url,
                auth_secret=auth_secret,
                auth_scheme=auth_scheme,
                auth_header=auth_header if auth_scheme == "header" else None,
                headers=headers or {},
                params=params or {},
                body=body or {},
                timeout_seconds=timeout_seconds,
                retries=retries,
                version=version,
            )

    async def list_tools(self) -> list[ToolView]:
        async with self.db.read() as session:
            ws = await self.workspace_id(session)
            env_names = {e.id: e.name for e in await env_repo.chain(session, ws)}
            views = []
            for tool in await config_repo.tools(session, ws):
                env_ids = await config_repo.environments_with_profiles(session, tool.id)
                views.append(
                    ToolView(
                        name=tool.name,
                        kind="webhook",
                        environments=sorted(env_names[i] for i in env_ids),
                    )
                )
            return views

    async def delete_tool(self, name: str, *, actor: str) -> None:
        async with (
            self.refusals_audited("tool.delete.refused", f"tool {name}", actor=actor),
            self.db.write() as session,
        ):
            ws = await self.workspace_id(session)
            tool = await self._tool(session, name)
            users = await release_repo.releases_using_tool(session, ws, name)
            if users:
                raise Refused(
                    f"tool {name!r} cannot be removed: release(s) {', '.join(users)} use it"
                )
            for profile in await config_repo.profiles_of(session, tool.id):
                await session.delete(profile)
            await session.delete(tool)
            audit.record(session, ws, actor, "tool.delete", f"tool {name}")

    # -- resolution ------------------------------------------------------------------------

    async def resolve(
        self,
        environment: str,
        app: str | None,
        references: Iterable[Reference] | None = None,
        *,
        decrypt: bool = False,
        pinned: ConfigVersions | None = None,
    ) -> ResolvedConfiguration:
        async with self.db.read() as session:
            return await self.resolve_in(
                session, environment, app, references, decrypt=decrypt, pinned=pinned
            )

    async def resolve_in(
        self,
        session: AsyncSession,
        environment: str,
        app: str | None,
        references: Iterable[Reference] | None = None,
        *,
        decrypt: bool = False,
        pinned: ConfigVersions | None = None,
    ) -> ResolvedConfiguration:
        """The one place where configuration is resolved.

        For each name, the app's own value in the environment wins over the environment's.
        With `references`, only what they name is resolved (a step sees only what it asks
        for) and everything missing is reported at once; without, everything is.
        `pinned` resolves the exact versions a deployment recorded instead of the newest, so
        the steps of one deployment, and a rollback to it, see the same configuration.
        `decrypt` decides whether secret plaintexts are produced at all.
        """
        env, app_row = await self._target(session, environment, app)
        wanted = _Wanted.of(references)
        tool_names = {t.id: t.name for t in await config_repo.tools(session, env.workspace_id)}
        source = _Source(session, env.id, app_row.id if app_row else None, pinned, tool_names)
        variables = await source.versioned(Variable, wanted.vars)
        profiles = await source.profiles(wanted.tools)
        auth_keys = {p.auth_secret for p in profiles.values() if p.auth_secret}
        secrets = await source.versioned(
            Secret, None if wanted.secrets is None else sorted(set(wanted.secrets) | auth_keys)
        )
        missing = wanted.missing(variables, secrets, profiles)
        if missing:
            raise MissingConfiguration(env.name, missing)
        return ResolvedConfiguration(
            environment=env.name,
            app=app,
            vars={
                k: ResolvedVariable(value=v.value, version=v.version, scope=_scope_label(v.scope))
                for k, v in variables.items()
            },
            secrets=self._resolved_secrets(env, secrets, decrypt=decrypt),
            tools={name: _resolved_tool(p) for name, p in profiles.items()},
        )

    def _resolved_secrets(
        self, env: Environment, secrets: dict[str, Secret], *, decrypt: bool
    ) -> dict[str, ResolvedSecret]:
        """The chosen secrets, with their plaintexts only when `decrypt`."""
        data_key = self._data_key(env) if decrypt and secrets else None
        resolved: dict[str, ResolvedSecret] = {}
        for key, row in secrets.items():
            value = None
            if data_key is not None:
                plain = unseal(
                    data_key,
                    row.ciphertext,
                    secret_aad_of(env, row.app_id, row.key, row.version),
                    f"secret {row.key!r} v{row.version} of environment {env.name!r}",
                )
                value = SecretValue(plain.decode())
            resolved[key] = ResolvedSecret(
                kind=cast(SecretKind, row.kind),
                version=row.version,
                scope=_scope_label(row.scope),
                value=value,
            )
        return resolved


def _resolved_tool(p: ToolProfile) -> ResolvedTool:
    return ResolvedTool(
        url=p.url,
        version=p.version,
        scope=_scope_label(p.scope),
        auth_secret=p.auth_secret,
        auth_scheme=cast(AuthScheme, p.auth_scheme),
        auth_header=p.auth_header,
        headers=dict(p.headers),
        params=dict(p.params),
        body=dict(p.body),
        timeout_seconds=p.timeout_seconds,
        retries=p.retries,
    )


@dataclass(frozen=True)
class _Wanted:
    """What a resolution asks for, by kind: the names, or None for everything."""

    vars: list[str] | None
    secrets: list[str] | None
    tools: list[str] | None

    @classmethod
    def of(cls, references: Iterable[Reference] | None) -> _Wanted:
        wanted = None if references is None else set(references)

        def names(kind: str) -> list[str] | None:
            return None if wanted is None else sorted(r.name for r in wanted if r.kind == kind)

        return cls(vars=names("vars"), secrets=names("secrets"), tools=names("tools"))

    def missing(
        self,
        variables: dict[str, Variable],
        secrets: dict[str, Secret],
        profiles: dict[str, ToolProfile],
    ) -> list[str]:
        """Everything asked for (and every tool's auth secret) that the environment lacks."""
        missing = [f"vars.{k}" for k in self.vars or [] if k not in variables]
        missing += [f"secrets.{k}" for k in self.secrets or [] if k not in secrets]
        missing += [f"tools.{t} (no profile)" for t in self.tools or [] if t not in profiles]
        missing += [
            f"secrets.{p.auth_secret} (auth of tool {name})"
            for name, p in profiles.items()
            if p.auth_secret and p.auth_secret not in secrets
        ]
        return missing


_Chosen = TypeVar("_Chosen", Variable, Secret, ToolProfile)


@dataclass(frozen=True)
class _Source:
    """Where a resolution reads rows: the newest versions, or the exact ones a deployment
    pinned. The app's own value in the environment wins over the environment's."""

    session: AsyncSession
    environment_id: int
    app_id: int | None
    pinned: ConfigVersions | None
    tool_names: dict[int, str]

    def _exact(
        self, entries: dict[str, ConfigRef], only: Iterable[str] | None
    ) -> dict[str, tuple[str, int]]:
        keep = None if only is None else set(only)
        return {
            key: (
                config_repo.ENV_SCOPE if ref.scope == "env" else config_repo.scope_of(self.app_id),
                ref.version,
            )
            for key, ref in entries.items()
            if keep is None or key in keep
        }

    def _app_wins(self, rows: Iterable[_Chosen]) -> dict[str, _Chosen]:
        # Environment-wide rows first, so the app's own value overwrites them.
        chosen: dict[str, _Chosen] = {}
        for row in sorted(rows, key=lambda r: r.scope != config_repo.ENV_SCOPE):
            chosen[_name_of(row, self.tool_names)] = row
        return chosen

    async def versioned(
        self, table: type[config_repo.Versioned], keys: list[str] | None
    ) -> dict[str, config_repo.Versioned]:
        if self.pinned is None:
            scopes = config_repo.scopes_for(self.app_id)
            rows = await config_repo.current(self.session, table, self.environment_id, scopes, keys)
        else:
            pinned = self.pinned.vars if table is Variable else self.pinned.secrets
            rows = await config_repo.exact_versions(
                self.session, table, self.environment_id, self._exact(dict(pinned), keys)
            )
        return self._app_wins(rows)

    async def profiles(self, names: list[str] | None) -> dict[str, ToolProfile]:
        if self.pinned is None:
            rows = await config_repo.current_profiles(
                self.session, self.environment_id, config_repo.scopes_for(self.app_id)
            )
        else:
            tool_ids = {name: tool_id for tool_id, name in self.tool_names.items()}
            rows = await config_repo.exact_profiles(
                self.session,
                self.environment_id,
                {
                    tool_ids[n]: at
                    for n, at in self._exact(dict(self.pinned.tools), names).items()
                    if n in tool_ids
                },
            )
        return {
            name: p for name, p in self._app_wins(rows).items() if names is None or name in names
        }


_Row = Variable | Secret | ToolProfile


def _name_of(row: _Row, tool_names: dict[int, str]) -> str:
    return tool_names[row.tool_id] if isinstance(row, ToolProfile) else row.key
