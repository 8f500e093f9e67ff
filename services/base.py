"""What every service shares: the unit of work it acts in (one transaction, opened by the
entry point through `services.unit.Units`), the settings, the master key, the workspace; and
how a refusal asks to be audited."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import AuditNote, NotFound, Refused
from models.names import InvalidName, check_resource_name, shown
from models.settings import Settings
from store import audit
from store import environments as env_repo
from store.tables import App, Environment
from vault.keys import KeyProvider

if TYPE_CHECKING:
    from services.unit import Work


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
    """A family of rules acting inside one unit of work: every query and write of a method
    goes through `self.session`, which the entry point opened and commits (or rolls back)
    once, so a command, an activity or a server request is one transaction however many
    services it calls. Reach a sibling service of the same unit through `self.work`."""

    def __init__(self, work: Work) -> None:
        self.work = work
        self.session: AsyncSession = work.session
        self.settings: Settings = work.settings

    @property
    def key(self) -> KeyProvider:
        return self.work.key

    async def workspace_id(self) -> int:
        return await self.work.workspace_id()

    async def environment(self, name: str) -> Environment:
        if (known := self.work.known(Environment, name)) is not None:
            return known
        ws = await self.workspace_id()
        found = await env_repo.find_environment(self.session, ws, name)
        if found is None:
            names = [e.name for e in await env_repo.chain(self.session, ws)]
            raise _unknown("environment", name, names, f"stageline env create {name}")
        self.work.remember(found)
        return found

    async def app(self, name: str) -> App:
        if (known := self.work.known(App, name)) is not None:
            return known
        ws = await self.workspace_id()
        found = await env_repo.find_app(self.session, ws, name)
        if found is None:
            names = [a.name for a in await env_repo.apps(self.session, ws)]
            raise _unknown("app", name, names, f"stageline app create {name} --env ENV")
        self.work.remember(found)
        return found

    async def app_and_environment(
        self, app: str, environment: str, *, environment_first: bool = False
    ) -> tuple[App, Environment]:
        """Both rows in one query (most actions name an app and an environment); when either
        does not exist, the error `app` or `environment` gives (the environment's first when
        both are unknown and `environment_first`)."""
        known_app, known_env = self.work.known(App, app), self.work.known(Environment, environment)
        if known_app is not None and known_env is not None:
            return known_app, known_env
        found = await env_repo.find_app_and_environment(
            self.session, await self.workspace_id(), app, environment
        )
        if found is not None:
            self.work.remember(*found)
            return found
        if environment_first:
            env = await self.environment(environment)
            return await self.app(app), env
        return await self.app(app), await self.environment(environment)

    async def optional_app(self, name: str | None) -> App | None:
        return None if name is None else await self.app(name)

    async def audit(
        self,
        actor: str,
        action: str,
        subject: str,
        *,
        environment: str | None = None,
        app: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Add an audit entry to this unit of work: it commits with the change it describes."""
        audit.record(
            self.session,
            await self.workspace_id(),
            actor,
            action,
            subject,
            environment=environment,
            app=app,
            detail=detail,
        )

    @contextmanager
    def refusals_audited(
        self,
        action: str,
        subject: str,
        *,
        actor: str,
        environment: str | None = None,
        app: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Iterator[None]:
        """Mark a `Refused` raised inside the block to be audited, then raise it on.

        The entry is written by `Units` after the refused unit of work rolled back (so
        nothing else of it is kept), in a transaction of its own:

            with self.refusals_audited("tool.delete.refused", f"tool {name}", actor=actor):
                ...  # raise Refused(...) here

        The entry has `action`, `subject`, `environment`, `app` and the detail
        `{"reason": <the refusal's message>, **detail}`. A refusal that knows its environment
        (`RefusedIn`, `MissingConfiguration`) supplies the environment (named at the end of
        the subject, "... in production") and app when they are not given.
        """
        try:
            yield
        except Refused as exc:
            where = environment or getattr(exc, "environment", None)
            if where is not None and environment is None:
                subject = f"{subject} in {where}"
            exc.audit_note = AuditNote(
                action=action,
                subject=subject,
                actor=actor,
                environment=where,
                app=app or getattr(exc, "app", None),
                detail={"reason": exc.message, **(detail or {})},
            )
            raise
