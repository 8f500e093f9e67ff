"""The floor: bare Temporal workflows doing the same external work with the least
orchestration possible, served by a worker configured like stageline's.

Run as `python -m bench.baseline ADDRESS` to serve task queue `bare`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

TASK_QUEUE = "bare"


class Work(BaseModel):
    """A promotion's shape: no-op local activities (its database work) before its steps,
    the steps as activities (subprocesses running `true`), local activities after them."""

    steps: int = 2
    local_before: int = 0
    local_after: int = 0
    database: str = ""  # for the rollback baseline: one write, like moving a pointer


class Done(BaseModel):
    activities: int


@activity.defn(name="run_true")
async def run_true(_: Work) -> None:
    process = await asyncio.create_subprocess_exec("true")
    await process.wait()


@activity.defn(name="noop_local")
async def noop_local(_: Work) -> None:
    return None


@activity.defn(name="write_pointer")
async def write_pointer(work: Work) -> None:
    def write() -> None:
        with sqlite3.connect(work.database) as conn:
            # Set up as stageline's store is, so the write costs the same.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS pointer (id INTEGER PRIMARY KEY, v TEXT)")
            conn.execute("INSERT OR REPLACE INTO pointer VALUES (1, 'previous')")

    await asyncio.to_thread(write)


@workflow.defn(name="BareSteps")
class BareSteps:
    @workflow.run
    async def run(self, work: Work) -> Done:
        await _local(work, work.local_before)
        for _ in range(work.steps):
            await workflow.execute_activity(
                run_true, work, start_to_close_timeout=timedelta(seconds=60)
            )
        await _local(work, work.local_after)
        return Done(activities=work.steps + work.local_before + work.local_after)


async def _local(work: Work, count: int) -> None:
    for _ in range(count):
        await workflow.execute_local_activity(
            noop_local, work, start_to_close_timeout=timedelta(seconds=60)
        )


@workflow.defn(name="BarePointer")
class BarePointer:
    @workflow.run
    async def run(self, work: Work) -> Done:
        # A local activity, as stageline's rollback moves the pointer in one.
        await workflow.execute_local_activity(
            write_pointer, work, start_to_close_timeout=timedelta(seconds=60)
        )
        return Done(activities=1)


async def serve(address: str) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    worker = Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[BareSteps, BarePointer],
        activities=[run_true, noop_local, write_pointer],
        max_heartbeat_throttle_interval=timedelta(seconds=2),  # as stageline's worker
    )
    await worker.run()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
