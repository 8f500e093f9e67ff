"""Remote mode: with STAGELINE_URL set, every command talks to a stageline server instead of
opening the database and the master key itself.

A command's code does not change: `run(work)` hands it RemoteUnits, whose units of work send
each service call (`w.variables.set_variable(...)`) to the server's route for it (see
server.operations), and decode the answer into the same model. Promotions, trains and
rollbacks start and are followed through the server's run routes (RemoteRun). The server
answers errors with the message and exit code the command would have had embedded.

The token is STAGELINE_TOKEN, else the session `stageline login` stored in
$STAGELINE_HOME/session.json (mode 0600) for that server.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from models.errors import BadInput, ConfigurationError, ExitCode, StagelineError, Unavailable
from models.promotion import PromotionStatus, TrainStatus
from models.review import DecisionKind, DecisionOutcome
from models.settings import Settings

M = TypeVar("M", bound=BaseModel)
SESSION_FILE = "session.json"
API = "/api/v1"
# A long-polled result may take its `wait` and then some.
TIMEOUT = httpx.Timeout(30.0, read=90.0)


class RemoteError(StagelineError):
    """An error the server answered with: its message and exit code, as they are."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        known = {int(code) for code in ExitCode}
        self.exit_code = ExitCode(exit_code) if exit_code in known else ExitCode.FAILED


def server_url() -> str | None:
    url = os.environ.get("STAGELINE_URL", "").strip()
    return url.rstrip("/") or None


def session_file(settings: Settings) -> Path:
    return settings.home / SESSION_FILE


def save_session(settings: Settings, url: str, name: str, token: str, expires: str) -> Path:
    path = session_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = json.dumps({"url": url, "name": name, "token": token, "expires_at": expires})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(data + "\n")
    return path


def stored_token(settings: Settings, url: str) -> str | None:
    """The session token `stageline login` stored for `url`, unless it has expired."""
    try:
        data = json.loads(session_file(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("url") != url:
        return None
    try:
        if datetime.fromisoformat(str(data["expires_at"])) <= datetime.now(UTC):
            return None
    except (KeyError, ValueError):
        return None
    token = data.get("token")
    return token if isinstance(token, str) else None


class Connection:
    """One HTTP client to the server, for the whole command."""

    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self.http = httpx.AsyncClient(base_url=url + API, headers=headers, timeout=TIMEOUT)

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            response = await self.http.request(
                method, path, json=body if method != "GET" else None, params=params
            )
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach the stageline server at {self.url} ({type(exc).__name__}: "
                f"{exc}); check STAGELINE_URL and that 'stageline server' runs there"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.is_success:
            return answer
        error = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            raise RemoteError(error["message"], int(error.get("exit_code", ExitCode.FAILED)))
        raise RemoteError(
            f"the stageline server at {self.url} answered {response.status_code} "
            f"{response.reason_phrase}",
            ExitCode.UNAVAILABLE if response.status_code >= 500 else ExitCode.FAILED,
        )


class RemoteService:
    def __init__(self, connection: Connection, service: str) -> None:
        self._connection = connection
        self._service = service

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        from server.operations import BY_CALL

        op = BY_CALL.get((self._service, method))
        if op is None:
            raise BadInput(
                f"{self._service}.{method} is not available through a stageline server; "
                "run this command on the server's machine (without STAGELINE_URL)"
            )

        async def call(*args: Any, **kwargs: Any) -> Any:
            answer = await self._connection.call("POST", op.path, op.arguments(args, kwargs))
            return op.result_adapter().validate_python(answer)

        return call


class RemoteWork:
    """A unit of work on the server: each call is its own transaction there."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def __getattr__(self, service: str) -> RemoteService:
        return RemoteService(self._connection, service)


class RemoteRun:
    """A promotion, train or rollback on the server, as the CLI follows it."""

    def __init__(self, connection: Connection, run_id: str) -> None:
        self.connection = connection
        self.id = run_id

    async def status(self) -> PromotionStatus | None:
        found = await self.connection.call("GET", f"/runs/{self.id}")
        status = found.get("status")
        return PromotionStatus.model_validate(status) if status is not None else None

    async def train_status(self) -> TrainStatus | None:
        found = await self.connection.call("GET", f"/runs/{self.id}")
        status = found.get("status")
        return TrainStatus.model_validate(status) if status is not None else None

    async def result(self, model: type[M]) -> M:
        while True:
            answer = await self.connection.call(
                "GET", f"/runs/{self.id}/result", params={"wait": 20}
            )
            if answer.get("done"):
                return model.model_validate(answer["result"])
            await asyncio.sleep(0)

    def get_workflow_handle(self, run_id: str) -> RemoteRun:
        """Another run on the same server (a train's stage)."""
        return RemoteRun(self.connection, run_id)


class RemoteUnits:
    """Units of work that are calls to the server (see the module's doc)."""

    remote = True

    def __init__(self, connection: Connection, settings: Settings) -> None:
        self.connection = connection
        self.settings = settings

    @asynccontextmanager
    async def write(self, *, one_statement: bool = False) -> AsyncIterator[Any]:
        yield RemoteWork(self.connection)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Any]:
        yield RemoteWork(self.connection)

    async def start(self, kind: str, body: dict[str, Any]) -> tuple[RemoteRun, bool]:
        path = {"promotion": "/promotions", "train": "/trains", "rollback": "/rollbacks"}[kind]
        started = await self.connection.call("POST", path, body)
        return RemoteRun(self.connection, started["id"]), bool(started["attached"])

    def run(self, run_id: str) -> RemoteRun:
        return RemoteRun(self.connection, run_id)

    async def decide(
        self, run_id: str, kind: DecisionKind, reviewer: str | None, comment: str | None
    ) -> DecisionOutcome:
        answer = await self.connection.call(
            "POST",
            f"/runs/{run_id}/decisions",
            {"kind": kind, "reviewer": reviewer, "comment": comment},
        )
        return DecisionOutcome.model_validate(answer)


def connection(settings: Settings) -> Connection | None:
    """The server connection STAGELINE_URL asks for, or None (embedded mode)."""
    url = server_url()
    if url is None:
        return None
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"STAGELINE_URL {url!r} is not an http:// or https:// address; set it to the "
            "server's address, e.g. https://stageline.example.com"
        )
    token = os.environ.get("STAGELINE_TOKEN", "").strip() or stored_token(settings, url)
    return Connection(url, token)
