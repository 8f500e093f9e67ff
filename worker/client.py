"""Connecting to Temporal, and making sure the contract's search attributes exist."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError

from models.errors import ConfigurationError, Unavailable
from models.settings import Settings
from vault.codec import data_converter
from vault.keys import KeyProvider, load_master_key, load_previous_keys
from workflows.outcomes import outcome_of
from workflows.search_attributes import ALL

M = TypeVar("M", bound=BaseModel)

_runtime_ready = False


def _quiet_runtime() -> None:
    """Send the SDK core's own log lines to Python logging (stderr), never to stdout, where
    they would corrupt `--json` output."""
    global _runtime_ready
    if _runtime_ready:
        return
    Runtime.set_default(
        Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                    forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
                )
            )
        ),
        error_if_already_set=False,
    )
    _runtime_ready = True


async def connect(settings: Settings, key: KeyProvider | None = None) -> Client:
    """A client whose payloads are encrypted with the master key (`key`, else the configured
    one): without the key no stageline client is made, so nothing goes to Temporal in clear."""
    converter = data_converter(
        key if key is not None else load_master_key(settings), load_previous_keys(settings)
    )
    _quiet_runtime()
    config = _connection(settings)
    try:
        return await Client.connect(**config, data_converter=converter)
    except (RuntimeError, RPCError, OSError) as exc:
        text = str(exc)
        reason = (
            "connection refused"
            if "refused" in text.lower()
            else (text.splitlines()[0] if text else type(exc).__name__)
        )
        raise Unavailable(
            f"cannot reach Temporal at {settings.temporal_address} ({reason}); check "
            "TEMPORAL_ADDRESS, or start the embedded stack with 'stageline dev'"
        ) from None


def _connection(settings: Settings) -> dict[str, Any]:
    """How to reach Temporal: TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE (settings), and what the
    Temporal CLI and SDKs read for a secured cluster or Temporal Cloud: TEMPORAL_API_KEY,
    TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH / TEMPORAL_TLS_SERVER_CA_CERT_PATH (mTLS),
    TEMPORAL_TLS, TEMPORAL_GRPC_META_*, or a profile of TEMPORAL_CONFIG_FILE (TEMPORAL_PROFILE)."""
    try:
        profile = ClientConfigProfile.load()
        config: dict[str, Any] = dict(profile.to_client_connect_config())
    except (RuntimeError, OSError, ValueError) as exc:
        raise ConfigurationError(
            f"the Temporal connection settings cannot be used ({exc}); check TEMPORAL_API_KEY, "
            "TEMPORAL_TLS_* and TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE"
        ) from None
    config.update(target_host=settings.temporal_address, namespace=settings.temporal_namespace)
    return config


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the Stageline* search attributes that are missing; returns what was added."""
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = [key.name for key in ALL if key.name not in listed.custom_attributes]
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={
                    name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing
                },
            )
        )
    except RPCError as exc:
        raise Unavailable(
            f"the search attributes {', '.join(missing)} are not registered in namespace "
            f"{namespace!r} and could not be added ({exc.message}); ask an operator to run: "
            + "; ".join(
                f"temporal operator search-attribute create --name {n} --type Keyword"
                for n in missing
            )
        ) from None
    return missing


async def result_of(handle: WorkflowHandle[Any, Any], model: type[M]) -> M:
    """A stageline workflow's result, however it ended: what it returned, or the result that
    its outcome failure carries (a promotion that did not deploy ends Failed; see
    workflows.outcomes). Any other failure is raised as it is."""
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        outcome = outcome_of(exc, model)
        if outcome is None:
            raise
        return outcome
    return result if isinstance(result, model) else model.model_validate(result)
