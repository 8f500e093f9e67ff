"""Configuration resolved for an app in an environment: the one place where variables,
secrets and tool profiles become what a step may use."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import MissingConfiguration
from models.pipeline import Reference
from models.promotion import ConfigRef, ConfigVersions
from models.resolution import (
    ResolvedConfiguration,
    ResolvedSecret,
    ResolvedTool,
    ResolvedVariable,
)
from models.workspace import AuthScheme, SecretKind
from services.config_entries import ScopedService, scope_label
from services.secrets import reveal
from store import configuration as config_repo
from store.tables import App, Environment, Secret, ToolProfile, Variable


class ResolutionService(ScopedService):
    async def resolve(
        self,
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
        env, app_row = await self._target(environment, app)
        return await self.resolve_for(env, app_row, references, decrypt=decrypt, pinned=pinned)

    async def resolve_for(
        self,
        env: Environment,
        app_row: App | None,
        references: Iterable[Reference] | None = None,
        *,
        decrypt: bool = False,
        pinned: ConfigVersions | None = None,
    ) -> ResolvedConfiguration:
        """`resolve`, for an environment and app already loaded and known to belong together
        (a deployment's step: its app pointed to its environment when it began, and cannot
        stop pointing there while it runs)."""
        wanted = _Wanted.of(references)
        source = await self._source(env, app_row, pinned, wanted.tools != [])
        variables = await source.versioned(Variable, wanted.vars)
        profiles = await source.profiles(wanted.tools)
        secrets = await source.versioned(Secret, wanted.secrets_with_auth(profiles))
        missing = wanted.missing(variables, secrets, profiles)
        if missing:
            raise MissingConfiguration(env.name, missing)
        return ResolvedConfiguration(
            environment=env.name,
            app=app_row.name if app_row else None,
            vars={k: _resolved_variable(v) for k, v in variables.items()},
            secrets=self._resolved_secrets(env, secrets, decrypt=decrypt),
            tools={name: _resolved_tool(p) for name, p in profiles.items()},
        )

    async def _source(
        self, env: Environment, app_row: App | None, pinned: ConfigVersions | None, tools: bool
    ) -> _Source:
        """`tools`: whether tool profiles are asked for at all (their names are then read)."""
        tools_named = await config_repo.tools(self.session, env.workspace_id) if tools else []
        return _Source(
            self.session,
            env.id,
            app_row.id if app_row else None,
            pinned,
            {t.id: t.name for t in tools_named},
        )

    def _resolved_secrets(
        self, env: Environment, secrets: dict[str, Secret], *, decrypt: bool
    ) -> dict[str, ResolvedSecret]:
        """The chosen secrets, with their plaintexts only when `decrypt`."""
        data_key = self.work.secrets.data_key(env) if decrypt and secrets else None
        return {
            key: ResolvedSecret(
                kind=cast(SecretKind, row.kind),
                version=row.version,
                scope=scope_label(row.scope),
                value=None if data_key is None else reveal(data_key, env, row),
            )
            for key, row in secrets.items()
        }


def _resolved_variable(v: Variable) -> ResolvedVariable:
    return ResolvedVariable(value=v.value, version=v.version, scope=scope_label(v.scope))


def _resolved_tool(p: ToolProfile) -> ResolvedTool:
    return ResolvedTool(
        url=p.url,
        version=p.version,
        scope=scope_label(p.scope),
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

    def secrets_with_auth(self, profiles: dict[str, ToolProfile]) -> list[str] | None:
        """The secrets to read: those asked for and the auth secret of every tool chosen
        (None: all of them)."""
        if self.secrets is None:
            return None
        auth = {p.auth_secret for p in profiles.values() if p.auth_secret}
        return sorted(set(self.secrets) | auth)

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
        if keys == []:  # a step that names none: nothing to read
            return {}
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
        if names == []:
            return {}
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
