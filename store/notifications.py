"""Queries for notification targets and their deliveries.

A delivery row is the claim on one (target, audit entry): it is inserted with ON CONFLICT DO
NOTHING, so of several workers that found the same entry exactly one gets a row back and
sends the message. A retry, or a claim whose worker died, is taken again by a compare-and-set
UPDATE on its attempt count: again one winner.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from store.tables import Environment, NotificationDelivery, NotificationTarget


async def find_target(
    session: AsyncSession, environment_id: int, name: str
) -> NotificationTarget | None:
    found: NotificationTarget | None = await session.scalar(
        select(NotificationTarget).where(
            NotificationTarget.environment_id == environment_id,
            NotificationTarget.name == name,
        )
    )
    return found


async def targets_of(session: AsyncSession, environment_id: int) -> Sequence[NotificationTarget]:
    result = await session.scalars(
        select(NotificationTarget)
        .where(NotificationTarget.environment_id == environment_id)
        .order_by(NotificationTarget.name)
    )
    return result.all()


async def targets_with_environments(
    session: AsyncSession, workspace_id: int, ids: Sequence[int] | None = None
) -> list[tuple[NotificationTarget, Environment]]:
    """Every target of the workspace (or those of `ids`), with its environment."""
    query = (
        select(NotificationTarget, Environment)
        .join(Environment, Environment.id == NotificationTarget.environment_id)
        .where(NotificationTarget.workspace_id == workspace_id)
        .order_by(NotificationTarget.id)
    )
    if ids is not None:
        query = query.where(NotificationTarget.id.in_(ids))
    result = await session.execute(query)
    return [(target, env) for target, env in result.all()]


async def delete_target(session: AsyncSession, target_id: int) -> None:
    """A target and its deliveries (explicitly: not every connection enforces the cascade)."""
    await session.execute(
        delete(NotificationDelivery).where(NotificationDelivery.target_id == target_id)
    )
    await session.execute(delete(NotificationTarget).where(NotificationTarget.id == target_id))


async def last_deliveries(
    session: AsyncSession, target_ids: Sequence[int]
) -> dict[int, NotificationDelivery]:
    """The newest delivery of each target (by its audit entry), where it has one."""
    if not target_ids:
        return {}
    newest = (
        select(func.max(NotificationDelivery.id))
        .where(NotificationDelivery.target_id.in_(target_ids))
        .group_by(NotificationDelivery.target_id)
    )
    result = await session.scalars(
        select(NotificationDelivery).where(NotificationDelivery.id.in_(newest))
    )
    return {row.target_id: row for row in result.all()}


async def claimed(
    session: AsyncSession, target_ids: Sequence[int], after: int
) -> set[tuple[int, int]]:
    """(target, audit entry) of the deliveries made for entries after `after`."""
    result = await session.execute(
        select(NotificationDelivery.target_id, NotificationDelivery.audit_event_id).where(
            NotificationDelivery.target_id.in_(target_ids),
            NotificationDelivery.audit_event_id > after,
        )
    )
    return {(target, entry) for target, entry in result.all()}


async def due(
    session: AsyncSession, target_ids: Sequence[int], now: datetime, limit: int
) -> Sequence[NotificationDelivery]:
    """Pending deliveries whose time has come: a retry, or a claim whose worker died."""
    result = await session.scalars(
        select(NotificationDelivery)
        .where(
            NotificationDelivery.status == "pending",
            NotificationDelivery.next_attempt_at <= now,
            NotificationDelivery.target_id.in_(target_ids),
        )
        .order_by(NotificationDelivery.audit_event_id)
        .limit(limit)
    )
    return result.all()


async def claim_new(
    session: AsyncSession,
    target_id: int,
    audit_event_id: int,
    event: str,
    now: datetime,
    lease_until: datetime,
) -> int | None:
    """Claim the first attempt at one entry for one target: the delivery's id, or None when
    another worker claimed it first."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(NotificationDelivery)
        .values(
            target_id=target_id,
            audit_event_id=audit_event_id,
            event=event,
            status="pending",
            attempts=1,
            next_attempt_at=lease_until,
            at=now,
        )
        .on_conflict_do_nothing(index_elements=["target_id", "audit_event_id"])
        .returning(NotificationDelivery.id)
    )
    found: int | None = await session.scalar(statement)
    return found


async def claim_again(
    session: AsyncSession, delivery_id: int, attempts: int, now: datetime, lease_until: datetime
) -> bool:
    """Claim the next attempt of a due delivery that had `attempts`: False when another
    worker took it first."""
    result = await session.execute(
        update(NotificationDelivery)
        .where(
            NotificationDelivery.id == delivery_id,
            NotificationDelivery.status == "pending",
            NotificationDelivery.attempts == attempts,
            NotificationDelivery.next_attempt_at <= now,
        )
        .values(attempts=attempts + 1, next_attempt_at=lease_until, at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def record_attempt(
    session: AsyncSession,
    delivery_id: int,
    attempt: int,
    *,
    status: str,
    http_status: int | None,
    error: str | None,
    next_attempt_at: datetime,
    now: datetime,
) -> bool:
    """How attempt number `attempt` went; False when it is no longer this attempt's (the
    target was removed, or its claim ran out and another worker took it)."""
    result = await session.execute(
        update(NotificationDelivery)
        .where(
            and_(
                NotificationDelivery.id == delivery_id,
                NotificationDelivery.attempts == attempt,
                NotificationDelivery.status == "pending",
            )
        )
        .values(
            status=status,
            http_status=http_status,
            last_error=error,
            next_attempt_at=next_attempt_at,
            at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def advance_cursors(session: AsyncSession, target_ids: Sequence[int], to: int) -> None:
    """Every entry up to `to` has been looked at for these targets."""
    await session.execute(
        update(NotificationTarget)
        .where(NotificationTarget.id.in_(target_ids), NotificationTarget.cursor < to)
        .values(cursor=to)
        .execution_options(synchronize_session=False)
    )
