"""Queries for app data in namespaces. Every function takes the environment the caller acts
in and derives the namespace itself: there is no way to name another environment's
namespace, so no code path can read another environment's data."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.tables import App, DataRecord, DataSharing, Environment, utcnow

SHARED = "shared"
_SHARED_KINDS = select(DataSharing.kind).where(DataSharing.app_id == bindparam("app_id"))


def namespace_of(environment: str, app: str, *, shared: bool) -> str:
    """The one namespace formula: `<env>/<app>`, or `shared/<app>` when the app shares this
    kind of data across its environments."""
    return f"{SHARED}/{app}" if shared else f"{environment}/{app}"


def is_shared_namespace(namespace: str) -> bool:
    return namespace.startswith(f"{SHARED}/")


async def is_shared(session: AsyncSession, app: App, kind: str) -> bool:
    return await session.get(DataSharing, (app.id, kind)) is not None


async def namespaces(
    session: AsyncSession, environment: Environment, app: App, kinds: Sequence[str]
) -> dict[str, str]:
    """The namespace of each kind, in one query."""
    shared = set(await session.scalars(_SHARED_KINDS, {"app_id": app.id}))
    return {kind: namespace_of(environment.name, app.name, shared=kind in shared) for kind in kinds}


async def namespace(session: AsyncSession, environment: Environment, app: App, kind: str) -> str:
    """`<env>/<app>`, or `shared/<app>` when the app shares this kind of data."""
    return namespace_of(environment.name, app.name, shared=await is_shared(session, app, kind))


async def put(
    session: AsyncSession,
    environment: Environment,
    app: App,
    kind: str,
    key: str,
    value: str,
    actor: str,
) -> str:
    ns = await namespace(session, environment, app, kind)
    shared = is_shared_namespace(ns)
    record = await session.scalar(
        select(DataRecord).where(
            DataRecord.workspace_id == app.workspace_id,
            DataRecord.namespace == ns,
            DataRecord.kind == kind,
            DataRecord.key == key,
        )
    )
    if record is None:
        session.add(
            DataRecord(
                workspace_id=app.workspace_id,
                app_id=app.id,
                environment_id=None if shared else environment.id,
                namespace=ns,
                kind=kind,
                key=key,
                value=value,
                updated_by=actor,
            )
        )
    else:
        record.value, record.updated_by, record.updated_at = value, actor, utcnow()
    return ns


async def records(
    session: AsyncSession, environment: Environment, app: App, kind: str, key: str | None = None
) -> Sequence[DataRecord]:
    ns = await namespace(session, environment, app, kind)
    query = select(DataRecord).where(
        DataRecord.workspace_id == app.workspace_id,
        DataRecord.namespace == ns,
        DataRecord.kind == kind,
    )
    if key is not None:
        query = query.where(DataRecord.key == key)
    result = await session.scalars(query.order_by(DataRecord.key))
    return result.all()


async def remove(
    session: AsyncSession, environment: Environment, app: App, kind: str, key: str
) -> int:
    ns = await namespace(session, environment, app, kind)
    result = await session.execute(
        delete(DataRecord).where(
            DataRecord.workspace_id == app.workspace_id,
            DataRecord.namespace == ns,
            DataRecord.kind == kind,
            DataRecord.key == key,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def set_sharing(session: AsyncSession, app: App, kind: str, shared: bool) -> None:
    current = await session.get(DataSharing, (app.id, kind))
    if shared and current is None:
        session.add(DataSharing(app_id=app.id, kind=kind))
    elif not shared and current is not None:
        await session.delete(current)
