"""The append-only audit log."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from store.tables import AuditEvent, utcnow

# Entries a unit of work has recorded and not yet written, in the session's info.
_PENDING = "stageline.audit.pending"
_INSERT = insert(AuditEvent)


def record(
    session: AsyncSession,
    workspace_id: int,
    actor: str,
    action: str,
    subject: str,
    *,
    environment: str | None = None,
    app: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an entry to the unit of work, so it commits with the change it describes.

    Entries are written together, in the order recorded, as the unit commits: one plain
    INSERT for all of them, where the ORM wrote each with RETURNING for an id nobody reads."""
    pending: list[dict[str, Any]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        if not event.contains(session.sync_session, "before_commit", _write_pending):
            event.listen(session.sync_session, "before_commit", _write_pending)
    pending.append(
        {
            "workspace_id": workspace_id,
            "at": utcnow(),
            "actor": actor,
            "action": action,
            "subject": subject,
            "environment": environment,
            "app": app,
            "detail": detail or {},
        }
    )


def _write_pending(session: Session) -> None:
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, None) or []
    if pending:
        session.connection().execute(_INSERT, pending)


async def events(
    session: AsyncSession,
    workspace_id: int,
    *,
    environment: str | None = None,
    app: str | None = None,
    limit: int = 200,
) -> Sequence[AuditEvent]:
    if session.info.get(_PENDING):  # recorded in this unit of work: read with the rest
        await session.run_sync(_write_pending)
    query = select(AuditEvent).where(AuditEvent.workspace_id == workspace_id)
    if environment is not None:
        query = query.where(AuditEvent.environment == environment)
    if app is not None:
        query = query.where(AuditEvent.app == app)
    result = await session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit))
    return list(reversed(result.all()))


async def last_id(session: AsyncSession, workspace_id: int) -> int:
    """The id of the workspace's newest entry, those this unit of work recorded included (0
    for an empty log)."""
    if session.info.get(_PENDING):
        await session.run_sync(_write_pending)
    found = await session.scalar(
        select(func.max(AuditEvent.id)).where(AuditEvent.workspace_id == workspace_id)
    )
    return int(found or 0)


async def entries_after(
    session: AsyncSession,
    workspace_id: int,
    after: int,
    *,
    environments: Collection[str],
    actions: Collection[str],
    limit: int,
) -> Sequence[AuditEvent]:
    """The entries after id `after` about these environments with these actions, oldest
    first (what notifications are made of)."""
    result = await session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.workspace_id == workspace_id,
            AuditEvent.id > after,
            AuditEvent.environment.in_(list(environments)),
            AuditEvent.action.in_(list(actions)),
        )
        .order_by(AuditEvent.id)
        .limit(limit)
    )
    return result.all()


async def entries_by_id(session: AsyncSession, ids: Collection[int]) -> dict[int, AuditEvent]:
    if not ids:
        return {}
    result = await session.scalars(select(AuditEvent).where(AuditEvent.id.in_(list(ids))))
    return {row.id: row for row in result.all()}
