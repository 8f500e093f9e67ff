"""The Temporal dev server stopped and started again (persistent file) mid-promotion: the
promotion completes after the restart."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

from temporalio.client import Client

from models.promotion import PromotionResult
from tests.http_recorder import recorder
from tests.stack import CONVERTER, TEMPORAL, outcome, stack
from tests.workflows import scenario
from workflows.search_attributes import ALL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, db: Path, port: int) -> None:
        self.command = [
            TEMPORAL,
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--db-filename",
            str(db),
            "--log-level",
            "error",
            *[arg for key in ALL for arg in ("--search-attribute", f"{key.name}=Keyword")],
        ]
        self.address = f"127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(300):
            try:
                await Client.connect(self.address)
                return
            except RuntimeError:
                await asyncio.sleep(0.1)
        raise AssertionError("the dev server did not come up")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=30)


class _Env:
    """Just enough of a WorkflowEnvironment for `stack`."""

    def __init__(self, client: Client) -> None:
        self.client = client


async def test_promotion_completes_after_the_server_restarts(tmp_path: Path) -> None:
    server = Server(tmp_path / "temporal.db", free_port())
    await server.start()
    marker = tmp_path / "steps"
    try:
        client = await Client.connect(server.address, data_converter=CONVERTER)
        with recorder() as hooks:
            async with stack(_Env(client), tmp_path / "home", own_namespace=False) as s:  # type: ignore[arg-type]
                await scenario.build(s, hooks.url)
                await s.releases.create_release(
                    "web", "1.0.0", scenario.pipeline(marker=marker, sleep=4), actor="t"
                )
                handle = await s.start_promotion("web", "1.0.0", "dev")
                for _ in range(300):
                    if marker.exists() and "start" in marker.read_text():
                        break
                    await asyncio.sleep(0.1)
                server.stop()
                await asyncio.sleep(2)
                await server.start()
                result = await asyncio.wait_for(outcome(handle), 120)
                assert isinstance(result, PromotionResult)
                assert result.status == "deployed", result.reason
                assert (await s.views.status(environment="dev")).cells[0].version == "1.0.0"
    finally:
        server.stop()
