"""`stageline dev` and `stageline worker`, as a newcomer and an operator run them."""

from __future__ import annotations

import asyncio
import json
import re
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
DEMO_USERS = ("alice", "demo", "victor")
PRODUCTION = "promote-web-1.0.0-production"
# The labels of the lines `stageline dev` prints once all of it runs, in their order.
STACK_LABELS = ["Console", "Server", "Temporal UI", "Temporal", "Codec", "State"]


def start_dev(home: Path, log: Path, *ports: int) -> subprocess.Popen[str]:
    """`stageline dev --demo` on these ports (Temporal, UI, demo target, server), its
    output (stdout and stderr) in `log`, read while it runs."""
    port, ui_port, demo_port, server_port = ports
    env = {**clean_environ(), "STAGELINE_HOME": str(home)}
    with log.open("w") as out:
        return subprocess.Popen(
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
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


async def printed(proc: subprocess.Popen[str], log: Path, pattern: str, timeout: float) -> str:
    """The log once a line matches `pattern` (a regular expression)."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace")
        if re.search(pattern, text, re.MULTILINE):
            return text
        assert proc.poll() is None, f"stageline dev exited {proc.returncode}:\n{text[-3000:]}"
        assert time.monotonic() < deadline, f"never printed {pattern!r}:\n{text[-3000:]}"
        await asyncio.sleep(0.25)


def stop(proc: subprocess.Popen[str], log: Path) -> str:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    return log.read_text(errors="replace")


def console_block(text: str, server: str) -> dict[str, str]:
    """The block `stageline dev` prints once it runs: the console line comes first, with the
    demo users under it; returns each user's password."""
    labels = re.findall(r"^([A-Z][A-Za-z ]*?):\s{2,}", text, re.MULTILINE)
    assert labels[: len(STACK_LABELS)] == STACK_LABELS, labels
    assert re.search(rf"^Console:\s+{re.escape(server)}/\s", text, re.MULTILINE), text
    users = dict(re.findall(r"^ {14}(\w+)\s+/ (\S+)\s{3}", text, re.MULTILINE))
    assert sorted(users) == sorted(DEMO_USERS), text
    return users


async def check_demo_users(home: Path, server: str, passwords: dict[str, str]) -> None:
    """Kept in the home (owner only); each logs in to the server with the roles it needs."""
    kept = home / "demo-users.json"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert json.loads(kept.read_text()) == passwords
    async with httpx.AsyncClient(base_url=f"{server}/api/v1") as http:
        for name in DEMO_USERS:
            login = await http.post("/login", json={"name": name, "password": passwords[name]})
            assert login.status_code == 200, login.text
            token = login.json()["token"]
            me = await http.get("/whoami", headers={"Authorization": f"Bearer {token}"})
            roles = {(g["environment"], g["role"]) for g in me.json()["roles"]}
            assert (
                roles
                == {
                    "alice": {("production", "reviewer"), ("*", "viewer")},
                    "demo": {("*", "admin")},
                    "victor": {("*", "viewer")},
                }[name]
            )
        wrong = await http.post("/login", json={"name": "alice", "password": "not her password"})
        assert wrong.status_code == 401


async def approve_production(server: str, passwords: dict[str, str], started: float) -> None:
    """The demo's production promotion waits for alice; the requester (demo) and a viewer
    may not approve it; alice may, through the server, and it deploys."""
    async with httpx.AsyncClient(base_url=f"{server}/api/v1", timeout=90) as http:
        tokens = {}
        for name in DEMO_USERS:
            login = await http.post("/login", json={"name": name, "password": passwords[name]})
            tokens[name] = {"Authorization": f"Bearer {login.json()['token']}"}
        phase = None
        while phase != "awaiting_approval":
            assert time.monotonic() - started < 60, f"production never waited; last {phase}"
            await asyncio.sleep(0.5)
            run = await http.get(f"/runs/{PRODUCTION}", headers=tokens["victor"])
            if run.status_code == 200 and run.json()["status"]:
                phase = run.json()["status"]["phase"]
        decisions = f"/runs/{PRODUCTION}/decisions"
        by_viewer = await http.post(decisions, json={"kind": "approve"}, headers=tokens["victor"])
        assert by_viewer.status_code == 403, by_viewer.text
        by_requester = await http.post(decisions, json={"kind": "approve"}, headers=tokens["demo"])
        assert by_requester.status_code == 200 and not by_requester.json()["accepted"]
        approved = await http.post(
            decisions, json={"kind": "approve", "comment": "LGTM"}, headers=tokens["alice"]
        )
        assert approved.status_code == 200 and approved.json()["accepted"], approved.text
        result = await http.get(f"/runs/{PRODUCTION}/result?wait=60", headers=tokens["victor"])
        assert result.json()["done"], result.text
        assert result.json()["result"]["status"] == "deployed", result.text


async def test_dev_stack_serves_ui_and_demo_then_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    log = tmp_path / "dev.log"
    port, ui_port, demo_port, server_port = free_port(), free_port(), free_port(), free_port()
    server = f"http://127.0.0.1:{server_port}"
    started = time.monotonic()
    proc = start_dev(home, log, port, ui_port, demo_port, server_port)
    env = {**clean_environ(), "STAGELINE_HOME": str(home)}
    try:
        deadline = time.monotonic() + 90
        ui_status = None
        while time.monotonic() < deadline and ui_status is None:
            assert proc.poll() is None, log.read_text()
            try:
                ui_status = urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/", timeout=2).status
            except OSError:
                await asyncio.sleep(0.5)
        assert ui_status == 200
        passwords = console_block(await printed(proc, log, r"^State:", 30), server)
        await check_demo_users(home, server, passwords)

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
        started_event = (await handle.fetch_history()).events[0]
        sealed = started_event.workflow_execution_started_event_attributes.input.payloads
        assert sealed[0].metadata["encoding"] == ENCODING
        await check_codec_endpoint(home, ui_port, list(sealed))
        assert (home / "dev-master.key").stat().st_mode & 0o777 == 0o600

        # Then staging, then production, where it waits for alice: she approves it.
        await approve_production(server, passwords, started)
        await printed(proc, log, r"^Demo: web@1\.0\.0 deployed to production$", 30)

        # The stack's stageline server answers the CLI in remote mode, for a person added
        # on this machine.
        machine = Cli({**env, "STAGELINE_USER": "tester"})
        added = await machine.run("user", "add", "ann", "--role", "*:viewer", input=PASSWORD)
        assert added.code == 0, added.err
        remote = Cli({**env, "STAGELINE_HOME": str(tmp_path / "laptop")})
        remote.env["STAGELINE_URL"] = server
        (tmp_path / "laptop").mkdir()
        signed_in = await remote.run("login", "ann", input=PASSWORD)
        assert signed_in.code == 0, signed_in.err
        shown = await remote.run("status", "--json")
        assert shown.code == 0, shown.err
        assert {("web", e, "1.0.0") for e in ("dev", "staging", "production")} <= {
            (c["app"], c["environment"], c["version"]) for c in json.loads(shown.out)["cells"]
        }
        assert processes_mentioning(str(home / "temporal.db"))
    finally:
        err = stop(proc, log)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Demo: stopped" not in err
    assert "codec server" in err.splitlines()[-1]
    assert processes_mentioning(str(home / "temporal.db")) == []

    # Started again on the same home: the same users and passwords; the demo finds
    # everything deployed and says so, without failing.
    server_port = free_port()
    server = f"http://127.0.0.1:{server_port}"
    again = start_dev(home, log, free_port(), free_port(), free_port(), server_port)
    try:
        text = await printed(again, log, r"^Demo: nothing is left to approve", 60)
        assert console_block(text, server) == passwords
    finally:
        err = stop(again, log)
    assert again.returncode == 0, err
    assert "Traceback" not in err and "Demo: stopped" not in err
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
