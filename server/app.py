"""The stageline server: one process that holds the master key and the database, knows who
calls (server.auth) and serves the JSON API under /api/v1 (the operations of
server.operations, and the promotions of server.runs), its OpenAPI document at
/api/v1/openapi.json, and the codec routes under /codec.

Errors are JSON, `{"error": {"message": ..., "exit_code": ...}}`: the message is what the CLI
prints, the exit code what it exits with, so a command gives the same answer embedded or
remote.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException
from temporalio.client import Client

from models.errors import ExitCode, StagelineError, describe
from models.identity import Action, Forbidden, Identity, IssuedToken
from models.names import InvalidName
from models.settings import Settings
from models.views import AuditEntry, StatusView
from server import auth
from server.operations import EVERY, OPERATIONS, Operation
from services import signatures
from services.principals import NotAuthenticated
from services.unit import Units
from store.database import Database
from vault.keys import KeyProvider
from vault.secret_value import SecretValue

API = "/api/v1"
# For the OpenAPI document only (it shows the bearer scheme); server.auth reads the header.
BearerHeader = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]
SERVER_KEY_FILE = "server.ed25519"


@dataclass
class Server:
    """What every request shares: units of work, the Temporal client (made on first use),
    the server's signing key and the login limiter."""

    settings: Settings
    units: Units
    signing_key: Ed25519PrivateKey
    connect: Callable[[], Awaitable[Client]]
    limiter: auth.LoginLimiter = field(default_factory=auth.LoginLimiter)
    _client: Client | None = None

    async def client(self) -> Client:
        if self._client is None:
            self._client = await self.connect()
        return self._client

    async def identity(self, request: Request) -> Identity:
        return await auth.authenticate(self.units, request)


async def caller(request: Request, _: BearerHeader = None) -> Identity:
    """The authenticated principal: a dependency of every route, so a request without valid
    credentials gets 401 before its body is even looked at."""
    server: Server = request.app.state.server
    return await server.identity(request)


Caller = Annotated[Identity, Depends(caller)]


async def prepare(units: Units, signing_key: Ed25519PrivateKey) -> None:
    """Before the first request: the schema at its head, and the server's public key
    registered (the same key again changes nothing; a new one revokes the old)."""
    await units.db.migrate()
    public = signatures.public_key_text(signatures.public_key_of(signing_key))
    async with units.write() as w:
        await w.reviewers.register_server_key(public, actor="stageline server")


async def check_start(settings: Settings, key: KeyProvider) -> None:
    """What `stageline server` checks before it listens, so a mistake (a revoked server key,
    a database it cannot reach) is one line and an exit code, not a failed startup."""
    units = Units(Database(settings.database_url), settings, key)
    try:
        await prepare(units, server_key(settings))
    finally:
        await units.db.close()


def server_key(settings: Settings) -> Ed25519PrivateKey:
    """The server's Ed25519 key, made on first start (mode 0600 beside the database)."""
    path = settings.home / "keys" / SERVER_KEY_FILE
    if path.exists():
        return signatures.read_private_key(path)
    return signatures.write_private_key(path)


def status_of(exc: StagelineError) -> int:
    if isinstance(exc, TooManyLogins):
        return 429
    if isinstance(exc, NotAuthenticated):
        return 401
    if isinstance(exc, Forbidden | auth.CrossSiteRefused):
        return 403
    return {
        ExitCode.BAD_INPUT: 400,
        ExitCode.REFUSED: 409,
        ExitCode.UNAVAILABLE: 503,
        ExitCode.TIMED_OUT: 504,
    }.get(exc.exit_code, 500)


def error_response(status: int, message: str, exit_code: int) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"message": message, "exit_code": int(exit_code)}}, status, headers=headers
    )


def _narrowed(identity: Identity, result: Any) -> Any:
    """A workspace-wide answer (status or audit without --env) keeps only what the
    identity may view."""

    def visible(environment: str | None, app: str | None) -> bool:
        if environment is None:  # workspace-wide entries: for those who view everything
            return auth.may(identity, Action.VIEW, EVERY, app)
        return auth.may(identity, Action.VIEW, environment, app)

    if isinstance(result, StatusView):
        result.environments = [e for e in result.environments if visible(e, None)]
        result.cells = [c for c in result.cells if visible(c.environment, c.app)]
        result.in_progress = [p for p in result.in_progress if visible(p.environment, p.app)]
    elif isinstance(result, list) and all(isinstance(e, AuditEntry) for e in result):
        result = [e for e in result if visible(e.environment, e.app)]
    return result


async def invoke(
    server: Server, identity: Identity, op: Operation, given: BaseModel | dict[str, Any]
) -> Any:
    """One operation for one principal, as its route and the console both call it: the role
    checks (a refusal audited), the call in a unit of work as that principal, the answer
    narrowed to what the principal may view, and what the CLI does next to it embedded."""
    if isinstance(given, dict):
        given = op.request_model().model_validate(given)
    arguments = {name: getattr(given, name) for name in op.parameters()}
    app = arguments.get(op.app) if op.app else None
    checks = [(c.action, auth.environments_of(c, arguments)) for c in op.checks]
    await auth.authorize(
        server.units, identity, op.name, checks, app if isinstance(app, str) else None
    )
    for name in op.secret_parameters():
        arguments[name] = SecretValue(arguments[name])
    if op.takes_actor:
        arguments["actor"] = identity.name
    opened = server.units.write() if op.write else server.units.read()
    async with opened as w:
        result = await getattr(getattr(w, op.service), op.method)(**arguments)
    # Asked of no one environment (or no app, by a token scoped to apps): narrowed.
    if any(where is None for _, where in checks) or (identity.apps and app is None):
        result = _narrowed(identity, result)
    await _after(server, op, arguments, result)
    return result


def _operation_route(server: Server, op: Operation) -> Callable[..., Awaitable[Response]]:
    model = op.request_model()

    async def endpoint(identity: Caller, body: Any = None) -> Response:
        result = await invoke(server, identity, op, body if body is not None else model())
        return JSONResponse(op.result_adapter().dump_python(result, mode="json"))

    # FastAPI reads the body's model from the signature: the request model of this call.
    parameters = [
        inspect.Parameter("identity", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Caller)
    ]
    if op.parameters():
        required = any(default is ... for _, default in op.parameters().values())
        parameters.append(
            inspect.Parameter(
                "body",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=model if required else model | None,
                default=inspect.Parameter.empty if required else None,
            )
        )
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return endpoint


async def _after(server: Server, op: Operation, arguments: dict[str, Any], result: Any) -> None:
    """What the CLI does next to a call embedded, done here for remote callers."""
    from worker.runs import fill_live, nudge_frozen

    if op.name in ("environments.freeze", "environments.unfreeze"):
        await nudge_frozen(server.units, arguments["name"], server.client)
    elif op.name == "views.status" and isinstance(result, StatusView):
        await fill_live(server.client, result)


class LoginRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024, repr=False)
    # A browser asks for a cookie session; the CLI keeps the token itself.
    cookie: bool = False


def create_app(
    settings: Settings,
    *,
    key: KeyProvider | None = None,
    connect: Callable[[], Awaitable[Client]] | None = None,
    ui_origins: tuple[str, ...] = (),
    db: Database | None = None,
    temporal_ui: str | None = None,
) -> FastAPI:
    """The server's ASGI application. `connect` makes the Temporal client (default: from
    settings, with the codec of the master key); `db`: a database to share (the dev stack's
    worker's), else its own; `temporal_ui`: the Temporal UI the console links runs to."""
    from server.codec import mount_codec
    from server.console import add_console_routes
    from server.runs import add_run_routes
    from worker.client import connect as temporal_connect

    units = Units(db or Database(settings.database_url), settings, key)

    async def default_connect() -> Client:
        return await temporal_connect(settings, units.keys.get())

    server = Server(settings, units, server_key(settings), connect or default_connect)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare(units, server.signing_key)
        yield
        if db is None:
            await units.db.close()

    app = FastAPI(
        title="stageline",
        version="1",
        description="Release promotion through environments. Every call needs a bearer token "
        "(a CI token, or a session token from POST /api/v1/login).",
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.server = server

    _error_handlers(app)
    for op in OPERATIONS:
        app.add_api_route(
            f"{API}{op.path}",
            _operation_route(server, op),
            methods=["POST"],
            name=op.name,
            summary=(op.function().__doc__ or op.name).strip().splitlines()[0],
            tags=[op.service],
            response_model=None,
        )

    _session_routes(app, server)
    add_run_routes(app, server)
    mount_codec(app, server, ui_origins)
    add_console_routes(app, temporal_ui)
    return app


def _respond(request: Request, status: int, message: str, exit_code: int) -> Response:
    """An error as JSON for the API, as a page for the console."""
    console_error = getattr(request.app.state, "console_error", None)
    if console_error is not None and not request.url.path.startswith((f"{API}/", "/codec")):
        page: Response = console_error(request, status, message)
        return page
    return error_response(status, message, exit_code)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StagelineError)
    async def stageline_error(request: Request, exc: StagelineError) -> Response:
        response = _respond(request, status_of(exc), exc.message, exc.exit_code)
        if isinstance(exc, TooManyLogins):
            response.headers["Retry-After"] = str(exc.wait)
        return response

    @app.exception_handler(InvalidName)
    async def invalid_name(request: Request, exc: InvalidName) -> Response:
        return _respond(request, 400, str(exc), ExitCode.BAD_INPUT)

    @app.exception_handler(ValidationError)
    async def invalid_value(request: Request, exc: ValidationError) -> Response:
        return _respond(request, 400, describe(exc), ExitCode.BAD_INPUT)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'the body'}: {e['msg']}"
            for e in exc.errors()
        )
        return error_response(400, f"the request is not valid: {problems}", ExitCode.BAD_INPUT)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _respond(request, exc.status_code, str(exc.detail), ExitCode.BAD_INPUT)


class TooManyLogins(StagelineError):
    """Over the login limit (429, with Retry-After)."""

    exit_code = ExitCode.REFUSED

    def __init__(self, wait: int) -> None:
        super().__init__(f"too many failed logins; try again in {wait} s")
        self.wait = wait


async def log_in(server: Server, request: Request, name: str, password: str) -> IssuedToken:
    """A person's session, within the login limit per name and per client address."""
    address = request.client.host if request.client else "unknown"
    keys = (f"name:{name.lower()}", f"address:{address}")
    wait = server.limiter.retry_after(keys)
    if wait is not None:
        raise TooManyLogins(wait)
    try:
        async with server.units.write() as w:
            return await w.principals.login(name, password)
    except NotAuthenticated:
        server.limiter.failed(keys)
        raise


def set_session_cookies(response: Response, request: Request, issued: IssuedToken) -> None:
    """The browser's session: the token HttpOnly, and the CSRF value its pages send back."""
    secure = request.url.scheme == "https"
    for cookie, value, script_reads in (
        (auth.SESSION_COOKIE, issued.token, False),
        (auth.CSRF_COOKIE, auth.csrf_token(issued.token), True),
    ):
        response.set_cookie(
            cookie,
            value,
            httponly=not script_reads,
            samesite="strict",
            secure=secure,
            expires=issued.expires_at,
            path="/",
        )


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    response.delete_cookie(auth.CSRF_COOKIE, path="/")


def _session_routes(app: FastAPI, server: Server) -> None:
    @app.post(f"{API}/login", tags=["session"])
    async def login(request: Request, body: LoginRequest) -> Response:
        """A session token for a person (12 hours); with `cookie`, set as an HttpOnly
        cookie instead, with the CSRF token the page sends back."""
        issued = await log_in(server, request, body.name, body.password)
        if not body.cookie:
            return JSONResponse(issued.model_dump(mode="json"))
        response = JSONResponse(
            {
                "name": issued.name,
                "expires_at": issued.expires_at.isoformat(),
                "csrf_token": auth.csrf_token(issued.token),
            }
        )
        set_session_cookies(response, request, issued)
        return response

    @app.post(f"{API}/logout", tags=["session"], status_code=204)
    async def logout(request: Request, identity: Caller) -> Response:
        """End the caller's session now (its token stops working), and clear its cookies."""
        token = auth.bearer_of(request)
        assert token is not None  # the caller was authenticated with it
        async with server.units.write() as w:
            await w.principals.logout(token)
        response = Response(status_code=204)
        clear_session_cookies(response)
        return response

    @app.get(f"{API}/whoami", tags=["session"], response_model=Identity)
    async def whoami(identity: Caller) -> Identity:
        """Who the token stands for, with its roles and scope."""
        return identity
