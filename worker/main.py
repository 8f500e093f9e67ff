"""Build and run the worker: the workflows, and the activities with their clients."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.promotion import PromotionActivities
from models.settings import Settings
from store.database import Database
from vault.keys import KeyProvider, load_master_key
from worker.client import connect, ensure_search_attributes
from workflows.promotion import PromotionWorkflow
from workflows.rollback import RollbackWorkflow
from workflows.train import ReleaseTrainWorkflow

WORKFLOWS: Sequence[type] = (PromotionWorkflow, RollbackWorkflow, ReleaseTrainWorkflow)

log = logging.getLogger("stageline.worker")


def build_worker(
    client: Client,
    settings: Settings,
    db: Database,
    key: KeyProvider,
    task_queue: str | None = None,
    **options: Any,
) -> Worker:
    activities = PromotionActivities(db, settings, key, client)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=activities.all(),  # type: ignore[arg-type]
        # Heartbeats reach the server within 2 s, and with them a cancellation: a rollback
        # stops a running step that fast.
        max_heartbeat_throttle_interval=timedelta(seconds=2),
        **options,
    )


async def run_worker(settings: Settings, ready: Callable[[], None] | None = None) -> None:
    """Run until cancelled. The master key and both services are checked before serving."""
    key = load_master_key(settings)
    db = Database(settings.database_url)
    try:
        await db.migrate()
        client = await connect(settings, key)
        added = await ensure_search_attributes(client, settings.temporal_namespace)
        if added:
            log.info("registered search attributes %s", ", ".join(added))
        worker = build_worker(client, settings, db, key)
        async with worker:
            log.info(
                "worker serving task queue %r at %s", settings.task_queue, settings.temporal_address
            )
            if ready is not None:
                ready()
            await asyncio.Event().wait()
    finally:
        await db.close()
