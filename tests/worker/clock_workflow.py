"""A workflow that reads the wall clock: the sandbox must refuse it (tests/worker/test_runner)."""

from __future__ import annotations

import datetime

from temporalio import workflow


@workflow.defn(name="ReadsTheClock")
class ReadsTheClock:
    @workflow.run
    async def run(self, name: str) -> str:
        return f"{name} at {datetime.datetime.now().isoformat()}"


@workflow.defn(name="Greets")
class Greets:
    @workflow.run
    async def run(self, name: str) -> str:
        return f"hello {name}"
