"""Queries for the per-environment release pointer: which release (and which deployment of
it) is current for an app in an environment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, Table, bindparam, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from store.tables import App, CurrentRelease, Deployment, Release, utcnow


async def current_release(
    session: AsyncSession, app_id: int, environment_id: int
) -> CurrentRelease | None:
    return await session.get(CurrentRelease, (app_id, environment_id))


# Built once (see store/__init__.py). A Core UPDATE of the table: the ORM's bulk UPDATE
# with synchronize_session cost more CPU than the rest of a deployment's end (about 1 ms),
# and cannot evaluate bound parameters; a pointer loaded in the session is kept in step below.
_POINTERS = cast(Table, CurrentRelease.__table__)
_MOVE = (
    update(_POINTERS)
    .where(
        _POINTERS.c.app_id == bindparam("key_app_id"),
        _POINTERS.c.environment_id == bindparam("key_environment_id"),
    )
    .values(
        release_id=bindparam("release_id"),
        deployment_id=bindparam("deployment_id"),
        since=bindparam("since"),
    )
)


async def set_current_release(
    session: AsyncSession, app_id: int, environment_id: int, release_id: int, deployment_id: int
) -> None:
    """Move the pointer (one UPDATE; the first release of an app in an environment adds it)."""
    moved = {"release_id": release_id, "deployment_id": deployment_id, "since": utcnow()}
    key = {"key_app_id": app_id, "key_environment_id": environment_id}
    done = await session.execute(_MOVE, {**key, **moved})
    if cast(CursorResult[Any], done).rowcount == 0:
        session.add(CurrentRelease(app_id=app_id, environment_id=environment_id, **moved))
        await session.flush()
        return
    loaded = session.identity_map.get(identity_key(CurrentRelease, (app_id, environment_id)))
    if loaded is not None:  # what the UPDATE wrote, without reading it back
        for name, value in moved.items():
            set_committed_value(loaded, name, value)


class Pointed(NamedTuple):
    """What a status cell shows of an environment's current release."""

    since: datetime
    deployment_id: int
    version: str
    deployed_by: str
    kind: str
    pipeline: dict[str, Any] | None


async def current_releases(
    session: AsyncSession, workspace_id: int, environment_ids: Sequence[int], *, pipelines: bool
) -> dict[tuple[int, int], Pointed]:
    """For each (app id, environment id) with a current release in these environments: since
    when, its deployment, the version, who deployed it, how (the deployment kind), and the
    release's stored pipeline when `pipelines` (else None: decoding every pipeline is not
    free). Plain rows, not ORM objects: the matrix reads thousands of them, and building an
    object per row cost more than the query and woke the garbage collector."""
    rows = await session.execute(
        select(
            CurrentRelease.app_id,
            CurrentRelease.environment_id,
            CurrentRelease.since,
            CurrentRelease.deployment_id,
            Release.version,
            Deployment.requested_by,
            Deployment.kind,
            Release.pipeline if pipelines else literal(None),
        )
        .join(Release, Release.id == CurrentRelease.release_id)
        .join(Deployment, Deployment.id == CurrentRelease.deployment_id)
        .join(App, App.id == CurrentRelease.app_id)
        .where(
            App.workspace_id == workspace_id,
            CurrentRelease.environment_id.in_(list(environment_ids)),
        )
    )
    return {(row[0], row[1]): Pointed(*row[2:]) for row in rows}
