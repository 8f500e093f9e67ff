"""One deployment at a time per app and environment: a first-come, first-served queue.

A promotion or rollback takes a ticket; the earliest ticket holds the environment until it
leaves. A holder whose workflow no longer runs (terminated, timed out) is skipped, so a
crash never blocks an environment for good.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from models.promotion import LockState, WorkflowRef
from models.status import DeploymentKind, TicketState
from services.base import Service
from store import queue as queue_repo
from store.tables import DeploymentTicket, utcnow

IsRunning = Callable[[str, str], Awaitable[bool]]


def _turn_order(ticket: DeploymentTicket) -> tuple[bool, bool, int]:
    """The holder first; then rollbacks, which go ahead of waiting promotions (an environment
    in trouble is put right before anything new lands); then by arrival."""
    return (
        ticket.state != TicketState.HOLDING,
        ticket.kind != DeploymentKind.ROLLBACK,
        ticket.id,
    )


class QueueService(Service):
    # The ticket `enter` added to an empty queue in this unit of work, with its run: it holds
    # the queue (locked) until the unit ends, so nobody can be waiting behind it yet.
    _alone: tuple[WorkflowRef, DeploymentTicket] | None = None

    async def enter(
        self, app: str, environment: str, run: WorkflowRef, kind: str, is_running: IsRunning
    ) -> LockState:
        session = self.session
        app_row, env = await self.app_and_environment(app, environment)
        await queue_repo.lock_queue(session, app_row.id, env.id)
        tickets, mine = await queue_repo.tickets_and_mine(
            session, app_row.id, env.id, run.workflow_id, run.run_id
        )
        if mine is not None and mine.state == TicketState.DONE:
            # Asked again after leaving: the workflow task that left was retried and is
            # running again (local activities re-run then). Take the same place again.
            mine.state = TicketState.WAITING
            tickets.append(mine)
            tickets.sort(key=lambda t: t.id)
        if mine is None:
            mine = queue_repo.add_ticket(
                session, app_row.id, env.id, run.workflow_id, run.run_id, kind
            )
            if not tickets:  # nobody else in the queue: it holds from the start
                mine.state = TicketState.HOLDING
                self._alone = (run, mine)
                return LockState(acquired=True)
            await session.flush()
            tickets.append(mine)
        for ticket in sorted(tickets, key=_turn_order):
            if ticket is mine:
                break
            if not await is_running(ticket.workflow_id, ticket.run_id):
                ticket.state, ticket.updated_at = TicketState.DONE, utcnow()  # gone: skip it
                continue
            preempt = (
                WorkflowRef(workflow_id=ticket.workflow_id, run_id=ticket.run_id)
                if kind == DeploymentKind.ROLLBACK
                and ticket.kind == DeploymentKind.PROMOTION
                and ticket.state == TicketState.HOLDING
                else None
            )
            return LockState(acquired=False, holder=ticket.workflow_id, preempt=preempt)
        mine.state, mine.updated_at = TicketState.HOLDING, utcnow()
        return LockState(acquired=True)

    async def leave(self, run: WorkflowRef) -> WorkflowRef | None:
        """Give up the ticket; returns the next waiting run, to be woken up."""
        if self._alone is not None and self._alone[0] == run:
            # Entered and left in one unit of work: its ticket is written once, already left.
            self._alone[1].state = TicketState.DONE
            return None
        mine, waiting = await queue_repo.mine_and_others(self.session, run.workflow_id, run.run_id)
        if mine is None:
            return None
        if mine.state != TicketState.DONE:
            mine.state, mine.updated_at = TicketState.DONE, utcnow()
        if not waiting:
            return None
        following = min(waiting, key=lambda t: (t.kind != DeploymentKind.ROLLBACK, t.id))
        return WorkflowRef(workflow_id=following.workflow_id, run_id=following.run_id)
