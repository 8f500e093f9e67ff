"""Queries for releases, deployments and the per-environment release pointer."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.pipeline import Pipeline, Reference
from store.tables import (
    App,
    CurrentRelease,
    Deployment,
    DeploymentTicket,
    Promotion,
    Release,
    StepRun,
    utcnow,
)


async def find_release(session: AsyncSession, app_id: int, version: str) -> Release | None:
    return await session.scalar(
        select(Release).where(Release.app_id == app_id, Release.version == version)
    )


async def releases(session: AsyncSession, app_id: int) -> Sequence[Release]:
    result = await session.scalars(
        select(Release).where(Release.app_id == app_id).order_by(Release.id)
    )
    return result.all()


async def app_has_releases(session: AsyncSession, app_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(Release.app_id == app_id))))


async def environment_has_history(session: AsyncSession, environment_id: int) -> bool:
    """Whether any deployment or promotion names this environment."""
    deployed = exists().where(Deployment.environment_id == environment_id)
    promoted = exists().where(Promotion.environment_id == environment_id)
    return bool(await session.scalar(select(or_(deployed, promoted))))


async def releases_using_tool(session: AsyncSession, workspace_id: int, tool: str) -> list[str]:
    """Releases (as app@version) whose pipeline names this tool; they would break without it."""
    rows = await session.execute(
        select(App.name, Release.version, Release.pipeline)
        .join(App, App.id == Release.app_id)
        .where(App.workspace_id == workspace_id)
    )
    return [
        f"{app}@{version}"
        for app, version, pipeline in rows
        if Reference(kind="tools", name=tool) in Pipeline.model_validate(pipeline).references()
    ]


async def current_release(
    session: AsyncSession, app_id: int, environment_id: int
) -> CurrentRelease | None:
    return await session.get(CurrentRelease, (app_id, environment_id))


async def set_current_release(
    session: AsyncSession, app_id: int, environment_id: int, release_id: int, deployment_id: int
) -> None:
    pointer = await session.get(CurrentRelease, (app_id, environment_id))
    if pointer is None:
        session.add(
            CurrentRelease(
                app_id=app_id,
                environment_id=environment_id,
                release_id=release_id,
                deployment_id=deployment_id,
            )
        )
    else:
        pointer.release_id = release_id
        pointer.deployment_id = deployment_id
        pointer.since = utcnow()
    await session.flush()


async def deployments_in(
    session: AsyncSession, app_id: int, environment_id: int
) -> Sequence[Deployment]:
    """Every deployment of an app in an environment, oldest first."""
    result = await session.scalars(
        select(Deployment)
        .where(Deployment.app_id == app_id, Deployment.environment_id == environment_id)
        .order_by(Deployment.id)
    )
    return result.all()


async def find_deployment_of_run(
    session: AsyncSession, workflow_id: str, run_id: str, kind: str
) -> Deployment | None:
    return await session.scalar(
        select(Deployment).where(
            Deployment.workflow_id == workflow_id,
            Deployment.run_id == run_id,
            Deployment.kind == kind,
        )
    )


async def find_promotion_of_run(
    session: AsyncSession, workflow_id: str, run_id: str
) -> Promotion | None:
    return await session.scalar(
        select(Promotion).where(Promotion.workflow_id == workflow_id, Promotion.run_id == run_id)
    )


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


async def waiting_rollback(
    session: AsyncSession, mine: Promotion, workflow_id: str
) -> DeploymentTicket | None:
    """The queue ticket of the rollback `workflow_id` of the same app and environment as
    `mine`, while it waits or holds."""
    return await session.scalar(
        select(DeploymentTicket).where(
            DeploymentTicket.workflow_id == workflow_id,
            DeploymentTicket.kind == "rollback",
            DeploymentTicket.app_id == mine.app_id,
            DeploymentTicket.environment_id == mine.environment_id,
            DeploymentTicket.state != "done",
        )
    )


async def step_runs(session: AsyncSession, deployment_id: int) -> Sequence[StepRun]:
    result = await session.scalars(
        select(StepRun).where(StepRun.deployment_id == deployment_id).order_by(StepRun.id)
    )
    return result.all()


async def release_by_id(session: AsyncSession, release_id: int) -> Release:
    release = await session.get(Release, release_id)
    assert release is not None, f"release {release_id} vanished; releases are never deleted"
    return release


async def promotions_in_progress(
    session: AsyncSession, app_id: int, environment_id: int
) -> Sequence[Promotion]:
    result = await session.scalars(
        select(Promotion)
        .where(
            Promotion.app_id == app_id,
            Promotion.environment_id == environment_id,
            Promotion.finished_at.is_(None),
        )
        .order_by(Promotion.id)
    )
    return result.all()
