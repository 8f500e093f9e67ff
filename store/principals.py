"""Queries for principals (people and CI jobs), their role grants and their tokens."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.tables import AccessToken, Principal, RoleGrant

_BY_NAME = select(Principal).where(
    Principal.workspace_id == bindparam("workspace_id"), Principal.name == bindparam("name")
)
# A token with its principal, by the token's hash.
_BY_TOKEN = (
    select(AccessToken, Principal)
    .join(Principal, Principal.id == AccessToken.principal_id)
    .where(AccessToken.token_hash == bindparam("token_hash"))
)


async def find_principal(session: AsyncSession, workspace_id: int, name: str) -> Principal | None:
    return await session.scalar(_BY_NAME, {"workspace_id": workspace_id, "name": name})


async def principals(
    session: AsyncSession, workspace_id: int, kind: str | None = None
) -> Sequence[Principal]:
    query = select(Principal).where(Principal.workspace_id == workspace_id)
    if kind is not None:
        query = query.where(Principal.kind == kind)
    return (await session.scalars(query.order_by(Principal.name))).all()


async def grants_of(session: AsyncSession, principal_ids: list[int]) -> Sequence[RoleGrant]:
    query = select(RoleGrant).where(RoleGrant.principal_id.in_(principal_ids))
    return (await session.scalars(query.order_by(RoleGrant.id))).all()


async def tokens_of(
    session: AsyncSession, principal_ids: list[int], kind: str | None = None
) -> Sequence[AccessToken]:
    query = select(AccessToken).where(AccessToken.principal_id.in_(principal_ids))
    if kind is not None:
        query = query.where(AccessToken.kind == kind)
    return (await session.scalars(query.order_by(AccessToken.id))).all()


async def token_and_principal(
    session: AsyncSession, token_hash: str
) -> tuple[AccessToken, Principal] | None:
    row = (await session.execute(_BY_TOKEN, {"token_hash": token_hash})).one_or_none()
    return None if row is None else (row[0], row[1])
