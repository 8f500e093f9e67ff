"""What every service shares: the database, the settings, the key, the workspace."""

from __future__ import annotations

import difflib

from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import NotFound
from models.names import InvalidName, check_resource_name, shown
from models.settings import Settings
from store import environments as env_repo
from store.database import Database
from store.tables import App, Environment
from vault.keys import KeyProvider, load_master_key


def _unknown(kind: str, name: str, known: list[str], command: str) -> NotFound:
    """`name` names no such thing: say what does exist, and how to create it if it could be."""
    try:
        check_resource_name(name)
        quoted, how = repr(name), f"create it with '{command}'"
    except InvalidName:
        quoted, how = shown(name), "nor is that a valid name"
    # A typo is likelier than a missing environment: name the closest one first.
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    guess = f" (did you mean {close[0]}?)" if close else ""
    return NotFound(
        f"{kind} {quoted} does not exist{guess}; known {kind}s: "
        f"{', '.join(known) or 'none yet'} ({how})"
    )


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
