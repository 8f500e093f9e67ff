"""Step runs: one row per attempt of a pipeline step in a deployment."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from store.tables import StepRun


def add_step_run(
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
) -> StepRun:
    run = StepRun(
        deployment_id=deployment_id,
        section=section,
        position=position,
        name=name,
        kind=kind,
        attempt=attempt,
        status=status,
        exit_code=exit_code,
        output=output,
        started_at=started_at,
        finished_at=finished_at,
    )
    session.add(run)
    return run
