"""Read-only views across the workspace: the status matrix and deployment history."""

from __future__ import annotations

from typing import Any

from models.views import (
    AuditEntry,
    EnvironmentDetail,
    EnvironmentDiff,
    HistoryEntry,
    HistoryEvent,
    HistoryView,
    InProgress,
    SecretDiff,
    StatusCell,
    StatusView,
    ToolDiff,
    ValueDiff,
)
from services.base import Service
from store import audit
from store import deployments as deployment_repo
from store import environments as env_repo
from store import pointers as pointer_repo
from store import promotions as promotion_repo
from store import releases as release_repo
from store.tables import AuditEvent


def audit_entry(row: AuditEvent) -> AuditEntry:
    """An audit row as people (and notifications) read it."""
    return AuditEntry(
        at=row.at,
        actor=row.actor,
        action=row.action,
        environment=row.environment,
        app=row.app,
        subject=row.subject,
        detail=row.detail,
    )


class ViewService(Service):
    async def status(self, environment: str | None = None, app: str | None = None) -> StatusView:
        session = self.session
        ws = await self.workspace_id()
        chain = list(await env_repo.chain(session, ws))
        if environment is not None:
            chain = [await self.environment(environment)]
        apps = list(await env_repo.apps(session, ws))
        if app is not None:
            apps = [await self.app(app)]
        pointing = await env_repo.app_environment_names(session, ws)
        # What releases expose is shown only for one environment: the matrix does not pay
        # for decoding every current release's pipeline.
        current = await pointer_repo.current_releases(
            session, ws, [e.id for e in chain], pipelines=environment is not None
        )
        cells = []
        for a in apps:
            for env in chain:
                if env.name not in pointing.get(a.id, []):
                    continue
                found = current.get((a.id, env.id))
                cells.append(
                    StatusCell(app=a.name, environment=env.name)
                    if found is None
                    else StatusCell(
                        app=a.name,
                        environment=env.name,
                        version=found.version,
                        since=found.since,
                        deployed_by=found.deployed_by,
                        kind=found.kind,
                        deployment_id=found.deployment_id,
                        # Read straight from the stored dict: no full pipeline parse per cell.
                        endpoints=((found.pipeline or {}).get("exposes") or {}).get(
                            "endpoints", []
                        ),
                        augmentations=((found.pipeline or {}).get("exposes") or {}).get(
                            "augmentations", []
                        ),
                    )
                )
        running = await promotion_repo.unfinished(
            session, ws, [a.id for a in apps], [e.id for e in chain]
        )
        details: dict[str, Any] = {
            # Certificates that expire soon, in every environment shown (any scope).
            "warnings": await self.work.secrets.certificate_warnings(
                chain, apps[0] if app is not None else None
            ),
        }
        if environment is not None:
            details |= {
                "variables": await self.work.variables.list_variables(environment),
                "secrets": await self.work.secrets.list_secrets(environment),
            }
        return StatusView(
            environments=[e.name for e in chain],
            cells=cells,
            in_progress=[
                InProgress(
                    promotion_id=p.workflow_id,
                    app=a,
                    version=v,
                    environment=e,
                    requested_by=p.requested_by,
                    requester_verified=p.requester_verified,
                    since=p.created_at,
                )
                for p, a, v, e in running
            ],
            **details,
        )

    async def environment_detail(self, environment: str) -> EnvironmentDetail:
        """One environment: protection, freezes, what each app runs there and exposes, its
        variables, secrets (names), tool profiles and data namespaces."""
        envs = self.work.environments
        env = await self.environment(environment)
        view = await envs.show_environment(environment)
        return EnvironmentDetail(
            environment=view,
            eligible_reviewers=await envs.eligible_reviewers(env),
            frozen=await envs.freeze_state(environment),
            freezes=await envs.list_freezes(environment),
            status=await self.status(environment),
            tool_profiles=await self.work.tools.list_profiles(environment),
            namespaces={
                app: await self.work.data.namespaces(environment, app) for app in view.apps
            },
        )

    async def history_view(self, app: str, environment: str) -> HistoryView:
        """Deployments, and the audit trail of requests and decisions, of one app and env."""
        deployments = await self.history(app, environment)
        session = self.session
        ws = await self.workspace_id()
        events = await audit.events(session, ws, environment=environment, app=app, limit=1000)
        return HistoryView(
            app=app,
            environment=environment,
            deployments=deployments,
            events=[
                HistoryEvent(
                    at=e.at, actor=e.actor, action=e.action, subject=e.subject, detail=e.detail
                )
                for e in events
                if e.action.startswith(("promotion.", "rollback.", "compensation."))
            ],
        )

    async def audit_log(
        self, *, environment: str | None = None, app: str | None = None, limit: int = 200
    ) -> list[AuditEntry]:
        """The latest `limit` audit entries (of one environment, of one app), oldest first."""
        session = self.session
        ws = await self.workspace_id()
        events = await audit.events(session, ws, environment=environment, app=app, limit=limit)
        return [audit_entry(e) for e in events]

    async def history(self, app: str, environment: str) -> list[HistoryEntry]:
        session = self.session
        app_row = await self.app(app)
        env = await self.environment(environment)
        versions = {r.id: r.version for r in await release_repo.releases(session, app_row.id)}
        return [
            HistoryEntry(
                id=d.id,
                kind=d.kind,
                version=versions[d.release_id],
                previous_version=versions.get(d.previous_release_id or 0),
                status=d.status,
                requested_by=d.requested_by,
                requester_verified=d.requester_verified,
                source=d.source,
                workflow_id=d.workflow_id,
                started_at=d.started_at,
                finished_at=d.finished_at,
                verified_at=d.verified_at,
                reason=d.reason,
                config=d.config,
            )
            for d in await deployment_repo.deployments_in(session, app_row.id, env.id)
        ]

    async def diff(self, app: str, source: str, target: str) -> EnvironmentDiff:
        """Configuration and release differences of `app` between two environments."""
        session = self.session
        app_row = await self.app(app)
        left_env = await self.environment(source)
        right_env = await self.environment(target)
        left = await self.work.resolution.resolve(source, app)
        right = await self.work.resolution.resolve(target, app)
        releases = {r.id: r.version for r in await release_repo.releases(session, app_row.id)}
        pointers = [
            await pointer_repo.current_release(session, app_row.id, env.id)
            for env in (left_env, right_env)
        ]
        versions = [releases[p.release_id] if p else None for p in pointers]

        def tool(t: Any) -> dict[str, Any] | None:
            if t is None:
                return None
            return {
                "url": t.url,
                "auth_secret": t.auth_secret,
                "auth_scheme": t.auth_scheme,
                "auth_header": t.auth_header,
                "headers": t.headers,
                "params": t.params,
                "body": t.body,
                "timeout_seconds": t.timeout_seconds,
                "retries": t.retries,
            }

        var_keys = sorted(set(left.vars) | set(right.vars))
        secret_keys = sorted(set(left.secrets) | set(right.secrets))
        tool_names = sorted(set(left.tools) | set(right.tools))
        return EnvironmentDiff(
            app=app,
            source=source,
            target=target,
            release=ValueDiff(key="release", source=versions[0], target=versions[1]),
            vars=[
                ValueDiff(
                    key=k,
                    source=left.vars[k].value if k in left.vars else None,
                    target=right.vars[k].value if k in right.vars else None,
                )
                for k in var_keys
                if (left.vars.get(k) and left.vars[k].value)
                != (right.vars.get(k) and right.vars[k].value)
            ],
            # Values are never compared or shown: a secret differs when one side lacks it.
            secrets=[
                SecretDiff(
                    key=k,
                    source_version=left.secrets[k].version if k in left.secrets else None,
                    target_version=right.secrets[k].version if k in right.secrets else None,
                )
                for k in secret_keys
            ],
            tools=[
                ToolDiff(tool=n, source=tool(left.tools.get(n)), target=tool(right.tools.get(n)))
                for n in tool_names
                if tool(left.tools.get(n)) != tool(right.tools.get(n))
            ],
        )
