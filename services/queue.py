"""One deployment at a time per app and environment: a first-come, first-served queue.

A promotion or rollback takes a ticket; the earliest ticket holds the environment until it
leaves. A holder whose workflow no longer runs (terminated, timed out) is skipped, so a
crash never blocks an environment for good.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import select

from models.promotion import LockState, WorkflowRef
from services.base import Service
from store.tables import DeploymentTicket, utcnow

IsRunning = Callable[[str, str], Awaitable[bool]]


class QueueService(Service):
    async def enter(
        self, app: str, environment: str, run: WorkflowRef, kind: str, is_running: IsRunning
    ) -> LockState:
        async with self.db.write() as session:
            app_row = await self.app(session, app)
            env = await self.environment(session, environment)
            tickets = list(
                await session.scalars(
                    select(DeploymentTicket)
                    .where(
                        DeploymentTicket.app_id == app_row.id,
                        DeploymentTicket.environment_id == env.id,
                        DeploymentTicket.state != "done",
                    )
                    .order_by(DeploymentTicket.id)
                )
            )
            mine = await session.scalar(
                select(DeploymentTicket).where(
                    DeploymentTicket.workflow_id == run.workflow_id,
                    DeploymentTicket.run_id == run.run_id,
                )
            )
            if mine is not None and mine.state == "done":
                # Asked again after leaving: the workflow task that left was retried and is
                # running again (local activities re-run then). Take the same place again.
                mine.state = "waiting"
                tickets.append(mine)
                tickets.sort(key=lambda t: t.id)
            if mine is None:
                mine = DeploymentTicket(
                    app_id=app_row.id,
                    environment_id=env.id,
                    workflow_id=run.workflow_id,
                    run_id=run.run_id,
                    kind=kind,
                    state="waiting",
                )
                session.add(mine)
                await session.flush()
                tickets.append(mine)
            # The holder first; then rollbacks, which go ahead of waiting promotions (an
            # environment in trouble is put right before anything new lands); then by arrival.
            ordered = sorted(
                tickets, key=lambda t: (t.state != "holding", t.kind != "rollback", t.id)
            )
            for ticket in ordered:
                if ticket is mine:
                    break
                if not await is_running(ticket.workflow_id, ticket.run_id):
                    ticket.state, ticket.updated_at = "done", utcnow()  # gone: skip it
                    continue
                preempt = (
                    WorkflowRef(workflow_id=ticket.workflow_id, run_id=ticket.run_id)
                    if kind == "rollback"
                    and ticket.kind == "promotion"
                    and ticket.state == "holding"
                    else None
                )
                return LockState(acquired=False, holder=ticket.workflow_id, preempt=preempt)
            mine.state, mine.updated_at = "holding", utcnow()
            return LockState(acquired=True)

    async def leave(self, run: WorkflowRef) -> WorkflowRef | None:
        """Give up the ticket; returns the next waiting run, to be woken up."""
        async with self.db.write() as session:
            mine = await session.scalar(
                select(DeploymentTicket).where(
                    DeploymentTicket.workflow_id == run.workflow_id,
                    DeploymentTicket.run_id == run.run_id,
                )
            )
            if mine is None:
                return None
            if mine.state != "done":
                mine.state, mine.updated_at = "done", utcnow()
            waiting = list(
                await session.scalars(
                    select(DeploymentTicket).where(
                        DeploymentTicket.app_id == mine.app_id,
                        DeploymentTicket.environment_id == mine.environment_id,
                        DeploymentTicket.state != "done",
                    )
                )
            )
            if not waiting:
                return None
            following = min(waiting, key=lambda t: (t.kind != "rollback", t.id))
            return WorkflowRef(workflow_id=following.workflow_id, run_id=following.run_id)
