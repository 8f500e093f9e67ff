"""Queries for promotion records: one per promotion workflow run."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.tables import App, Environment, Promotion, Release

_RUN = and_(
    Promotion.workflow_id == bindparam("workflow_id"), Promotion.run_id == bindparam("run_id")
)
_OF_RUN = select(Promotion).where(_RUN)

_UNFINISHED_HERE = and_(
    Promotion.app_id == bindparam("app_id"),
    Promotion.environment_id == bindparam("environment_id"),
    Promotion.finished_at.is_(None),
)
_IN_PROGRESS_AND_MINE = select(Promotion).where(or_(_UNFINISHED_HERE, _RUN)).order_by(Promotion.id)


async def find_promotion_of_run(
    session: AsyncSession, workflow_id: str, run_id: str
) -> Promotion | None:
    return await session.scalar(_OF_RUN, {"workflow_id": workflow_id, "run_id": run_id})


async def later_promotion(
    session: AsyncSession, mine: Promotion, workflow_id: str
) -> Promotion | None:
    """A promotion recorded after `mine`, of the same app into the same environment, by the
    workflow `workflow_id`."""
    return await session.scalar(
        select(Promotion).where(
            Promotion.workflow_id == workflow_id,
            Promotion.app_id == mine.app_id,
            Promotion.environment_id == mine.environment_id,
            Promotion.id > mine.id,
        )
    )


async def in_progress_and_mine(
    session: AsyncSession, app_id: int, environment_id: int, workflow_id: str, run_id: str
) -> tuple[list[Promotion], Promotion | None]:
    """In one query: the promotions of an app into an environment that are under way, oldest
    first, and the run's own record whatever its state (None: it has none yet)."""
    params = {
        "app_id": app_id,
        "environment_id": environment_id,
        "workflow_id": workflow_id,
        "run_id": run_id,
    }
    rows = (await session.scalars(_IN_PROGRESS_AND_MINE, params)).all()
    mine = next((p for p in rows if (p.workflow_id, p.run_id) == (workflow_id, run_id)), None)
    here = (app_id, environment_id)
    return [p for p in rows if p.finished_at is None and (p.app_id, p.environment_id) == here], mine


async def unfinished(
    session: AsyncSession,
    workspace_id: int,
    app_ids: Sequence[int],
    environment_ids: Sequence[int],
) -> list[tuple[Promotion, str, str, str]]:
    """Promotions not finished yet of these apps into these environments, oldest first, each
    with its app name, version and environment name."""
    rows = await session.execute(
        select(Promotion, App.name, Release.version, Environment.name)
        .join(App, App.id == Promotion.app_id)
        .join(Release, Release.id == Promotion.release_id)
        .join(Environment, Environment.id == Promotion.environment_id)
        .where(
            App.workspace_id == workspace_id,
            Promotion.finished_at.is_(None),
            App.id.in_(list(app_ids)),
            Environment.id.in_(list(environment_ids)),
        )
        .order_by(Promotion.id)
    )
    return [(p, app, version, env) for p, app, version, env in rows]
