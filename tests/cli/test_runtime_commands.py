"""`stageline dev` and `stageline worker`, as a newcomer and an operator run them."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import httpx
from temporalio.api.common.v1 import Payload
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from models.promotion import PromotionResult
from tests.conftest import STAGELINE, Cli, clean_environ
from tests.stack import outcome
from vault.codec import ENCODING, data_converter
from vault.keys import read_key_file
from worker.codec_server import parse_payloads, render_payloads


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes_mentioning(text: str) -> list[int]:
    return list(command_lines_mentioning(text))


def command_lines_mentioning(text: str) -> dict[int, list[str]]:
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if text in " ".join(argv):
            found[int(proc.name)] = argv
    return found


async def check_codec_endpoint(home: Path, ui_port: int, sealed: Sequence[Payload]) -> None:
    """The UI was started with a codec endpoint, and it decodes this run's payloads for the
    UI's origin (CORS), as the browser would ask."""
    [argv] = command_lines_mentioning(str(home / "temporal.db")).values()
    endpoint = argv[argv.index("--ui-codec-endpoint") + 1]
    assert endpoint.startswith("http://127.0.0.1:")
    ui = f"http://localhost:{ui_port}"
    async with httpx.AsyncClient(base_url=endpoint) as http:
        settings = (await http.get(f"http://127.0.0.1:{ui_port}/api/v1/settings")).json()
        assert settings["Codec"]["Endpoint"] == endpoint
        preflight = await http.options(
            "/decode",
            headers={"Origin": ui, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ui
        decoded = await http.post(
            "/decode",
            content=render_payloads(sealed),
            headers={"Origin": ui, "Content-Type": "application/json", "X-Namespace": "default"},
        )
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["access-control-allow-origin"] == ui
    [plain] = parse_payloads(decoded.content)
    assert plain.metadata["encoding"] == b"json/plain" and b'"app":"web"' in plain.data


PASSWORD = "correct horse battery staple\n"


async def test_dev_stack_serves_ui_and_demo_then_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port, ui_port, demo_port, server_port = free_port(), free_port(), free_port(), free_port()
    env = clean_environ()
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
            "--server-port",
            str(server_port),
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

        # The dev stack encrypts with the dev key it created; this client uses the same.
        key = read_key_file(home / "dev-master.key")
        client = await Client.connect(f"127.0.0.1:{port}", data_converter=data_converter(key))
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
        result = await asyncio.wait_for(outcome(handle), 60)
        assert result.status == "deployed", result.reason
        started = (await handle.fetch_history()).events[0]
        sealed = started.workflow_execution_started_event_attributes.input.payloads
        assert sealed[0].metadata["encoding"] == ENCODING
        await check_codec_endpoint(home, ui_port, list(sealed))
        assert (home / "dev-master.key").stat().st_mode & 0o777 == 0o600
        # The stack's stageline server answers the CLI in remote mode, for a person added
        # on this machine.
        machine = Cli({**env, "STAGELINE_USER": "tester"})
        added = await machine.run("user", "add", "ann", "--role", "*:viewer", input=PASSWORD)
        assert added.code == 0, added.err
        remote = Cli({**env, "STAGELINE_HOME": str(tmp_path / "laptop")})
        remote.env["STAGELINE_URL"] = f"http://127.0.0.1:{server_port}"
        (tmp_path / "laptop").mkdir()
        signed_in = await remote.run("login", "ann", input=PASSWORD)
        assert signed_in.code == 0, signed_in.err
        shown = await remote.run("status", "--json")
        assert shown.code == 0, shown.err
        assert ("web", "dev", "1.0.0") in {
            (c["app"], c["environment"], c["version"]) for c in json.loads(shown.out)["cells"]
        }
        assert processes_mentioning(str(home / "temporal.db"))
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "Codec:        http://127.0.0.1:" in err and "codec server" in err.splitlines()[-1]
    assert f"Server:       http://127.0.0.1:{server_port}" in err
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


def test_commands_that_reach_temporal_need_the_master_key(cli: Cli) -> None:
    # Every payload is encrypted with it, so no client is made without it.
    env = {k: v for k, v in cli.env.items() if k != "STAGELINE_MASTER_KEY"}
    env["TEMPORAL_ADDRESS"] = "127.0.0.1:1"
    result = Cli(env)("approve", "promote-web-1.0.0-dev", "--reviewer", "bob")
    assert result.code == 3 and "no master key is configured" in result.err
    assert "Traceback" not in result.err
