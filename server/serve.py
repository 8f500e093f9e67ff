"""Running the server's application with uvicorn: on its own (`stageline server`) or inside
the dev stack beside the worker (`stageline dev`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Iterator

import uvicorn
from fastapi import FastAPI

from models.errors import Unavailable

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn, stopped by whoever runs it: its own signal capture would fight asyncio's
    handlers (both fire), cancelling the application mid-shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    # The access log names method, path and status: never a header, so never a token, and
    # no route takes a token or password in its path or query.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # the process's logging, as the CLI set it up
        access_log=True,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )


async def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then finish the requests under way and stop."""
    server = _Server(_config(app, host, port))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, setattr, server, "should_exit", True)
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when it cannot bind
        raise Unavailable(
            f"the stageline server could not listen on {host}:{port} (in use?); "
            "choose another with --port"
        ) from None
    if not server.started:
        raise Unavailable(f"the stageline server could not listen on {host}:{port}")


@contextlib.asynccontextmanager
async def running(app: FastAPI, host: str, port: int) -> AsyncIterator[str]:
    """Serve in the background of the block; yields the server's URL."""
    server = _Server(_config(app, host, port))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
                task.result()
            raise Unavailable(f"the stageline server could not listen on {host}:{port}")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
