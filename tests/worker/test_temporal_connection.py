"""How stageline reaches a secured Temporal (a cluster with mTLS, or Temporal Cloud with an API
key): the environment the Temporal CLI and SDKs read, on every connection it makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from models.settings import Settings
from tests.conftest import KEY_TEXT, Cli
from worker.client import connect


async def test_an_api_key_from_the_environment_reaches_the_connection(
    temporal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dev server takes no TLS; TEMPORAL_TLS=false keeps the key without it.
    monkeypatch.setenv("TEMPORAL_API_KEY", "tmprl-key-for-this-test")
    monkeypatch.setenv("TEMPORAL_TLS", "false")
    settings = Settings(
        home=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'db'}",
        temporal_address=temporal.client.service_client.config.target_host,
        master_key=KEY_TEXT,
    )
    client = await connect(settings)
    assert client.api_key == "tmprl-key-for-this-test"
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace="default")
    )
    assert described.namespace_info.name == "default"


def test_a_missing_client_certificate_is_one_line_and_exit_3(cli: Cli, tmp_path: Path) -> None:
    cli.env.update(
        TEMPORAL_TLS_CLIENT_CERT_PATH=str(tmp_path / "missing.pem"),
        TEMPORAL_TLS_CLIENT_KEY_PATH=str(tmp_path / "missing.key"),
    )
    result = cli("worker")
    assert result.code == 3, result.err
    assert "missing.pem" in result.err and "TEMPORAL_TLS_" in result.err
    assert "Traceback" not in result.err
