"""Build and run the worker: the workflows, and the activities with their clients."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import socket
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Literal

from temporalio.client import Client
from temporalio.worker import Worker

from activities import sandbox
from activities.promotion import PromotionActivities
from models.settings import Settings
from services.base import Service
from services.unit import Units
from store.database import Database
from vault.keys import KeyProvider, load_master_key
from worker.client import connect, ensure_search_attributes
from worker.heap import long_lived_heap
from worker.notifier import Notifier
from worker.runner import sandboxed_runner
from workflows.promotion import PromotionWorkflow
from workflows.rollback import RollbackWorkflow
from workflows.train import ReleaseTrainWorkflow

WORKFLOWS: Sequence[type] = (PromotionWorkflow, RollbackWorkflow, ReleaseTrainWorkflow)

log = logging.getLogger("stageline.worker")


class StagelineWorker(Worker):
    """A Temporal worker that runs the notification dispatcher (`worker/notifier.py`) beside
    itself while it runs, however it is run (`async with`, `run()`): `stageline worker`,
    `stageline dev` and the tests all build their worker here, so every worker delivers."""

    # Set once built (see `build_worker`), so Worker's own arguments stay type-checked.
    notifier: Notifier | None = None

    async def run(self) -> None:
        if self.notifier is None:
            await super().run()
            return
        dispatcher = asyncio.create_task(self.notifier.run(), name="stageline-notifier")
        try:
            await super().run()
        finally:
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher


def build_worker(
    client: Client,
    settings: Settings,
    db: Database,
    key: KeyProvider,
    task_queue: str | None = None,
    *,
    step_sandbox: sandbox.StepSandbox | Literal["from-settings"] | None = "from-settings",
    notifications: bool = True,
    **options: Any,
) -> Worker:
    """`step_sandbox`: what `sandbox.prepare(settings)` returned, if the caller already
    called it; by default it is called here, so every worker sandboxes its steps (or refuses
    to be built) unless its settings opt out. `notifications`: run the notification
    dispatcher beside it (off only where something counts the worker's statements)."""
    box = sandbox.prepare(settings) if step_sandbox == "from-settings" else step_sandbox
    activities = PromotionActivities(db, settings, key, client, step_sandbox=box)
    worker = StagelineWorker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=list(WORKFLOWS),
        workflow_runner=sandboxed_runner(client.data_converter),
        activities=activities.all(),  # type: ignore[arg-type]
        # Heartbeats reach the server within 2 s, and with them a cancellation: a rollback
        # stops a running step that fast.
        max_heartbeat_throttle_interval=timedelta(seconds=2),
        **options,
    )
    worker.notifier = Notifier.for_worker(db, settings, key) if notifications else None
    return worker


async def record_unsandboxed(db: Database, settings: Settings) -> None:
    """The opt-out lands in the audit log, where reviewers of the workspace will see it."""
    async with Units(db, settings).write() as w:
        await Service(w).audit(
            f"{getpass.getuser()}@{socket.gethostname()}",
            "worker.unsandboxed_steps",
            f"worker on task queue {settings.task_queue}",
            detail={"warning": "run: steps execute without the bubblewrap sandbox"},
        )


@contextmanager
def steps_reaped_by_the_loop() -> Iterator[None]:
    """Python 3.11 waits for each subprocess on a thread of its own (a thread started per
    step); a pidfd watcher waits in the event loop, as 3.12 does by default. A step ends
    about 1 ms sooner and costs the worker less CPU. Put back when the worker stops, so a
    later event loop in the same process (the tests) gets the default again."""
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        yield
        return
    policy = asyncio.get_event_loop_policy()
    previous = _child_watcher(policy)
    if isinstance(previous, asyncio.PidfdChildWatcher) and previous.is_active():
        yield  # an outer worker of this loop installed one
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    _child_watcher(policy, watcher)
    try:
        yield
    finally:
        _child_watcher(policy, previous)


def _child_watcher(
    policy: asyncio.AbstractEventLoopPolicy, new: asyncio.AbstractChildWatcher | None = None
) -> asyncio.AbstractChildWatcher:
    """The policy's child watcher, after setting it to `new` if given (3.11's API, which
    warns of its deprecation in 3.12)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if new is not None:
            policy.set_child_watcher(new)
        return policy.get_child_watcher()


async def run_worker(settings: Settings, ready: Callable[[], None] | None = None) -> None:
    """Run until cancelled. The master key, the step sandbox and both services are checked
    before serving."""
    key = load_master_key(settings)
    # Before connecting anywhere: without a working sandbox (or the opt-out) refuse to start.
    box = sandbox.prepare(settings)
    db = Database(settings.database_url)
    try:
        await db.migrate()
        if box is None:
            await record_unsandboxed(db, settings)
        client = await connect(settings, key)
        added = await ensure_search_attributes(client, settings.temporal_namespace)
        if added:
            log.info("registered search attributes %s", ", ".join(added))
        worker = build_worker(client, settings, db, key, step_sandbox=box)
        # Outside the worker: its steps are reaped until the last one has ended.
        with steps_reaped_by_the_loop(), long_lived_heap():
            async with worker:
                log.info(
                    "worker serving task queue %r at %s",
                    settings.task_queue,
                    settings.temporal_address,
                )
                if ready is not None:
                    ready()
                await asyncio.Event().wait()
    finally:
        await db.close()
