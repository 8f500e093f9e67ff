"""Queries for reviewers' registered public keys."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.tables import ReviewerKey


async def keys(
    session: AsyncSession, workspace_id: int, reviewer: str | None = None
) -> Sequence[ReviewerKey]:
    """Registered keys, revoked ones included, oldest first; one reviewer's or everyone's."""
    query = select(ReviewerKey).where(ReviewerKey.workspace_id == workspace_id)
    if reviewer is not None:
        query = query.where(ReviewerKey.reviewer == reviewer)
    result = await session.scalars(query.order_by(ReviewerKey.reviewer, ReviewerKey.id))
    return result.all()


async def find_by_fingerprint(
    session: AsyncSession, workspace_id: int, fingerprint: str
) -> ReviewerKey | None:
    return await session.scalar(
        select(ReviewerKey).where(
            ReviewerKey.workspace_id == workspace_id, ReviewerKey.fingerprint == fingerprint
        )
    )


async def reviewers_with_active_keys(session: AsyncSession, workspace_id: int) -> set[str]:
    result = await session.scalars(
        select(ReviewerKey.reviewer).where(
            ReviewerKey.workspace_id == workspace_id, ReviewerKey.revoked_at.is_(None)
        )
    )
    return set(result.all())
