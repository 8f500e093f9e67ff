"""Step runs: one row per attempt of a pipeline step in a deployment."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.tables import StepRun

# Every step of every deployment writes one: a Core INSERT built once costs half what the
# ORM's flush of a new object does (see store/__init__.py).
_ADD = insert(cast(Table, StepRun.__table__))


async def add_step_run(
    session: AsyncSession,
    deployment_id: int,
    *,
    section: str,
    position: int,
    name: str,
    kind: str,
    attempt: int,
    status: str,
    exit_code: int | None,
    output: str | None,
    started_at: datetime,
    finished_at: datetime,
) -> None:
    await session.execute(
        _ADD,
        {
            "deployment_id": deployment_id,
            "section": section,
            "position": position,
            "name": name,
            "kind": kind,
            "attempt": attempt,
            "status": status,
            "exit_code": exit_code,
            "output": output,
            "started_at": started_at,
            "finished_at": finished_at,
        },
    )
