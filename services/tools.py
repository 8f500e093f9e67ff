"""Tools (webhooks) and their profiles: per environment (and optionally per app), the
URL, authentication and request details a tool step calls with."""

from __future__ import annotations

from typing import cast

from models.errors import BadInput, Conflict, NotFound, Refused
from models.names import HEADER_NAME, check_key, check_resource_name, header_problem, shown
from models.workspace import AUTH_SCHEMES, AuthScheme, ToolProfileView, ToolView
from services.config_entries import ScopedService, where
from store import configuration as config_repo
from store import environments as env_repo
from store import releases as release_repo
from store.tables import App, Environment, Tool, ToolProfile


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


def _check_profile(
    url: str,
    headers: dict[str, str],
    auth_secret: str | None,
    auth_scheme: str,
    auth_header: str | None,
    timeout_seconds: float,
    retries: int,
) -> None:
    """Refuse a profile a tool step could not call with."""
    _check_tool_url(url)
    for name, value in headers.items():
        if (problem := header_problem(name, value)) is not None:
            raise BadInput(problem)
    _check_tool_auth(auth_secret, auth_scheme, auth_header)
    if not 0 < timeout_seconds <= 300:
        raise BadInput("tool profile timeout must be between 0 and 300 seconds")
    if not 0 <= retries <= 10:
        raise BadInput("tool profile retries must be between 0 and 10")


def _profile_view(tool: str, env: Environment, app: str | None, p: ToolProfile) -> ToolProfileView:
    return ToolProfileView(
        tool=tool,
        environment=env.name,
        app=app,
        url=p.url,
        auth_secret=p.auth_secret,
        auth_scheme=cast(AuthScheme, p.auth_scheme),
        auth_header=p.auth_header,
        headers=p.headers,
        params=p.params,
        body=p.body,
        timeout_seconds=p.timeout_seconds,
        retries=p.retries,
        version=p.version,
    )


class ToolService(ScopedService):
    async def create_tool(self, name: str, *, kind: str, actor: str) -> ToolView:
        check_resource_name(name, "tool name")
        if kind != "webhook":
            raise BadInput(f"tool kind {kind!r} is not known; the supported kind is 'webhook'")
        ws = await self.workspace_id()
        if await config_repo.find_tool(self.session, ws, name) is not None:
            raise Conflict(f"tool {name!r} already exists")
        self.session.add(Tool(workspace_id=ws, name=name, kind=kind))
        await self.audit(actor, "tool.create", f"tool {name}", detail={"kind": kind})
        return ToolView(name=name, kind="webhook")

    async def _tool(self, name: str) -> Tool:
        ws = await self.workspace_id()
        tool = await config_repo.find_tool(self.session, ws, name)
        if tool is None:
            known = [t.name for t in await config_repo.tools(self.session, ws)]
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
        """Give `tool` a new profile version in `environment` (with `app`: for that app)."""
        headers = headers or {}
        _check_profile(
            url, headers, auth_secret, auth_scheme, auth_header, timeout_seconds, retries
        )
        tool_row = await self._tool(tool)
        env, app_row = await self._target(environment, app)
        profile = ToolProfile(
            tool_id=tool_row.id,
            environment_id=env.id,
            url=url,
            auth_secret=auth_secret,
            auth_scheme=auth_scheme,
            # Only the `header` scheme names a header; the others have a fixed one.
            auth_header=auth_header if auth_scheme == "header" else None,
            headers=headers,
            params=params or {},
            body=body or {},
            timeout_seconds=timeout_seconds,
            retries=retries,
            created_by=actor,
        )
        await self._add_version(profile, app_row)
        await self.audit(
            actor,
            "tool.profile",
            f"tools.{tool} v{profile.version} in {where(env, app)}",
            environment=env.name,
            app=app,
            detail={
                "tool": tool,
                "version": profile.version,
                "url": url,
                "auth_secret": auth_secret,
                "auth_scheme": auth_scheme,
            },
        )
        return _profile_view(tool, env, app, profile)

    async def _add_version(self, profile: ToolProfile, app_row: App | None) -> None:
        """Add `profile` as the next version of its tool's profile in its scope."""
        profile.app_id = app_row.id if app_row else None
        profile.scope = config_repo.scope_of(profile.app_id)
        latest = await config_repo.profile_version(
            self.session, profile.tool_id, profile.environment_id, profile.scope
        )
        profile.version = latest + 1
        self.session.add(profile)

    async def list_tools(self) -> list[ToolView]:
        ws = await self.workspace_id()
        env_names = {e.id: e.name for e in await env_repo.chain(self.session, ws)}
        views = []
        for tool in await config_repo.tools(self.session, ws):
            env_ids = await config_repo.environments_with_profiles(self.session, tool.id)
            views.append(
                ToolView(
                    name=tool.name,
                    kind="webhook",
                    environments=sorted(env_names[i] for i in env_ids),
                )
            )
        return views

    async def list_profiles(self, environment: str) -> list[ToolProfileView]:
        """The current profile of every tool in `environment`: the environment's own, then
        each app's (never a credential: the secret's name only)."""
        ws = await self.workspace_id()
        env = await self.environment(environment)
        tool_names = {t.id: t.name for t in await config_repo.tools(self.session, ws)}
        app_names = {a.id: a.name for a in await env_repo.apps(self.session, ws)}
        scopes = [config_repo.scope_of(None), *(config_repo.scope_of(i) for i in app_names)]
        profiles = await config_repo.current_profiles(self.session, env.id, scopes)
        views = [
            _profile_view(
                tool_names[p.tool_id],
                env,
                None if p.app_id is None else app_names.get(p.app_id),
                p,
            )
            for p in profiles
        ]
        return sorted(views, key=lambda v: (v.app or "", v.tool))

    async def delete_tool(self, name: str, *, actor: str) -> None:
        """Remove a tool and its profiles; refused (and audited) while a release uses it."""
        with self.refusals_audited("tool.delete.refused", f"tool {name}", actor=actor):
            ws = await self.workspace_id()
            tool = await self._tool(name)
            users = await release_repo.releases_using_tool(self.session, ws, name)
            if users:
                raise Refused(
                    f"tool {name!r} cannot be removed: release(s) {', '.join(users)} use it"
                )
            for profile in await config_repo.profiles_of(self.session, tool.id):
                await self.session.delete(profile)
            await self.session.delete(tool)
            await self.audit(actor, "tool.delete", f"tool {name}")
