"""The deployment queue: one holder per app and environment, rollbacks first, crashed holders
skipped; on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from models.promotion import LockState, WorkflowRef
from models.settings import Settings
from models.status import TicketState
from services.queue import IsRunning
from services.unit import Units
from store import queue as queue_repo
from store.database import Database


def ref(name: str) -> WorkflowRef:
    return WorkflowRef(workflow_id=name, run_id=f"{name}-run")


async def running(_: str, __: str) -> bool:
    return True


class Queue:
    """The queue as the promotion activities use it: each call a unit of work of its own."""

    def __init__(self, units: Units) -> None:
        self.units = units

    async def enter(
        self, app: str, environment: str, run: WorkflowRef, kind: str, is_running: IsRunning
    ) -> LockState:
        async with self.units.write() as w:
            return await w.queue.enter(app, environment, run, kind, is_running)

    async def leave(self, run: WorkflowRef) -> WorkflowRef | None:
        async with self.units.write() as w:
            return await w.queue.leave(run)


@pytest.fixture
async def queue(db: Database, settings: Settings) -> Queue:
    units = Units(db, settings)
    async with units.write() as w:
        await w.environments.create_environment("dev", actor="t")
        await w.environments.create_app("web", ["dev"], actor="t")
    return Queue(units)


async def test_first_comer_holds_and_the_next_waits_until_it_leaves(queue: Queue) -> None:
    first = await queue.enter("web", "dev", ref("p1"), "promotion", running)
    second = await queue.enter("web", "dev", ref("p2"), "promotion", running)
    assert first.acquired
    assert not second.acquired and second.holder == "p1" and second.preempt is None
    # Asking again is idempotent: still holding, still waiting.
    assert (await queue.enter("web", "dev", ref("p1"), "promotion", running)).acquired
    assert await queue.leave(ref("p1")) == ref("p2")
    assert (await queue.enter("web", "dev", ref("p2"), "promotion", running)).acquired
    assert await queue.leave(ref("p2")) is None
    assert await queue.leave(ref("unknown")) is None


async def test_a_rollback_goes_ahead_of_waiting_promotions_and_preempts_the_holder(
    queue: Queue, db: Database
) -> None:
    await queue.enter("web", "dev", ref("p1"), "promotion", running)
    await queue.enter("web", "dev", ref("p2"), "promotion", running)
    rollback = await queue.enter("web", "dev", ref("r1"), "rollback", running)
    assert not rollback.acquired and rollback.preempt == ref("p1")
    assert await queue.leave(ref("p1")) == ref("r1")
    assert (await queue.enter("web", "dev", ref("r1"), "rollback", running)).acquired
    async with db.read() as session:
        tickets = await queue_repo.open_tickets(session, 1, 1)
        assert [(t.workflow_id, t.state) for t in tickets] == [
            ("p2", TicketState.WAITING),
            ("r1", TicketState.HOLDING),
        ]


async def test_a_holder_that_no_longer_runs_is_skipped(queue: Queue) -> None:
    await queue.enter("web", "dev", ref("p1"), "promotion", running)

    async def only_p2(workflow_id: str, _: str) -> bool:
        return workflow_id == "p2"

    assert (await queue.enter("web", "dev", ref("p2"), "promotion", only_p2)).acquired


async def test_a_run_that_left_and_asks_again_takes_its_place_again(queue: Queue) -> None:
    await queue.enter("web", "dev", ref("p1"), "promotion", running)
    await queue.leave(ref("p1"))
    # The workflow task that left was retried: the same run asks again.
    assert (await queue.enter("web", "dev", ref("p1"), "promotion", running)).acquired


async def test_runs_entering_at_once_get_one_holder(queue: Queue) -> None:
    # Each in a unit of work of its own: on PostgreSQL, concurrent transactions on their own
    # connections (as the runs of two worker processes are), each of which read the queue
    # empty before any had written to it.
    runs = [ref(f"p{n}") for n in range(8)]
    entered = await asyncio.gather(
        *(queue.enter("web", "dev", run, "promotion", running) for run in runs)
    )
    assert sum(state.acquired for state in entered) == 1
    holder = next(run for run, state in zip(runs, entered, strict=True) if state.acquired)
    assert {state.holder for state in entered if not state.acquired} == {holder.workflow_id}
