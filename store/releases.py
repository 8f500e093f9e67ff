"""Queries for releases: immutable snapshots of an app version and its pipeline."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from models.pipeline import Pipeline, Reference
from store.tables import App, Release

_BY_VERSION = select(Release).where(
    Release.app_id == bindparam("app_id"), Release.version == bindparam("version")
)


async def find_release(session: AsyncSession, app_id: int, version: str) -> Release | None:
    return await session.scalar(_BY_VERSION, {"app_id": app_id, "version": version})


async def releases(session: AsyncSession, app_id: int) -> Sequence[Release]:
    result = await session.scalars(
        select(Release).where(Release.app_id == app_id).order_by(Release.id)
    )
    return result.all()


async def app_has_releases(session: AsyncSession, app_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(Release.app_id == app_id))))


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


async def release_by_id(session: AsyncSession, release_id: int) -> Release:
    release = await session.get(Release, release_id)
    assert release is not None, f"release {release_id} vanished; releases are never deleted"
    return release


_BY_IDS = select(Release).where(Release.id.in_(bindparam("ids", expanding=True)))


async def releases_by_id(session: AsyncSession, ids: list[int]) -> dict[int, Release]:
    """Releases by id: those this session holds already, the others in one query."""
    found: dict[int, Release] = {}
    for release_id in ids:
        held = session.identity_map.get(identity_key(Release, release_id))
        if isinstance(held, Release):
            found[release_id] = held
    missing = [i for i in ids if i not in found]
    if missing:
        found |= {r.id: r for r in await session.scalars(_BY_IDS, {"ids": missing})}
    absent = [i for i in ids if i not in found]
    assert not absent, f"releases {absent} vanished; releases are never deleted"
    return found
