"""The workflow runner: Temporal's sandbox, with the payloads' serialization context answered
outside it when nothing in the data converter reads one.

For every payload sequence of every activation and completion (three or four passes each),
the SDK asks the workflow instance which serialization context applies; the sandbox answers
by compiling and running a snippet inside itself, with its import machinery applied. A
burst profile put that at about an eighth of the worker's event-loop time. stageline's
converter (pydantic JSON, the encryption codec, the default failure converter) reads no
context and stores nothing externally, so the workflow's own context gives the same bytes
for every payload; the workflow code itself still runs in the sandbox, unchanged. A converter
with a context-aware part (or external storage) keeps the SDK's answer for each command.
"""

from __future__ import annotations

from collections.abc import Sequence

import temporalio.workflow
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    SerializationContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.worker import (
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

# Contexts a part of a converter could depend on: the workflow's, and an activity's.
_PROBES: tuple[SerializationContext, ...] = (
    WorkflowSerializationContext(namespace="probe", workflow_id="probe"),
    ActivitySerializationContext(
        namespace="probe",
        activity_id="1",
        activity_type="probe",
        activity_task_queue="probe",
        workflow_id="probe",
        workflow_type="probe",
        is_local=True,
    ),
)


def reads_context(converter: DataConverter) -> bool:
    """Whether any part of the converter depends on a payload's serialization context (or
    stores payloads elsewhere, which the store context addresses). A part that takes a
    context and gives itself back (the SDK's composites do, when none of theirs reads one)
    does not."""
    if getattr(converter, "external_storage", None) is not None:
        return True
    parts: list[object] = [
        converter.payload_converter,
        converter.failure_converter,
        converter.payload_codec,
    ]
    return any(
        isinstance(part, WithSerializationContext)
        and any(part.with_context(probe) is not part for probe in _PROBES)
        for part in parts
    )


def sandboxed_runner(converter: DataConverter) -> WorkflowRunner:
    """The sandbox; answering contexts itself when `converter` reads none."""
    sandbox = SandboxedWorkflowRunner()
    return sandbox if reads_context(converter) else _WorkflowContextRunner(sandbox)


class _WorkflowContextRunner(WorkflowRunner):
    def __init__(self, inner: WorkflowRunner) -> None:
        self._inner = inner

    def prepare_workflow(self, defn: temporalio.workflow._Definition) -> None:
        self._inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _WorkflowContextInstance(self._inner.create_instance(det))

    def set_worker_level_failure_exception_types(
        self, types: Sequence[type[BaseException]]
    ) -> None:
        self._inner.set_worker_level_failure_exception_types(types)


class _WorkflowContextInstance(WorkflowInstance):
    """The sandboxed instance, answering every payload's context with the workflow's own."""

    def __init__(self, inner: WorkflowInstance) -> None:
        self._inner = inner
        info = inner.get_info()
        self._context = WorkflowSerializationContext(
            namespace=info.namespace, workflow_id=info.workflow_id
        )
        self._store = StorageDriverStoreContext(
            target=StorageDriverWorkflowInfo(
                id=info.workflow_id,
                run_id=info.run_id,
                type=info.workflow_type,
                namespace=info.namespace,
            )
        )

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        return self._inner.activate(act)

    def get_serialization_context(self, command_info: object) -> SerializationContext | None:
        return self._context

    def get_external_store_context(self, command_info: object) -> StorageDriverStoreContext:
        return self._store

    def get_info(self) -> temporalio.workflow.Info:
        return self._inner.get_info()

    def get_thread_id(self) -> int | None:
        return self._inner.get_thread_id()
