"""What every measurement shares: statistics, a workflow's facts from its history, waiting for
workers, resident size."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle

from bench.cpu import Processes, Tally

BIN = Path(sys.executable).parent


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered) * 1000, "p95_ms": p95 * 1000, "n": len(ordered)}


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("inf")


def _marker_mentions(event: Any, name: str) -> bool:
    data = event.marker_recorded_event_attributes.details.get("data")
    return name.encode() in (b"".join(p.data for p in data.payloads) if data else b"")


def _is_local_activity(event: Any) -> bool:
    return bool(
        event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and event.marker_recorded_event_attributes.marker_name == "core_local_activity"
    )


async def history_facts(
    handle: WorkflowHandle[Any, Any], pointer_activity: str | None = None
) -> dict[str, Any]:
    """Server-side duration (start to close); activities, local activities (markers; how many
    before the first activity) and workflow tasks; and for a rollback, start to the moment the
    local activity that moves the pointer was recorded."""
    events = (await handle.fetch_history()).events
    start = events[0].event_time.ToDatetime()
    end = events[-1].event_time.ToDatetime()
    kinds = [e.event_type for e in events]
    # Local activities only: a workflow.patched() call records a marker too.
    markers = [e for e in events if _is_local_activity(e)]
    first_activity = next(
        (i for i, k in enumerate(kinds) if k == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        len(kinds),
    )
    pointer_at = next(
        (
            m.event_time.ToDatetime()
            for m in markers
            if pointer_activity and _marker_mentions(m, pointer_activity)
        ),
        None,
    )
    return {
        "server_s": (end - start).total_seconds(),
        "pointer_s": (pointer_at - start).total_seconds() if pointer_at else None,
        "activities": kinds.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        "local_activities": len(markers),
        "local_before": sum(_is_local_activity(e) for e in events[:first_activity]),
        "workflow_tasks": kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
    }


async def timed(
    start: Callable[[], Awaitable[WorkflowHandle[Any, Any]]],
    processes: Processes,
    tally: Tally | None,
    pointer_activity: str | None = None,
) -> dict[str, Any]:
    """One workflow, started and awaited; its CPU added to `tally` (None for a warm-up)."""
    before = processes.snapshot()
    began = time.perf_counter()
    handle = await start()
    await handle.result()
    client_s = time.perf_counter() - began
    if tally is not None:
        tally.add(before, processes.snapshot())
    return {"client_s": client_s, **(await history_facts(handle, pointer_activity))}


def shape(facts: dict[str, Any]) -> str:
    return f"{facts['activities']} / {facts['local_activities']} / {facts['workflow_tasks']}"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def wait_for_worker(client: Client, queue: str, count: int = 1) -> None:
    """Until `count` worker processes poll `queue` for activities."""
    for _ in range(600):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            )
        )
        if len(described.pollers) >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"fewer than {count} workers on {queue}")


def start_profiler(pid: int, output: str) -> None:
    """BENCH_PROFILE: py-spy on a worker, for finding hot spots (collapsed stacks, 200 samples
    a second); it stops when the worker does."""
    subprocess.Popen(
        [
            str(BIN / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "-o",
            output,
            "--rate",
            "200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
