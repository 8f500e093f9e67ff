"""Queries for versioned configuration: variables, secrets, tools and their profiles.

Rows are never updated: setting a value adds a version, and so does deleting one (a
tombstone, `deleted`). "Current" means the highest version of each (scope, key) pair, unless
that version is a tombstone: then the key is absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from store.tables import Secret, Tool, ToolProfile, Variable

ENV_SCOPE = "env"
Versioned = TypeVar("Versioned", Variable, Secret)
_Row = TypeVar("_Row", Variable, Secret, ToolProfile)


def scope_of(app_id: int | None) -> str:
    return ENV_SCOPE if app_id is None else f"app:{app_id}"


def scopes_for(app_id: int | None) -> list[str]:
    """The scopes visible to an app in an environment: its own, then the environment's."""
    return [ENV_SCOPE] if app_id is None else [ENV_SCOPE, scope_of(app_id)]


def _newest_of_each(
    table: type[_Row],
    identity: Sequence[InstrumentedAttribute[Any]],
    *where: ColumnElement[bool],
) -> Select[_Row]:
    """The rows matching `where` that are the highest version of their kind among them:
    `identity` names the columns that make rows versions of one thing (scope and key, say).

    `where` filters both sides of the join: the newest is chosen among the matching rows,
    and only they can join it (a row of another environment may share scope, key and
    version). Tombstones are included: the caller decides whether a deleted key counts.
    """
    latest = (
        select(*identity, func.max(table.version).label("version"))
        .where(*where)
        .group_by(*identity)
        .subquery()
    )
    same = [column == latest.c[column.key] for column in identity]
    return select(table).join(latest, and_(*same, table.version == latest.c.version)).where(*where)


async def current(
    session: AsyncSession,
    table: type[Versioned],
    environment_id: int,
    scopes: list[str],
    keys: Sequence[str] | None = None,
    *,
    with_tombstones: bool = False,
) -> Sequence[Versioned]:
    """The current version of every key in the given scopes (optionally only some keys).

    A key whose newest version is a tombstone is left out, unless `with_tombstones`.
    """
    where = [table.environment_id == environment_id, table.scope.in_(scopes)]
    if keys is not None:
        where.append(table.key.in_(keys))
    query = _newest_of_each(table, [table.scope, table.key], *where).order_by(
        table.key, table.scope
    )
    if not with_tombstones:
        query = query.where(table.deleted.is_(False))
    result = await session.scalars(query)
    return result.all()


async def newest(
    session: AsyncSession, table: type[Versioned], environment_id: int, scope: str, key: str
) -> Versioned | None:
    """The highest version of one key in one scope, tombstone or not."""
    return await session.scalar(
        select(table)
        .where(table.environment_id == environment_id, table.scope == scope, table.key == key)
        .order_by(table.version.desc())
        .limit(1)
    )


async def current_in_every_scope(
    session: AsyncSession, table: type[Versioned], environment_id: int, key: str
) -> Sequence[Versioned]:
    """The current (not deleted) rows of one key in every scope of an environment."""
    scopes = (
        select(table.scope)
        .where(table.environment_id == environment_id, table.key == key)
        .distinct()
    )
    return await current(session, table, environment_id, list(await session.scalars(scopes)), [key])


async def case_twins(
    session: AsyncSession,
    table: type[Versioned],
    environment_id: int,
    scopes: list[str] | None,
    key: str,
) -> Sequence[Versioned]:
    """Current (not deleted) keys that differ from `key` only by case, in `scopes` (None:
    every scope of the environment)."""
    where = [
        table.environment_id == environment_id,
        func.lower(table.key) == key.lower(),
        table.key != key,
    ]
    if scopes is not None:
        where.append(table.scope.in_(scopes))
    result = await session.scalars(
        _newest_of_each(table, [table.scope, table.key], *where)
        .where(table.deleted.is_(False))
        .order_by(table.id)  # the earliest first: the spelling people saw first
    )
    return result.all()


async def current_certificates(
    session: AsyncSession, environment_ids: Sequence[int]
) -> Sequence[Secret]:
    """The current certificate secrets with an expiry on record, in every scope of these
    environments, soonest to expire first."""
    if not environment_ids:
        return []
    result = await session.scalars(
        _newest_of_each(
            Secret,
            [Secret.environment_id, Secret.scope, Secret.key],
            Secret.environment_id.in_(environment_ids),
        )
        .where(Secret.deleted.is_(False), Secret.expires_at.is_not(None))
        .order_by(Secret.expires_at, Secret.key)
    )
    return result.all()


async def latest_version(
    session: AsyncSession, table: type[Versioned], environment_id: int, scope: str, key: str
) -> int:
    top = await session.scalar(
        select(func.max(table.version)).where(
            table.environment_id == environment_id, table.scope == scope, table.key == key
        )
    )
    return top or 0


async def tools(session: AsyncSession, workspace_id: int) -> Sequence[Tool]:
    result = await session.scalars(
        select(Tool).where(Tool.workspace_id == workspace_id).order_by(Tool.name)
    )
    return result.all()


async def find_tool(session: AsyncSession, workspace_id: int, name: str) -> Tool | None:
    return await session.scalar(
        select(Tool).where(Tool.workspace_id == workspace_id, Tool.name == name)
    )


async def current_profiles(
    session: AsyncSession, environment_id: int, scopes: list[str]
) -> Sequence[ToolProfile]:
    result = await session.scalars(
        _newest_of_each(
            ToolProfile,
            [ToolProfile.tool_id, ToolProfile.scope],
            ToolProfile.environment_id == environment_id,
            ToolProfile.scope.in_(scopes),
        )
    )
    return result.all()


async def profile_version(
    session: AsyncSession, tool_id: int, environment_id: int, scope: str
) -> int:
    top = await session.scalar(
        select(func.max(ToolProfile.version)).where(
            ToolProfile.tool_id == tool_id,
            ToolProfile.environment_id == environment_id,
            ToolProfile.scope == scope,
        )
    )
    return top or 0


async def environments_with_profiles(session: AsyncSession, tool_id: int) -> list[int]:
    rows = await session.scalars(
        select(ToolProfile.environment_id).where(ToolProfile.tool_id == tool_id).distinct()
    )
    return list(rows)


async def profiles_of(session: AsyncSession, tool_id: int) -> Sequence[ToolProfile]:
    result = await session.scalars(select(ToolProfile).where(ToolProfile.tool_id == tool_id))
    return result.all()


async def exact_versions(
    session: AsyncSession,
    table: type[Versioned],
    environment_id: int,
    wanted: dict[str, tuple[str, int]],
) -> Sequence[Versioned]:
    """Rows at given (scope, version) per key: what a deployment ran with, for rollbacks."""
    if not wanted:
        return []
    match = or_(
        *(
            and_(table.key == key, table.scope == scope, table.version == version)
            for key, (scope, version) in wanted.items()
        )
    )
    result = await session.scalars(
        select(table).where(table.environment_id == environment_id, match, table.deleted.is_(False))
    )
    return result.all()


async def exact_profiles(
    session: AsyncSession, environment_id: int, wanted: dict[int, tuple[str, int]]
) -> Sequence[ToolProfile]:
    if not wanted:
        return []
    match = or_(
        *(
            and_(
                ToolProfile.tool_id == tool_id,
                ToolProfile.scope == scope,
                ToolProfile.version == version,
            )
            for tool_id, (scope, version) in wanted.items()
        )
    )
    result = await session.scalars(
        select(ToolProfile).where(ToolProfile.environment_id == environment_id, match)
    )
    return result.all()
