"""Commands that run things: the worker, the embedded dev stack, the codec server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import click
from temporalio.client import Client

from activities import sandbox
from models.settings import Settings
from store.database import Database
from vault.codec import EncryptionCodec
from vault.keys import KeyProvider, load_master_key, load_previous_keys, write_key_file
from worker import demo
from worker.client import ensure_search_attributes
from worker.codec_server import dev_ui_origins, read_token_file, serve_codec, ui_origin
from worker.dev_stack import dev_server, free_port_or_any, port_free
from worker.main import build_worker, run_worker


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("temporalio", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _serve(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` until it ends or Ctrl-C / SIGTERM arrives; then clean up and exit 0."""

    async def runner() -> None:
        task = asyncio.ensure_future(main())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(runner())


def _unsandboxed_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--allow-unsandboxed-steps",
        is_flag=True,
        default=False,
        help="Run pipeline run: steps without the bubblewrap sandbox (any pipeline can then "
        "read every secret); same as STAGELINE_ALLOW_UNSANDBOXED_STEPS=1. Logged and audited.",
    )(command)


def _opt_out(settings: Settings, allow_unsandboxed_steps: bool) -> Settings:
    if not allow_unsandboxed_steps:
        return settings
    return settings.model_copy(update={"allow_unsandboxed_steps": True})


@click.command()
@_unsandboxed_option
def worker(allow_unsandboxed_steps: bool) -> None:
    """Run a worker against TEMPORAL_ADDRESS and STAGELINE_DATABASE_URL until stopped."""
    _logging()
    settings = _opt_out(Settings.from_env(), allow_unsandboxed_steps)
    load_master_key(settings)  # refuse to start without a key, before connecting anywhere
    _serve(lambda: run_worker(settings))


def _dev_key(settings: Settings) -> KeyProvider:
    if settings.master_key or settings.master_key_file or settings.dev_key_file.exists():
        return load_master_key(settings)
    key = write_key_file(settings.dev_key_file)
    click.echo(f"created a dev master key at {settings.dev_key_file} (mode 0600)", err=True)
    return key


def _api(
    settings: Settings, key: KeyProvider, client: Client, db: Database, port: int, ui: str
) -> AbstractAsyncContextManager[str]:
    """The stageline server of the dev stack, on the worker's client and database."""
    from server.app import create_app
    from server.serve import running

    async def same_client() -> Client:
        return client

    app = create_app(settings, key=key, connect=same_client, db=db, temporal_ui=ui)
    return running(app, "127.0.0.1", port)


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=7233, show_default=True)
@click.option("--ui-port", type=click.IntRange(1, 65535), default=8233, show_default=True)
@click.option(
    "--demo/--no-demo",
    "with_demo",
    default=False,
    show_default=True,
    help="Set up a demo workspace and start a promotion into dev.",
)
@click.option(
    "--demo-port",
    type=click.IntRange(1, 65535),
    default=8299,
    show_default=True,
    help="Where the demo's deploy target listens.",
)
@click.option(
    "--server-port",
    type=click.IntRange(1, 65535),
    default=8480,
    show_default=True,
    help="Where the stageline server (API, codec routes) listens.",
)
@_unsandboxed_option
def dev(
    port: int,
    ui_port: int,
    with_demo: bool,
    demo_port: int,
    server_port: int,
    allow_unsandboxed_steps: bool,
) -> None:
    """Run the embedded stack: Temporal dev server + UI, worker, stageline server, SQLite."""
    _logging()
    base = _opt_out(Settings.from_env(), allow_unsandboxed_steps)
    # Any free port when that one is taken (a second stack), as for the codec server; chosen
    # now, so the links in notifications point at this stack's console.
    server_port = free_port_or_any(server_port)
    update: dict[str, object] = {"temporal_address": f"127.0.0.1:{port}"}
    if not os.environ.get("STAGELINE_CONSOLE_URL"):
        update["console_url"] = f"http://127.0.0.1:{server_port}"
    settings = base.model_copy(update=update)
    key = _dev_key(settings)
    # Before anything starts: without a working step sandbox (or the opt-out), refuse.
    box = sandbox.prepare(settings)

    async def main() -> None:
        db = Database(settings.database_url)
        await db.migrate()
        try:
            # Before the server: the UI is started with the codec server's address.
            payload_codec = EncryptionCodec(key, load_previous_keys(settings))
            # Next to the UI, so the address is the same each time (the README's temporal
            # examples use it); any free port when that one is taken, e.g. by a second stack.
            codec_port = ui_port + 1 if ui_port < 65535 and port_free(ui_port + 1) else 0
            with serve_codec(payload_codec, dev_ui_origins(ui_port), codec_port) as codec:
                async with dev_server(settings, port, ui_port, key, codec.url) as client:
                    await ensure_search_attributes(client, settings.temporal_namespace)
                    ui = f"http://127.0.0.1:{ui_port}"
                    async with (
                        build_worker(client, settings, db, key, step_sandbox=box),
                        _api(settings, key, client, db, server_port, ui) as api,
                    ):
                        stack = _Addresses(api, ui, port, codec.url)
                        if with_demo:
                            with demo.receiver(demo_port) as url:
                                await demo.ensure_workspace(db, settings, key, url)
                                users = await demo.ensure_users(db, settings, key)
                                click.echo(_stack_lines(stack, settings, users), err=True)
                                await _run_demo(client, settings, stack)
                        else:
                            click.echo(_stack_lines(stack, settings, None), err=True)
                            click.echo(
                                "Try: export TEMPORAL_ADDRESS=127.0.0.1:"
                                f"{port} STAGELINE_HOME={settings.home}; stageline env list\n"
                                "Stop with Ctrl-C.",
                                err=True,
                            )
                            await asyncio.Event().wait()
        finally:
            await db.close()
            click.echo("stopped: worker, Temporal dev server, codec server", err=True)

    _serve(main)


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8480, show_default=True)
@click.option(
    "--ui-origin",
    "origins",
    multiple=True,
    metavar="URL",
    help="A Temporal UI origin allowed to call the codec routes (repeatable).",
)
@click.option(
    "--temporal-ui",
    metavar="URL",
    default=None,
    help="The Temporal UI the console links each run to (default: the first --ui-origin).",
)
def server(host: str, port: int, origins: tuple[str, ...], temporal_ui: str | None) -> None:
    """Run the stageline server: the JSON API (/api/v1), its OpenAPI document and the codec
    routes (/codec). It alone holds the master key and the database; people and CI reach it
    with 'stageline login' or STAGELINE_URL + STAGELINE_TOKEN."""
    from server.app import check_start, create_app
    from server.serve import serve

    _logging()
    settings = Settings.from_env()
    key = load_master_key(settings)  # refuse to start without a key, before listening
    asyncio.run(check_start(settings, key))
    allowed = tuple(ui_origin(o) for o in origins)
    ui = temporal_ui.rstrip("/") if temporal_ui else (allowed[0] if allowed else None)
    app = create_app(settings, key=key, ui_origins=allowed, temporal_ui=ui)
    click.echo(f"stageline server: http://{host}:{port}/api/v1 (state: {settings.home})", err=True)
    asyncio.run(serve(app, host, port))  # until SIGINT or SIGTERM; then exit 0


@click.command("codec-server")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8081,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free port).",
)
@click.option(
    "--ui-origin",
    "origins",
    multiple=True,
    metavar="URL",
    help="Origin of the Temporal UI that may call it, e.g. https://cloud.temporal.io "
    "(repeatable; default: the local dev UI on port 8233).",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path),
    default=None,
    metavar="PATH",
    help="Require 'Authorization: Bearer <token>' with the token in this file "
    "(default: $STAGELINE_CODEC_TOKEN_FILE; without either, anyone on this machine may call it).",
)
def codec_server(port: int, origins: tuple[str, ...], token_file: Path | None) -> None:
    """Decode stageline's encrypted payloads for the Temporal UI and the temporal CLI.

    Set the UI's codec endpoint (or `temporal --codec-endpoint`) to the printed address. It
    needs the master key, and listens on 127.0.0.1 only.
    """
    _logging()
    settings = Settings.from_env()
    key = load_master_key(settings)
    allowed = [ui_origin(o) for o in origins] or dev_ui_origins(8233)
    token_file = token_file or settings.codec_token_file
    token = read_token_file(token_file) if token_file else None
    access = (
        f"requires the bearer token in {token_file}"
        if token_file
        else "open to anyone on this machine (no --token-file; see README Security)"
    )

    async def main() -> None:
        codec = EncryptionCodec(key, load_previous_keys(settings))
        with serve_codec(codec, allowed, port, token) as server:
            click.echo(
                f"codec server: {server.url} (master key {key.key_id}); UI origins: "
                f"{', '.join(allowed)}; {access}\nStop with Ctrl-C.",
                err=True,
            )
            await asyncio.Event().wait()

    _serve(main)


@dataclass(frozen=True)
class _Addresses:
    """Where the dev stack's parts listen."""

    server: str  # the stageline server: API, codec routes, the console at its root
    ui: str  # the Temporal UI
    port: int  # Temporal's frontend
    codec: str  # the codec server the Temporal UI decodes payloads through

    @property
    def console(self) -> str:
        return f"{self.server}/"


_INDENT = " " * 14  # under the values of "Console:     " and the lines after it


def _console_lines(stack: _Addresses, settings: Settings, users: list[demo.DemoUser] | None) -> str:
    """The console's address and, with the demo, who can log in to it."""
    if users is None:
        return (
            f"Console:      {stack.console}   (log in as a user of this workspace; add one with\n"
            f"{_INDENT}stageline user add NAME --role '*:admin', or run with --demo)"
        )
    width = max(len(u.name) for u in users)
    lines = [
        f"Console:      {stack.console}   (demo users of this dev stack only; passwords "
        f"kept in {demo.users_file(settings)})"
    ]
    for user in users:
        password = user.password or f"(password unknown: {demo.USERS_FILE} was deleted)"
        lines.append(f"{_INDENT}{user.name:<{width}} / {password}   {user.does}")
    return "\n".join(lines)


def _stack_lines(stack: _Addresses, settings: Settings, users: list[demo.DemoUser] | None) -> str:
    """What `stageline dev` prints once all of it runs: the console first."""
    return (
        f"\n{_console_lines(stack, settings, users)}\n"
        f"Server:       {stack.server} (STAGELINE_URL for the CLI in remote mode)\n"
        f"Temporal UI:  {stack.ui}\nTemporal:     127.0.0.1:{stack.port}\n"
        f"Codec:        {stack.codec} (the UI decodes payloads through it; "
        "open to anyone on this machine, see README Security)\n"
        f"State:        {settings.home}\n"
    )


def _demo_hint(stack: _Addresses, settings: Settings) -> str:
    production = demo.promotion_id("production")
    return (
        f"Demo: promoting {demo.APP}@{demo.VERSION} to dev, then staging, then production, "
        f"where it waits for {demo.REVIEWER}'s approval.\n"
        f"  Approve it in the console: {stack.console}runs/{production}\n"
        f"    (log in as {demo.REVIEWER} with the password above)\n"
        "  Or in another terminal (same directory):\n"
        f"    export STAGELINE_URL={stack.server}\n"
        f"    stageline login {demo.REVIEWER}                      # asks her password\n"
        f"    stageline approve {production}\n"
        "    stageline status\n"
        f"  Watch the workflows in the Temporal UI: {stack.ui}/namespaces/"
        f"{settings.temporal_namespace}/workflows\n"
        "Stop with Ctrl-C."
    )


async def _demo_promotions(client: Client, settings: Settings, stack: _Addresses) -> None:
    def say(text: str) -> None:
        click.echo(f"Demo: {text}", err=True)

    def awaiting(workflow_id: str) -> None:
        say(
            f"{workflow_id} waits for {demo.REVIEWER}'s approval: {stack.console}runs/{workflow_id}"
        )

    try:
        result = await demo.promote_through(client, settings, say, awaiting)
    except Exception as exc:  # the demo stops; the stack serves on
        say(f"stopped: {exc}")
        return
    if result.noop:
        say(
            f"nothing is left to approve; to see it again, stop, delete {settings.home} and "
            "run it again"
        )


async def _run_demo(client: Client, settings: Settings, stack: _Addresses) -> None:
    """The demo's promotions in the background, while the stack serves, until Ctrl-C."""
    click.echo(_demo_hint(stack, settings), err=True)
    promotions = asyncio.create_task(_demo_promotions(client, settings, stack))
    try:
        await asyncio.Event().wait()
    finally:
        promotions.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await promotions


COMMANDS = [worker, dev, server, codec_server]
