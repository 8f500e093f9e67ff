"""Queries for the workspace, its environment chain and its apps."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.tables import (
    App,
    AppEnvironment,
    Deployment,
    Environment,
    FreezeWindow,
    Promotion,
    ReviewerGroup,
    Workspace,
)

# Built once: every promotion runs them (see store/__init__.py).
_APP_AND_ENVIRONMENT = (
    select(App, Environment)
    .join(Environment, Environment.workspace_id == App.workspace_id)
    .where(
        App.workspace_id == bindparam("workspace_id"),
        App.name == bindparam("app"),
        Environment.name == bindparam("environment"),
    )
)
_FREEZE_WINDOWS = (
    select(FreezeWindow)
    .where(FreezeWindow.environment_id == bindparam("environment_id"))
    .order_by(FreezeWindow.starts_at)
)
_CHAIN_OF_APP = (
    select(Environment)
    .join(AppEnvironment, AppEnvironment.environment_id == Environment.id)
    .where(AppEnvironment.app_id == bindparam("app_id"))
    .order_by(Environment.position)
)


async def get_or_create_workspace(session: AsyncSession, name: str) -> Workspace:
    found = await session.scalar(select(Workspace).where(Workspace.name == name))
    if found is not None:
        return found
    workspace = Workspace(name=name)
    session.add(workspace)
    await session.flush()
    return workspace


async def chain(session: AsyncSession, workspace_id: int) -> Sequence[Environment]:
    """The environments in promotion order."""
    result = await session.scalars(
        select(Environment)
        .where(Environment.workspace_id == workspace_id)
        .order_by(Environment.position)
    )
    return result.all()


async def find_environment(
    session: AsyncSession, workspace_id: int, name: str
) -> Environment | None:
    return await session.scalar(
        select(Environment).where(
            Environment.workspace_id == workspace_id, Environment.name == name
        )
    )


async def shift_positions(session: AsyncSession, workspace_id: int, start: int, by: int) -> None:
    """Move every environment at or after `start` by `by` places."""
    await session.execute(
        update(Environment)
        .where(Environment.workspace_id == workspace_id, Environment.position >= start)
        .values(position=Environment.position + by)
    )


async def next_position(session: AsyncSession, workspace_id: int) -> int:
    top = await session.scalar(
        select(func.max(Environment.position)).where(Environment.workspace_id == workspace_id)
    )
    return 0 if top is None else top + 1


async def apps(session: AsyncSession, workspace_id: int) -> Sequence[App]:
    result = await session.scalars(
        select(App).where(App.workspace_id == workspace_id).order_by(App.name)
    )
    return result.all()


async def find_app(session: AsyncSession, workspace_id: int, name: str) -> App | None:
    return await session.scalar(
        select(App).where(App.workspace_id == workspace_id, App.name == name)
    )


async def find_app_and_environment(
    session: AsyncSession, workspace_id: int, app: str, environment: str
) -> tuple[App, Environment] | None:
    """An app and an environment by name, in one query (None unless both exist)."""
    params = {"workspace_id": workspace_id, "app": app, "environment": environment}
    row = (await session.execute(_APP_AND_ENVIRONMENT, params)).one_or_none()
    return None if row is None else (row[0], row[1])


async def app_environment_names(session: AsyncSession, workspace_id: int) -> dict[int, list[str]]:
    """For each app id, the names of the environments it points to, in chain order."""
    rows = await session.execute(
        select(AppEnvironment.app_id, Environment.name)
        .join(Environment, Environment.id == AppEnvironment.environment_id)
        .where(Environment.workspace_id == workspace_id)
        .order_by(Environment.position)
    )
    names: dict[int, list[str]] = {}
    for app_id, env_name in rows:
        names.setdefault(app_id, []).append(env_name)
    return names


async def apps_pointing_to(session: AsyncSession, environment_id: int) -> list[str]:
    rows = await session.scalars(
        select(App.name)
        .join(AppEnvironment, AppEnvironment.app_id == App.id)
        .where(AppEnvironment.environment_id == environment_id)
        .order_by(App.name)
    )
    return list(rows)


async def find_group(session: AsyncSession, workspace_id: int, name: str) -> ReviewerGroup | None:
    return await session.scalar(
        select(ReviewerGroup).where(
            ReviewerGroup.workspace_id == workspace_id, ReviewerGroup.name == name
        )
    )


async def groups(session: AsyncSession, workspace_id: int) -> Sequence[ReviewerGroup]:
    result = await session.scalars(
        select(ReviewerGroup)
        .where(ReviewerGroup.workspace_id == workspace_id)
        .order_by(ReviewerGroup.name)
    )
    return result.all()


async def freeze_windows(session: AsyncSession, environment_id: int) -> Sequence[FreezeWindow]:
    result = await session.scalars(_FREEZE_WINDOWS, {"environment_id": environment_id})
    return result.all()


async def chain_of_app(session: AsyncSession, app_id: int) -> Sequence[Environment]:
    """The environments one app points to, in chain order."""
    return (await session.scalars(_CHAIN_OF_APP, {"app_id": app_id})).all()


async def environments_of_app(session: AsyncSession, app_id: int) -> list[str]:
    """The names of the environments one app points to, in chain order."""
    return [e.name for e in await chain_of_app(session, app_id)]


async def environments_listing_reviewer(
    session: AsyncSession, workspace_id: int, reviewer: str
) -> list[Environment]:
    """The environments whose reviewer list names `reviewer` (e.g. "@release-managers"),
    in chain order."""
    return [e for e in await chain(session, workspace_id) if reviewer in (e.reviewers or [])]


async def work_under_way(session: AsyncSession, app_id: int, environment_id: int) -> list[str]:
    """Workflow ids of promotions and deployments of an app into an environment that have not
    ended yet (awaiting approval, queued, deploying, rolling back)."""
    promotions = await session.scalars(
        select(Promotion.workflow_id).where(
            Promotion.app_id == app_id,
            Promotion.environment_id == environment_id,
            Promotion.finished_at.is_(None),
        )
    )
    deployments = await session.scalars(
        select(Deployment.workflow_id).where(
            Deployment.app_id == app_id,
            Deployment.environment_id == environment_id,
            Deployment.finished_at.is_(None),
        )
    )
    return list(dict.fromkeys([*promotions, *deployments]))


async def set_app_environments(
    session: AsyncSession, app_id: int, environment_ids: list[int]
) -> None:
    """Make an app point to exactly these environments."""
    current = set(
        await session.scalars(
            select(AppEnvironment.environment_id).where(AppEnvironment.app_id == app_id)
        )
    )
    wanted = set(environment_ids)
    if current - wanted:
        await session.execute(
            delete(AppEnvironment).where(
                AppEnvironment.app_id == app_id,
                AppEnvironment.environment_id.in_(current - wanted),
            )
        )
    for environment_id in sorted(wanted - current):
        session.add(AppEnvironment(app_id=app_id, environment_id=environment_id))
    await session.flush()
