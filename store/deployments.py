"""Queries for deployments: each time a release was put into an environment (by a promotion,
a rollback or a compensation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import Select, and_, bindparam, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.status import DeploymentKind
from store.tables import App, Base, Deployment, Environment, Promotion, Release


async def get_deployment(session: AsyncSession, deployment_id: int) -> Deployment | None:
    return await session.get(Deployment, deployment_id)


Subject = TypeVar("Subject", Deployment, Promotion)


def _with_subjects(table: type[Deployment | Promotion]) -> Select[Base, App, Environment, Release]:
    return (
        select(table, App, Environment, Release)
        .join(App, App.id == table.app_id)
        .join(Environment, Environment.id == table.environment_id)
        .join(Release, Release.id == table.release_id)
        .where(table.id == bindparam("row_id"))
    )


_WITH_SUBJECTS = {table: _with_subjects(table) for table in (Deployment, Promotion)}
# A promotion record with its subjects and the deployment its run began, if any (a retried
# begin finds it): one query where `begin_deployment` ran two.
_PROMOTION_AND_BEGUN = (
    _with_subjects(Promotion)
    .add_columns(Deployment)
    .outerjoin(
        Deployment,
        and_(
            Deployment.workflow_id == bindparam("workflow_id"),
            Deployment.run_id == bindparam("run_id"),
            Deployment.kind == DeploymentKind.PROMOTION,
        ),
    )
)
_OF_RUN = select(Deployment).where(
    Deployment.workflow_id == bindparam("workflow_id"),
    Deployment.run_id == bindparam("run_id"),
    Deployment.kind == bindparam("kind"),
)


async def with_subjects(
    session: AsyncSession, table: type[Subject], row_id: int
) -> tuple[Subject, App, Environment, Release] | None:
    """A deployment or a promotion record with the app, environment and release it names, in
    one query (a step, a deployment's end and a promotion's outcome need all four)."""
    row = (await session.execute(_WITH_SUBJECTS[table], {"row_id": row_id})).one_or_none()
    return None if row is None else (cast(Subject, row[0]), row[1], row[2], row[3])


async def promotion_and_begun(
    session: AsyncSession, record_id: int, workflow_id: str, run_id: str
) -> tuple[Promotion, App, Environment, Release, Deployment | None] | None:
    """A promotion record with its app, environment and release, and the promotion
    deployment the run (workflow_id, run_id) began (None: not yet)."""
    params = {"row_id": record_id, "workflow_id": workflow_id, "run_id": run_id}
    row = (await session.execute(_PROMOTION_AND_BEGUN, params)).one_or_none()
    if row is None:
        return None
    return cast(Promotion, row[0]), row[1], row[2], row[3], row[4]


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


class DeploymentState(NamedTuple):
    """A deployment as a rollback's choice reads it: what it put in place, from what, and
    how it ended (plain columns: a long history costs no ORM objects)."""

    id: int
    kind: str
    status: str
    release_id: int
    previous_release_id: int | None
    restores_deployment_id: int | None
    config: dict[str, Any]  # the configuration versions it ran with


_STATES = (
    select(
        Deployment.id,
        Deployment.kind,
        Deployment.status,
        Deployment.release_id,
        Deployment.previous_release_id,
        Deployment.restores_deployment_id,
        Deployment.config,
    )
    .where(
        Deployment.app_id == bindparam("app_id"),
        Deployment.environment_id == bindparam("environment_id"),
    )
    .order_by(Deployment.id)
)


async def deployment_states(
    session: AsyncSession, app_id: int, environment_id: int
) -> list[DeploymentState]:
    """Every deployment of an app in an environment, oldest first, as DeploymentState."""
    params = {"app_id": app_id, "environment_id": environment_id}
    return [DeploymentState(*row) for row in await session.execute(_STATES, params)]


async def find_deployment_of_run(
    session: AsyncSession, workflow_id: str, run_id: str, kind: str
) -> Deployment | None:
    params = {"workflow_id": workflow_id, "run_id": run_id, "kind": kind}
    return await session.scalar(_OF_RUN, params)


async def environment_has_history(session: AsyncSession, environment_id: int) -> bool:
    """Whether any deployment or promotion names this environment."""
    deployed = exists().where(Deployment.environment_id == environment_id)
    promoted = exists().where(Promotion.environment_id == environment_id)
    return bool(await session.scalar(select(or_(deployed, promoted))))
