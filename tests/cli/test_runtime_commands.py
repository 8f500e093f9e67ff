"""`stageline dev` and `stageline worker`, as a newcomer and an operator run them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from models.promotion import PromotionResult
from tests.conftest import STAGELINE, Cli


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


async def test_dev_stack_serves_ui_and_demo_then_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port, ui_port, demo_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STAGELINE_", "TEMPORAL_"))}
    env["STAGELINE_HOME"] = str(home)
    proc = subprocess.Popen(
        [
            STAGELINE,
            "dev",
            "--demo",
            "--port",
            str(port),
            "--ui-port",
            str(ui_port),
            "--demo-port",
            str(demo_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        ui_status = None
        while time.monotonic() < deadline and ui_status is None:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                ui_status = urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/", timeout=2).status
            except OSError:
                await asyncio.sleep(0.5)
        assert ui_status == 200

        client = await Client.connect(f"127.0.0.1:{port}", data_converter=pydantic_data_converter)
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        for name in ("StagelineApp", "StagelineEnvironment", "StagelineVersion", "StagelineStatus"):
            assert name in listed.custom_attributes
        handle = None
        while handle is None and time.monotonic() < deadline:
            found = [w async for w in client.list_workflows('WorkflowId = "promote-web-1.0.0-dev"')]
            handle = (
                client.get_workflow_handle(found[0].id, result_type=PromotionResult)
                if found
                else None
            )
            await asyncio.sleep(0.5)
        assert handle is not None
        result = await asyncio.wait_for(handle.result(), 60)
        assert result.status == "deployed", result.reason
        assert (home / "dev-master.key").stat().st_mode & 0o777 == 0o600
        assert processes_mentioning(str(home / "temporal.db"))
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert processes_mentioning(str(home / "temporal.db")) == []


def test_worker_refuses_to_start_without_a_master_key(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if k != "STAGELINE_MASTER_KEY"}
    result = Cli(env)("worker")
    assert result.code == 3 and "no master key is configured" in result.err


def test_worker_without_temporal_exits_5(cli: Cli) -> None:
    cli.env["TEMPORAL_ADDRESS"] = "127.0.0.1:1"
    result = cli("worker")
    assert result.code == 5 and "cannot reach Temporal at 127.0.0.1:1" in result.err
    assert "Traceback" not in result.err
