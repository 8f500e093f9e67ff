"""SQL statements and transactions per promotion: sequential promotions through a worker in
this process, whose engine counts what it sends (SQLAlchemy events), by activity; and the
CPU each activity takes in that worker (an interceptor reads the process's CPU time around
each call; one promotion runs at a time, so little else runs meanwhile)."""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from activities import sandbox
from models.errors import ConfigurationError
from models.settings import Settings
from store.database import Database
from vault.keys import MasterKey
from worker.main import build_worker

TASK_QUEUE = "stageline-sql"
PROMOTIONS = 10  # counted, after one warm-up
ROLLBACKS = 5  # then counted: each goes back one release of those promotions


class Counts:
    """Statements (BEGIN excluded: SQLite's is a statement, PostgreSQL's is not), and
    transactions begun, committed and rolled back, each by the activity that issued it."""

    def __init__(self, db: Database) -> None:
        self.counting = False
        self.statements: Counter[str] = Counter()
        self.transactions: Counter[str] = Counter()
        self.commits = 0
        self.rollbacks = 0
        self.log: list[str] = []  # BENCH_SQL_LOG: each statement, for finding what to cut
        engine = db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)

    @staticmethod
    def _where() -> str:
        return activity.info().activity_type if activity.in_activity() else "(no activity)"

    def _statement(self, *args: Any) -> None:
        if self.counting and not str(args[2]).lstrip().upper().startswith("BEGIN"):
            self.statements[self._where()] += 1
            self.log.append(f"{self._where()}\t{' '.join(str(args[2]).split())}")

    def _begin(self, _conn: Any) -> None:
        if self.counting:
            self.transactions[self._where()] += 1

    def _commit(self, _conn: Any) -> None:
        self.commits += self.counting

    def _rollback(self, _conn: Any) -> None:
        self.rollbacks += self.counting


class ActivityCpu(Interceptor):
    """CPU milliseconds of this process spent inside each call, by activity type."""

    def __init__(self) -> None:
        self.counting = False
        self.ms: dict[str, list[float]] = {}

    def per_workflow(self, n: int) -> dict[str, float]:
        """The median call, times the calls per workflow of the n measured (a garbage
        collection or a compaction lands in one call now and then; the median leaves it
        out)."""
        typical = {
            name: statistics.median(calls) * len(calls) / n for name, calls in self.ms.items()
        }
        return {name: round(ms, 2) for name, ms in sorted(typical.items(), key=lambda i: -i[1])}

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Timed(next, self)


class _Timed(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, cpu: ActivityCpu) -> None:
        super().__init__(next)
        self._cpu = cpu

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        began = time.process_time()
        try:
            return await super().execute_activity(input)
        finally:
            if self._cpu.counting:
                spent = 1000 * (time.process_time() - began)
                self._cpu.ms.setdefault(activity.info().activity_type, []).append(spent)


def write_log(log: list[str]) -> None:
    """BENCH_SQL_LOG=FILE: every counted statement, one per line, after its activity."""
    if os.environ.get("BENCH_SQL_LOG"):
        Path(os.environ["BENCH_SQL_LOG"]).write_text("\n".join(log) + "\n")


def step_sandbox(settings: Settings) -> tuple[sandbox.StepSandbox | None, bool]:
    """As the worker process does; without a working bwrap, steps run unsandboxed here."""
    try:
        return sandbox.prepare(settings), True
    except ConfigurationError:
        return None, False


async def measure(
    client: Client,
    settings: Settings,
    key: MasterKey,
    promote: Callable[[str, str], Awaitable[WorkflowHandle[Any, Any]]],
    roll_back: Callable[[int, str], Awaitable[WorkflowHandle[Any, Any]]],
) -> dict[str, Any]:
    """`client` carries stageline's encrypting converter; `promote(version, task_queue)`
    starts one promotion of a release that exists, on the given task queue, and
    `roll_back(n, task_queue)` the n-th rollback of what they deployed."""
    settings = settings.model_copy(update={"task_queue": TASK_QUEUE})
    db = Database(settings.database_url)
    counts = Counts(db)
    cpu = ActivityCpu()
    box, sandboxed = step_sandbox(settings)
    try:
        # Without the notification dispatcher: its rounds are not a promotion's statements.
        async with build_worker(
            client,
            settings,
            db,
            key,
            TASK_QUEUE,
            step_sandbox=box,
            notifications=False,
            interceptors=[cpu],
        ):
            for i in range(PROMOTIONS + 1):
                counts.counting = cpu.counting = i > 0
                await (await promote(f"2.0.{i}", TASK_QUEUE)).result()
            counts.counting = cpu.counting = False
            promotions = per_workflow(counts, PROMOTIONS)
            promotions_cpu = cpu.per_workflow(PROMOTIONS)
            logged, counts = counts.log, Counts(db)
            cpu.ms.clear()
            counts.counting = cpu.counting = True
            for i in range(ROLLBACKS):
                await (await roll_back(i, TASK_QUEUE)).result()
    finally:
        counts.counting = cpu.counting = False
        await db.close()
    write_log(logged + counts.log)
    return {
        "promotions": PROMOTIONS,
        "sandboxed": sandboxed,
        **promotions,
        "cpu_ms_by_activity": promotions_cpu,
        "rollback": {
            "workflows": ROLLBACKS,
            **per_workflow(counts, ROLLBACKS),
            "cpu_ms_by_activity": cpu.per_workflow(ROLLBACKS),
        },
    }


def per_workflow(counts: Counts, n: int) -> dict[str, Any]:
    return {
        "statements": sum(counts.statements.values()) / n,
        "transactions": sum(counts.transactions.values()) / n,
        "commits": counts.commits / n,
        "rollbacks": counts.rollbacks / n,
        "statements_by_activity": {
            name: count / n for name, count in counts.statements.most_common()
        },
        "transactions_by_activity": {
            name: count / n for name, count in counts.transactions.most_common()
        },
    }
