"""A status query the worker fails to answer is "no status", never a traceback."""

from __future__ import annotations

from typing import Any, cast

from temporalio.client import WorkflowHandle, WorkflowQueryFailedError

from cli.temporal import query_status


class FailingQueries:
    """A handle whose queries fail as the worker reports a replay it could not do."""

    id = "promote-web-1.0.0-dev"

    async def query(self, *_: Any, **__: Any) -> Any:
        raise WorkflowQueryFailedError(
            "[TMPRL1100] Nondeterminism error: Non-deprecated patch marker encountered"
        )


async def test_a_failed_status_query_is_no_status() -> None:
    handle = cast(WorkflowHandle[Any, Any], FailingQueries())
    assert await query_status(handle) is None
