"""What every service shares: the database, the settings, the key, the workspace."""

from __future__ import annotations

import difflib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import NotFound, Refused, StagelineError
from models.names import InvalidName, check_resource_name, shown
from models.settings import Settings
from store import audit
from store import environments as env_repo
from store.database import Database
from store.tables import App, Environment
from vault.keys import KeyProvider, load_master_key


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """ " (did you mean X?)" when one of `known` is close to `name`, else ""."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]}?)" if close else ""


def _unknown(kind: str, name: str, known: list[str], command: str) -> NotFound:
    """`name` names no such thing: say what does exist, and how to create it if it could be."""
    try:
        check_resource_name(name)
        quoted, how = repr(name), f"create it with '{command}'"
    except InvalidName:
        quoted, how = shown(name), "nor is that a valid name"
    # A typo is likelier than a missing environment: name the closest one first.
    return NotFound(
        f"{kind} {quoted} does not exist{did_you_mean(name, known)}; known {kind}s: "
        f"{', '.join(known) or 'none yet'} ({how})"
    )


class RefusedIn(Refused):
    """A refusal about one environment (and app): `refusals_audited` files it under them."""

    def __init__(self, message: str, *, environment: str | None, app: str | None = None) -> None:
        super().__init__(message)
        self.environment = environment
        self.app = app


class Service:
    def __init__(self, db: Database, settings: Settings, key: KeyProvider | None = None) -> None:
        self.db = db
        self.settings = settings
        self._key = key

    @property
    def key(self) -> KeyProvider:
        # Loaded on first use, so commands that touch no secret work without a master key.
        if self._key is None:
            self._key = load_master_key(self.settings)
        return self._key

    async def workspace_id(self, session: AsyncSession) -> int:
        return (await env_repo.get_or_create_workspace(session, self.settings.workspace)).id

    async def environment(self, session: AsyncSession, name: str) -> Environment:
        found = await env_repo.find_environment(session, await self.workspace_id(session), name)
        if found is None:
            known = [
                e.name for e in await env_repo.chain(session, await self.workspace_id(session))
            ]
            raise _unknown("environment", name, known, f"stageline env create {name}")
        return found

    async def app(self, session: AsyncSession, name: str) -> App:
        found = await env_repo.find_app(session, await self.workspace_id(session), name)
        if found is None:
            known = [a.name for a in await env_repo.apps(session, await self.workspace_id(session))]
            raise _unknown("app", name, known, f"stageline app create {name} --env ENV")
        return found

    async def optional_app(self, session: AsyncSession, name: str | None) -> App | None:
        return None if name is None else await self.app(session, name)

    async def record_refusal(
        self,
        action: str,
        subject: str,
        reason: str,
        *,
        actor: str,
        environment: str | None = None,
        app: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Write one audit entry for a refusal, in a transaction of its own.

        Call it only when no write transaction of this process is open (on SQLite a second
        writer would wait for the first forever): after the refused unit of work has rolled
        back, as `refusals_audited` does.
        """
        await self.record_event(
            action,
            subject,
            actor=actor,
            environment=environment,
            app=app,
            detail={"reason": reason, **(detail or {})},
        )

    async def record_event(
        self,
        action: str,
        subject: str,
        *,
        actor: str,
        environment: str | None = None,
        app: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Write one audit entry in a unit of work of its own (an event that changes nothing
        else, such as a worker starting without the step sandbox)."""
        async with self.db.write() as session:
            audit.record(
                session,
                await self.workspace_id(session),
                actor,
                action,
                subject,
                environment=environment,
                app=app,
                detail=detail,
            )

    @asynccontextmanager
    async def refusals_audited(
        self,
        action: str,
        subject: str,
        *,
        actor: str,
        environment: str | None = None,
        app: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AsyncIterator[None]:
        """Audit a `Refused` raised inside the block, then raise it on.

        Wrap the whole unit of work, so the refusal is written after it rolled back:

            async with self.refusals_audited("tool.delete.refused", f"tool {name}", actor=actor):
                async with self.db.write() as session:
                    ...  # raise Refused(...) here: nothing of this unit is kept

        The entry has `action`, `subject`, `environment`, `app` and the detail
        `{"reason": <the refusal's message>, **detail}`. A refusal that knows its environment
        (`RefusedIn`, `MissingConfiguration`) supplies the environment (named at the end of
        the subject, "... in production") and app when they are not given. When the entry
        cannot be written (the database went away), the refusal is still what is raised.
        """
        try:
            yield
        except Refused as exc:
            where = environment or getattr(exc, "environment", None)
            if where is not None and environment is None:
                subject = f"{subject} in {where}"
            try:
                await self.record_refusal(
                    action,
                    subject,
                    exc.message,
                    actor=actor,
                    environment=where,
                    app=app or getattr(exc, "app", None),
                    detail=detail,
                )
            except (StagelineError, SQLAlchemyError) as audit_failure:
                exc.add_note(f"the refusal could not be audited: {audit_failure!r}")
            raise
