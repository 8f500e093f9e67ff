"""Units of work: where an entry point (a CLI command, an activity, later the server) opens
one transaction and reaches the services that act inside it.

    units = Units(db, settings)
    async with units.write() as work:
        view = await work.variables.set_variable("staging", "REGION", "eu", actor="ana")

The block commits once when it ends and rolls back on any error. A refusal a service marked
to be audited (`Service.refusals_audited`) is written after the rollback, in a transaction
of its own, so the audit log keeps the refusal and nothing of the refused work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property
from typing import TypeVar

from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state

from models.errors import AuditNote, Refused, StagelineError
from models.settings import Settings
from services.base import Service
from services.data import DataService
from services.deployments import DeploymentService
from services.environments import EnvironmentService
from services.notifications import NotificationService
from services.principals import PrincipalService
from services.queue import QueueService
from services.releases import ReleaseService
from services.resolution import ResolutionService
from services.reviewers import ReviewerKeyService
from services.secrets import SecretService
from services.tools import ToolService
from services.variables import VariableService
from services.views import ViewService
from store import environments as env_repo
from store.database import Database
from store.tables import App, Environment
from vault.keys import KeyProvider, load_master_key

Named = TypeVar("Named", App, Environment)


class MasterKey:
    """The master key, loaded on first use, so commands that touch no secret work without
    one; shared by every unit of work of one entry point."""

    def __init__(self, settings: Settings, key: KeyProvider | None = None) -> None:
        self._settings = settings
        self._key = key

    def get(self) -> KeyProvider:
        if self._key is None:
            self._key = load_master_key(self._settings)
        return self._key

    def replace(self, key: KeyProvider) -> None:
        """After a rotation: later units of work use the new key."""
        self._key = key


class Work:
    """One unit of work: its session, and each service bound to it (made on first use)."""

    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        keys: MasterKey,
        workspace_id: int | None = None,
        *,
        hold_rows: bool = False,
    ) -> None:
        self.session = session
        self.settings = settings
        self.keys = keys
        self._workspace_id = workspace_id
        # Apps and environments this unit already looked up by name. Several services of one
        # unit name the same ones (a promotion's phase: the queue, the gates, the resolution);
        # inside one transaction a second SELECT would return the same row. Held strongly,
        # so `session.get` by id finds them in the identity map too.
        self._named: dict[tuple[type, str], App | Environment] = {}
        if hold_rows:
            _hold_rows(session)

    @property
    def key(self) -> KeyProvider:
        return self.keys.get()

    async def workspace_id(self) -> int:
        if self._workspace_id is None:
            workspace = await env_repo.get_or_create_workspace(
                self.session, self.settings.workspace
            )
            self._workspace_id = workspace.id
        return self._workspace_id

    def known(self, kind: type[Named], name: str) -> Named | None:
        """The app or environment of that name this unit already loaded, unless it was
        renamed or deleted since (then the caller asks the database)."""
        row = self._named.get((kind, name))
        if row is None:
            return None
        state = instance_state(row)
        gone = state.deleted or state.was_deleted or state.detached or row in self.session.deleted
        if gone or row.name != name:
            del self._named[(kind, name)]
            return None
        assert isinstance(row, kind)
        return row

    def remember(self, *rows: App | Environment) -> None:
        for row in rows:
            self._named[(type(row), row.name)] = row

    @cached_property
    def environments(self) -> EnvironmentService:
        return EnvironmentService(self)

    @cached_property
    def variables(self) -> VariableService:
        return VariableService(self)

    @cached_property
    def secrets(self) -> SecretService:
        return SecretService(self)

    @cached_property
    def tools(self) -> ToolService:
        return ToolService(self)

    @cached_property
    def resolution(self) -> ResolutionService:
        return ResolutionService(self)

    @cached_property
    def releases(self) -> ReleaseService:
        return ReleaseService(self)

    @cached_property
    def deployments(self) -> DeploymentService:
        return DeploymentService(self)

    @cached_property
    def queue(self) -> QueueService:
        return QueueService(self)

    @cached_property
    def principals(self) -> PrincipalService:
        return PrincipalService(self)

    @cached_property
    def reviewers(self) -> ReviewerKeyService:
        return ReviewerKeyService(self)

    @cached_property
    def data(self) -> DataService:
        return DataService(self)

    @cached_property
    def views(self) -> ViewService:
        return ViewService(self)

    @cached_property
    def notifications(self) -> NotificationService:
        return NotificationService(self)


def _hold_rows(session: AsyncSession) -> None:
    """Keep every row a unit of work loads or adds until the unit ends. The identity map holds
    rows weakly: a row read by a function that has returned is gone, and `session.get` by id
    (a release, a pointer, a deployment another service of the unit read a moment ago) would
    ask the database again. Only for writing units, which are short; a large read keeps
    streaming rows it has done with."""
    held: list[object] = []

    def hold(_session: Session, row: object) -> None:
        held.append(row)

    event.listen(session.sync_session, "loaded_as_persistent", hold)
    event.listen(session.sync_session, "pending_to_persistent", hold)


class Units:
    """Opens units of work on one database, with one settings and one master key."""

    # Not a server's client (cli.remote.RemoteUnits is): the database is here.
    remote = False

    def __init__(self, db: Database, settings: Settings, key: KeyProvider | None = None) -> None:
        self.db = db
        self.settings = settings
        self.keys = MasterKey(settings, key)
        # The workspace's id, once a unit that found (or created) it has committed: a
        # workspace is never deleted or renamed, so later units skip that SELECT.
        self._workspace_id: int | None = None

    @asynccontextmanager
    async def write(self, *, one_statement: bool = False) -> AsyncIterator[Work]:
        """A unit of work that changes state (on SQLite: the one writer of this process);
        `one_statement`: see `Database.write`."""
        try:
            async with self.db.write(one_statement=one_statement) as session:
                work = Work(session, self.settings, self.keys, self._workspace_id, hold_rows=True)
                yield work
            self._workspace_id = work._workspace_id  # committed
        except Refused as exc:
            await self._audit_refusal(exc)
            raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Work]:
        """A unit of work that only reads (what that promises: `Database.read`)."""
        try:
            async with self.db.read() as session:
                work = Work(session, self.settings, self.keys, self._workspace_id)
                yield work
            self._workspace_id = work._workspace_id
        except Refused as exc:
            await self._audit_refusal(exc)
            raise

    async def _audit_refusal(self, exc: Refused) -> None:
        note: AuditNote | None = exc.audit_note
        if note is None:
            return
        exc.audit_note = None  # written once, even if an outer unit sees it again
        try:
            async with self.write() as work:
                await Service(work).audit(
                    note.actor,
                    note.action,
                    note.subject,
                    environment=note.environment,
                    app=note.app,
                    detail=note.detail,
                )
        except (StagelineError, SQLAlchemyError) as failure:
            # The refusal is still what the caller sees; say why it is not in the log.
            exc.add_note(f"the refusal could not be audited: {failure!r}")
