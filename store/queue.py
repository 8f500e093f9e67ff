"""Queries for the deployment queue: one ticket per promotion or rollback run, per app and
environment, in state waiting, holding or done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.status import DeploymentKind, TicketState
from store.tables import DeploymentTicket, Promotion


def _open(app_id: Any, environment_id: Any) -> ColumnElement[bool]:
    """Not yet out of the queue, of an app and environment (bound parameters or subqueries)."""
    return and_(
        DeploymentTicket.app_id == app_id,
        DeploymentTicket.environment_id == environment_id,
        DeploymentTicket.state != TicketState.DONE,
    )


# Every promotion and rollback enters and leaves the queue: these statements are built once
# (see store/__init__.py).
_OPEN = _open(bindparam("app_id"), bindparam("environment_id"))
_OPEN_TICKETS = select(DeploymentTicket).where(_OPEN).order_by(DeploymentTicket.id)
_OF_RUN = and_(
    DeploymentTicket.workflow_id == bindparam("workflow_id"),
    DeploymentTicket.run_id == bindparam("run_id"),
)
_OPEN_AND_MINE = select(DeploymentTicket).where(or_(_OF_RUN, _OPEN)).order_by(DeploymentTicket.id)
_RUNS_TICKET = select(DeploymentTicket).where(_OF_RUN).subquery()
_MINE_AND_OTHERS = (
    select(DeploymentTicket)
    .where(
        or_(
            _OF_RUN,
            _open(
                select(_RUNS_TICKET.c.app_id).scalar_subquery(),
                select(_RUNS_TICKET.c.environment_id).scalar_subquery(),
            ),
        )
    )
    .order_by(DeploymentTicket.id)
)
_LOCK_QUEUE = select(func.pg_advisory_xact_lock(bindparam("app_id"), bindparam("environment_id")))


async def open_tickets(
    session: AsyncSession, app_id: int, environment_id: int
) -> Sequence[DeploymentTicket]:
    """The tickets of an app and environment that have not left the queue, oldest first."""
    result = await session.scalars(
        _OPEN_TICKETS, {"app_id": app_id, "environment_id": environment_id}
    )
    return result.all()


async def lock_queue(session: AsyncSession, app_id: int, environment_id: int) -> None:
    """Make the units of work that read and change one app and environment's queue take
    turns. PostgreSQL: a transaction-level advisory lock on the pair, released when the unit
    ends (without it, runs entering at once each read the queue empty and each held it).
    SQLite: its writers already take turns (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(_LOCK_QUEUE, {"app_id": app_id, "environment_id": environment_id})


async def tickets_and_mine(
    session: AsyncSession, app_id: int, environment_id: int, workflow_id: str, run_id: str
) -> tuple[list[DeploymentTicket], DeploymentTicket | None]:
    """In one query: the open tickets of an app and environment, oldest first, and the run's
    own ticket whatever its state (None: it has none yet)."""
    params = {
        "workflow_id": workflow_id,
        "run_id": run_id,
        "app_id": app_id,
        "environment_id": environment_id,
    }
    return _split(workflow_id, run_id, (await session.scalars(_OPEN_AND_MINE, params)).all())


async def mine_and_others(
    session: AsyncSession, workflow_id: str, run_id: str
) -> tuple[DeploymentTicket | None, list[DeploymentTicket]]:
    """In one query: a run's ticket (None: it has none) and the other open tickets of its app
    and environment, oldest first."""
    params = {"workflow_id": workflow_id, "run_id": run_id}
    rows = (await session.scalars(_MINE_AND_OTHERS, params)).all()
    tickets, mine = _split(workflow_id, run_id, rows)
    return mine, [t for t in tickets if t is not mine]


def _split(
    workflow_id: str, run_id: str, rows: Sequence[DeploymentTicket]
) -> tuple[list[DeploymentTicket], DeploymentTicket | None]:
    """The open tickets among `rows`, and the run's own (open or not)."""
    mine = next((t for t in rows if (t.workflow_id, t.run_id) == (workflow_id, run_id)), None)
    return [t for t in rows if t.state != TicketState.DONE], mine


def add_ticket(
    session: AsyncSession,
    app_id: int,
    environment_id: int,
    workflow_id: str,
    run_id: str,
    kind: str,
) -> DeploymentTicket:
    """A new waiting ticket, added to the unit of work (flush to give it its place)."""
    ticket = DeploymentTicket(
        app_id=app_id,
        environment_id=environment_id,
        workflow_id=workflow_id,
        run_id=run_id,
        kind=kind,
        state=TicketState.WAITING,
    )
    session.add(ticket)
    return ticket


async def waiting_rollback(
    session: AsyncSession, mine: Promotion, workflow_id: str
) -> DeploymentTicket | None:
    """The queue ticket of the rollback `workflow_id` of the same app and environment as
    `mine`, while it waits or holds."""
    return await session.scalar(
        select(DeploymentTicket).where(
            DeploymentTicket.workflow_id == workflow_id,
            DeploymentTicket.kind == DeploymentKind.ROLLBACK,
            DeploymentTicket.app_id == mine.app_id,
            DeploymentTicket.environment_id == mine.environment_id,
            DeploymentTicket.state != TicketState.DONE,
        )
    )
