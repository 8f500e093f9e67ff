"""The append-only audit log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.tables import AuditEvent


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
    """Add an entry to the unit of work, so it commits with the change it describes."""
    session.add(
        AuditEvent(
            workspace_id=workspace_id,
            actor=actor,
            action=action,
            subject=subject,
            environment=environment,
            app=app,
            detail=detail or {},
        )
    )


async def events(
    session: AsyncSession,
    workspace_id: int,
    *,
    environment: str | None = None,
    app: str | None = None,
    limit: int = 200,
) -> Sequence[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.workspace_id == workspace_id)
    if environment is not None:
        query = query.where(AuditEvent.environment == environment)
    if app is not None:
        query = query.where(AuditEvent.app == app)
    result = await session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit))
    return list(reversed(result.all()))
