"""What variables, secrets and tool profiles share: the place a value is scoped to (an
environment, optionally one app in it), and for variables and secrets, the rules of their
keys: a new version per change, no two spellings of one name, deletion as a tombstone."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

from models.errors import Conflict, NotFound
from models.names import check_key
from models.resolution import Scope
from services.base import Service, did_you_mean
from store import configuration as config_repo
from store.tables import App, Environment, Secret, Variable

Entry = TypeVar("Entry", Variable, Secret)


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


def scope_label(scope: str) -> Scope:
    return "env" if scope == config_repo.ENV_SCOPE else "app"


def where(env: Environment, app: str | None) -> str:
    """How an audit subject or a message names the place of a value."""
    return env.name + (f" for app {app}" if app else "")


@dataclass(frozen=True)
class Slot:
    """Where the next version of a key goes."""

    env: Environment
    app_id: int | None
    scope: str
    version: int


class ScopedService(Service):
    """A service of values that belong to an environment, or to one app within it."""

    async def _target(self, environment: str, app: str | None) -> tuple[Environment, App | None]:
        """The environment and app named, refusing an app that does not point to it."""
        if app is None:
            return await self.environment(environment), None
        app_row, env = await self.app_and_environment(app, environment, environment_first=True)
        await self.work.environments.require_app_in(app_row, env)
        return env, app_row


class KeyedEntries(ScopedService, Generic[Entry], ABC):
    """Variables or secrets: versioned values under a key, per environment and app scope."""

    table: type[Entry]
    kind: Literal["variable", "secret"]
    prefix: str  # how references name them: vars.KEY, secrets.KEY

    @abstractmethod
    def _tombstone(self, newest: Entry) -> Entry:
        """A row that says the key is deleted, with what its table requires besides (each
        table's service says what)."""

    async def _next_slot(self, environment: str, key: str, app: str | None) -> Slot:
        """Where a new version of `key` goes, after refusing a second spelling of it."""
        env, app_row = await self._target(environment, app)
        await self._refuse_case_twin(env, app_row, key)
        app_id = app_row.id if app_row else None
        scope = config_repo.scope_of(app_id)
        latest = await config_repo.latest_version(self.session, self.table, env.id, scope, key)
        return Slot(env, app_id, scope, latest + 1)

    async def _store(
        self, row: Entry, slot: Slot, *, actor: str, app: str | None, **detail: object
    ) -> None:
        """Add a new version and audit it (`detail` adds to its key and version)."""
        self.session.add(row)
        await self.session.flush()
        await self.audit(
            actor,
            f"{self.kind}.set",
            f"{self.prefix}.{row.key} v{slot.version} in {where(slot.env, app)}",
            environment=slot.env.name,
            app=app,
            detail={"key": row.key, "version": slot.version, **detail},
        )

    async def _current(
        self, environment: str, app: str | None
    ) -> tuple[Environment, list[tuple[Entry, str | None]]]:
        """The current rows an app sees in an environment (the environment's and its own),
        each with the app it belongs to (None: the environment's)."""
        env, app_row = await self._target(environment, app)
        scopes = config_repo.scopes_for(app_row.id if app_row else None)
        rows = await config_repo.current(self.session, self.table, env.id, scopes)
        return env, [(r, None if r.scope == config_repo.ENV_SCOPE else app) for r in rows]

    async def _refuse_case_twin(self, env: Environment, app_row: App | None, key: str) -> None:
        """Refuse a key that differs only by case from a variable or secret seen with it.

        Keys may be mixed case, and variables and secrets both become the environment
        variables of steps, where `DATABASE_URL` and `database_url` would read as one but
        be two. An app sees the environment's keys and its own, so a key at app scope is
        compared with those; one at environment scope with every scope of the environment.
        """
        scopes = None if app_row is None else config_repo.scopes_for(app_row.id)
        session = self.session
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
            raise Conflict(
                f"{self.kind} {key!r} differs only by case from the existing {kind} "
                f"{existing!r} in {where(env, owner.name if owner is not None else None)}; "
                "steps would see two environment variables that read the same: "
                f"use {existing!r}"
            )

    async def _delete(
        self, environment: str, key: str, *, actor: str, app: str | None
    ) -> DeletedKey:
        """Add a tombstone version, so the key is absent from now on while the versions that
        deployments recorded stay. Deleting it again changes nothing."""
        check_key(key, f"{self.kind} name")
        env, app_row = await self._target(environment, app)
        app_id = app_row.id if app_row else None
        scope = config_repo.scope_of(app_id)
        newest = await config_repo.newest(self.session, self.table, env.id, scope, key)
        if newest is None:
            raise await self._not_set(env, app_row, key)
        if newest.deleted:
            # Already deleted: nothing changes, so a retry is safe.
            return DeletedKey(
                kind=self.kind,
                environment=env.name,
                app=app,
                key=key,
                version=newest.version,
                last_version=newest.version - 1,
                already_deleted=True,
            )
        slot = Slot(env, app_id, scope, newest.version + 1)
        await self._add_tombstone(newest, slot, actor)
        await self.audit(
            actor,
            f"{self.kind}.delete",
            f"{self.prefix}.{key} in {where(env, app)}",
            environment=env.name,
            app=app,
            detail={"key": key, "version": slot.version, "last_version": newest.version},
        )
        return DeletedKey(
            kind=self.kind,
            environment=env.name,
            app=app,
            key=key,
            version=slot.version,
            last_version=newest.version,
        )

    async def _add_tombstone(self, newest: Entry, slot: Slot, actor: str) -> None:
        tombstone = self._tombstone(newest)
        tombstone.environment_id = slot.env.id
        tombstone.app_id = slot.app_id
        tombstone.scope = slot.scope
        tombstone.key = newest.key
        tombstone.version = slot.version
        tombstone.deleted = True
        tombstone.created_by = actor
        self.session.add(tombstone)
        await self.session.flush()

    async def _not_set(self, env: Environment, app_row: App | None, key: str) -> NotFound:
        """`key` was never set in this scope: say what is, and where `key` is if elsewhere."""
        scope = config_repo.scope_of(app_row.id if app_row else None)
        here = [r.key for r in await config_repo.current(self.session, self.table, env.id, [scope])]
        hint = await self._set_elsewhere(env, app_row, key)
        return NotFound(
            f"{self.kind} {key!r} is not set in "
            f"{where(env, app_row.name if app_row else None)}{did_you_mean(key, here)}; "
            f"set there: {', '.join(here) or 'none'}{hint}"
        )

    async def _set_elsewhere(self, env: Environment, app_row: App | None, key: str) -> str:
        """A hint when `key` is set in another scope of the environment, else ""."""
        name = f"{self.prefix}.{key}"
        if app_row is not None:
            env_wide = await config_repo.current(
                self.session, self.table, env.id, [config_repo.ENV_SCOPE], [key]
            )
            if not env_wide:
                return ""
            return f"; {name} is set for all of {env.name}: drop --app to delete it"
        in_scopes = await config_repo.current_in_every_scope(self.session, self.table, env.id, key)
        owners = [
            owner.name
            for r in in_scopes
            if r.app_id is not None and (owner := await self.session.get(App, r.app_id))
        ]
        if not owners:
            return ""
        return f"; {name} is set for app {', '.join(owners)} only: add --app {owners[0]}"
