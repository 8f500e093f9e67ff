"""A real `stageline server` process on 127.0.0.1, and CLIs that reach it the way people and
CI jobs do: from a directory of their own with STAGELINE_URL and a token, and no master key
and no database."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import KEY_TEXT, STAGELINE, Cli, clean_environ
from tests.stack import Stack, stack

PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Served:
    """A running server, the machine's embedded CLI (for the first admin) and its log."""

    url: str
    machine: Cli
    log: Path
    root: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def remote(self, token: str | None = None, name: str = "client") -> Cli:
        """A CLI on another machine: STAGELINE_URL, a token, a home with nothing in it."""
        home = self.root / f"remote-{name}"
        home.mkdir(exist_ok=True)
        env = clean_environ()
        env.update(STAGELINE_HOME=str(home), STAGELINE_URL=self.url)
        if token is not None:
            env["STAGELINE_TOKEN"] = token
        return Cli(env)

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def login(self, name: str) -> str:
        with self.http() as client:
            answer = client.post("/api/v1/login", json={"name": name, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token

    def add_user(self, name: str, *roles: str) -> str:
        """A person added on the server's machine; returns a session token of theirs."""
        args = [a for role in roles for a in ("--role", role)]
        self.machine.ok("user", "add", name, *args, input=PASSWORD + "\n")
        return self.login(name)

    def ci_token(self, name: str, *args: str) -> str:
        out = self.machine.ok("token", "create", name, *args, "--json").out
        token: str = json.loads(out)["token"]
        self.tokens[name] = token
        return token


@contextmanager
def server_process(machine: Cli, root: Path, *args: str) -> Iterator[Served]:
    port = free_port()
    log = root / f"server-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [STAGELINE, "server", "--port", str(port), *args],
            env=machine.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=machine.env["STAGELINE_HOME"],
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited: {log.read_text()}")
            try:
                if httpx.get(f"{url}/api/v1/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not start: {log.read_text()}")
            time.sleep(0.1)
        yield Served(url=url, machine=machine, log=log, root=root)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def workspace(machine: Cli) -> None:
    machine.ok("env", "create", "dev")
    machine.ok("env", "create", "production", "--after", "dev")
    machine.ok("app", "create", "web", "--env", "dev", "--env", "production")


@pytest.fixture
def served_alone(tmp_path: Path) -> Iterator[Served]:
    """A server on a SQLite file, with no Temporal behind it (for what needs none)."""
    with alone(tmp_path) as served:
        yield served


@contextmanager
def alone(tmp_path: Path) -> Iterator[Served]:
    """A server on a SQLite file in `tmp_path`, with no Temporal behind it."""
    machine_home = tmp_path / "machine"
    machine_home.mkdir()
    env = clean_environ()
    env.update(
        STAGELINE_HOME=str(machine_home),
        STAGELINE_MASTER_KEY=KEY_TEXT,
        STAGELINE_USER="root",
        TEMPORAL_ADDRESS="127.0.0.1:1",
    )
    machine = Cli(env)
    workspace(machine)
    with server_process(machine, tmp_path) as served:
        yield served


@pytest.fixture
async def with_temporal(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    async with stack(temporal, tmp_path / "machine") as s:
        yield s


@pytest.fixture
def served(with_temporal: Stack, tmp_path: Path) -> Iterator[Served]:
    """A server in front of a real Temporal dev server and a worker."""
    machine = with_temporal.cli()
    machine.env["STAGELINE_USER"] = "root"
    workspace(machine)
    with server_process(machine, tmp_path) as served:
        yield served


def no_secret_text(served: Served, *texts: str) -> None:
    """None of `texts` (tokens, passwords) is in the server's log or the database file."""
    log = served.log.read_text()
    database = b"".join(
        p.read_bytes() for p in Path(served.machine.env["STAGELINE_HOME"]).glob("stageline.db*")
    )
    for text in texts:
        assert text not in log
        assert text.encode() not in database
