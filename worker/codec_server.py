"""A codec server: lets the Temporal web UI (and `temporal --codec-endpoint`) show stageline's
encrypted payloads decoded, without the UI or the Temporal server ever holding the key.

It speaks the Temporal codec server protocol as Temporal UI 2.54 and the `temporal` CLI call
it: `POST /encode` and `POST /decode` (the UI adds `?preserveStorageRefs=true`), each taking
and returning a `temporal.api.common.v1.Payloads` message in protobuf's JSON form,
`{"payloads": [{"metadata": {name: base64}, "data": base64}]}`; `{}` is no payloads.

Who may call it: `serve_codec` listens on 127.0.0.1 only and answers only Host names of that
address (a DNS rebinding page cannot reach it); a browser may call it only from the configured
UI origins (CORS), a request from any other origin is refused outright; and with a token,
/encode and /decode require `Authorization: Bearer <token>`.

`codec_app` builds the routes as an ASGI app, so a server of stageline's own can mount them.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from starlette.exceptions import HTTPException
from starlette.middleware.base import RequestResponseEndpoint
from temporalio.api.common.v1 import Payload, Payloads

from models.errors import BadInput, ConfigurationError, Unavailable
from vault.codec import EncryptionCodec, PayloadDecryptionError

log = logging.getLogger("stageline.codec")
HOST = "127.0.0.1"
MAX_BODY = 64 * 1024 * 1024  # far above Temporal's own payload limits
ALLOW_METHODS = "POST, OPTIONS"
# What UI 2.54 sends: its own two headers and, with its "pass access token" setting, the
# signed-in user's token (and Authorization-Extras when its identity provider gives one).
ALLOW_HEADERS = "Content-Type, X-Namespace, Authorization, Authorization-Extras"
FORMAT = '{"payloads": [{"metadata": {"<name>": "<base64>"}, "data": "<base64>"}]}'
STARTUP_TIMEOUT = 10.0
# protobuf's JSON parser skips characters outside the base64 alphabet instead of refusing them
# (Go's, in the temporal CLI, refuses them), so a garbled value would silently become bytes.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")
# RFC 6750's b64token: what fits in `Authorization: Bearer ...` as it is.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
MIN_TOKEN_LENGTH = 16


class BadRequest(Exception):
    """The request body is not a Payloads message in JSON; the message says where."""


class _TooLarge(Exception):
    """The request body is over MAX_BODY."""


def ui_origin(text: str) -> str:
    """An origin the UI is served from, as a browser sends it: scheme://host[:port]."""
    parts = urlsplit(text.strip())
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise BadInput(
            f"{text!r} is not a UI origin; give scheme, host and port only, e.g. "
            "http://localhost:8233 or https://cloud.temporal.io"
        )
    return f"{parts.scheme}://{parts.netloc.lower()}"


def dev_ui_origins(ui_port: int) -> list[str]:
    return [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"]


def loopback_hosts(port: int) -> frozenset[str]:
    """The Host headers a browser or the temporal CLI send to this server on `port`."""
    return frozenset({f"{HOST}:{port}", f"localhost:{port}"})


def read_token_file(path: Path) -> str:
    """The bearer token the codec server requires, from a file of its own (one line)."""
    how = f"write one with e.g. 'openssl rand -hex 32 > {path}'"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigurationError(f"the codec token file {path} does not exist; {how}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"the codec token file {path} is not text; {how}") from None
    except OSError as exc:
        raise ConfigurationError(
            f"the codec token file {path} cannot be read ({exc.strerror}); check its path and "
            "permissions"
        ) from None
    if not token:
        raise ConfigurationError(f"the codec token file {path} is empty; {how}")
    if not _TOKEN.fullmatch(token) or len(token) < MIN_TOKEN_LENGTH:
        raise ConfigurationError(
            f"the codec token in {path} must be at least {MIN_TOKEN_LENGTH} characters of "
            f"letters, digits and -._~+/ on one line (it is sent as a bearer token); {how}"
        )
    return token


def parse_payloads(body: bytes) -> list[Payload]:
    """The payloads of a request body, parsed by protobuf (the format's own library)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON ({exc}); expected {FORMAT}") from None
    if not isinstance(document, dict):
        raise BadRequest(f"the body must be a JSON object: {FORMAT}")
    try:
        message = json_format.ParseDict(document, Payloads())
    except json_format.ParseError as exc:
        raise BadRequest(f"the body is not a Payloads message ({exc}); expected {FORMAT}") from None
    for where, value in _base64_fields(document):
        if isinstance(value, str) and not _BASE64.fullmatch(value):
            raise BadRequest(f"{where} is not valid base64; expected {FORMAT}")
    return list(message.payloads)


def _base64_fields(document: dict[str, Any]) -> Iterator[tuple[str, object]]:
    # Only called once protobuf accepted the shape: a list of objects, metadata an object.
    for i, item in enumerate(document.get("payloads") or []):
        yield f"payloads[{i}].data", item.get("data")
        for name, value in (item.get("metadata") or {}).items():
            yield f"payloads[{i}].metadata.{name}", value


def render_payloads(payloads: Sequence[Payload]) -> bytes:
    document = json_format.MessageToDict(Payloads(payloads=payloads))
    # protobuf leaves an empty list out; `{"payloads": []}` reads the same to the CLI and
    # is what the UI expects to find.
    document.setdefault("payloads", [])
    return json.dumps(document).encode()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _bearer_matches(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    # compare_digest: the time taken says nothing about how much of the token was right.
    matches = hmac.compare_digest(given.strip().encode(), token.encode())
    return scheme.lower() == "bearer" and matches


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _TooLarge
    return bytes(body)


def codec_app(
    codec: EncryptionCodec,
    origins: Sequence[str],
    token: str | None = None,
    hosts: Collection[str] | None = None,
) -> FastAPI:
    """The codec routes, with their checks: Host, Origin (CORS), and the token if given.

    `hosts`: the Host headers to answer; by default the loopback names of the port a request
    arrived on (right for `serve_codec`; a server behind a proxy names its own).
    """
    allowed = frozenset(ui_origin(o) for o in origins)
    app = FastAPI(title="stageline codec server", openapi_url=None, docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: RequestResponseEndpoint) -> Response:
        refused = (
            _host_refusal(request, hosts)
            or _origin_refusal(request, allowed)
            or _token_refusal(request, token)
        )
        response = refused or await call_next(request)
        _add_cors_headers(response, request.headers.get("origin"), allowed)
        return response

    @app.post("/encode")
    async def encode(request: Request) -> Response:
        return await _convert(request, codec.encrypt)

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return await _convert(request, codec.decrypt)

    @app.options("/encode")
    @app.options("/decode")
    async def preflight() -> Response:
        return Response(
            status_code=204, headers={"Allow": ALLOW_METHODS, "Access-Control-Max-Age": "600"}
        )

    @app.exception_handler(HTTPException)
    async def no_such_route(request: Request, exc: HTTPException) -> Response:
        return _error(
            exc.status_code,
            f"{request.method} {request.url.path} is not served; use POST /encode or POST /decode",
            dict(exc.headers or {}),
        )

    return app


def _host_refusal(request: Request, hosts: Collection[str] | None) -> Response | None:
    """403 unless the Host header is one this server answers (no DNS rebinding)."""
    host = request.headers.get("host", "").lower()
    server = request.scope.get("server")
    expected = hosts if hosts is not None else loopback_hosts(server[1] if server else 0)
    if host not in expected:
        return _error(403, f"unexpected Host {host!r}; call {' or '.join(sorted(expected))}")
    return None


def _origin_refusal(request: Request, allowed: frozenset[str]) -> Response | None:
    """403 for a browser calling from a page outside the UI origins."""
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() not in allowed:
        return _error(
            403,
            f"origin {origin!r} is not allowed; allowed: {', '.join(sorted(allowed))} "
            "(set them with --ui-origin)",
        )
    return None


def _token_refusal(request: Request, token: str | None) -> Response | None:
    """401 without the bearer token, when the server has one."""
    # Preflights never carry credentials (browsers send none), so they never need them.
    authorization = request.headers.get("authorization")
    if (
        token is not None
        and request.method != "OPTIONS"
        and not _bearer_matches(authorization, token)
    ):
        return _error(
            401,
            "this codec server requires 'Authorization: Bearer <token>' with the token it "
            "was started with (temporal: --codec-auth 'Bearer <token>')",
            {"WWW-Authenticate": 'Bearer realm="stageline codec"'},
        )
    return None


def _add_cors_headers(response: Response, origin: str | None, allowed: frozenset[str]) -> None:
    # A refused origin gets no CORS headers: the page that sent it learns nothing.
    if origin is not None and origin.lower() in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        # The UI may send credentials (its "include cross-origin credentials" setting).
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response.headers["Vary"] = "Origin"


async def _convert(request: Request, each: Callable[[Payload], Payload]) -> Response:
    """Apply `each` to every payload of the body; a client error names what is wrong."""
    try:
        payloads = parse_payloads(await _read_body(request))
        result = [each(p) for p in payloads]
    except _TooLarge:
        return _error(413, f"the body is larger than {MAX_BODY} bytes")
    except BadRequest as exc:
        return _error(400, str(exc))
    except PayloadDecryptionError as exc:
        # Well-formed, but this key cannot open it: the message names the key it needs.
        return _error(422, exc.message)
    return Response(render_payloads(result), media_type="application/json")


@dataclass(frozen=True)
class CodecServer:
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (port 0: a free one), or a message naming the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
        sock.listen()
    except OSError as exc:
        sock.close()
        raise Unavailable(
            f"the codec server cannot listen on {HOST}:{port} ({exc.strerror}); pick "
            "another port with --port"
        ) from None
    return sock


@contextmanager
def serve_codec(
    codec: EncryptionCodec, origins: Sequence[str], port: int = 0, token: str | None = None
) -> Iterator[CodecServer]:
    """Serve on 127.0.0.1 in a background thread (its own event loop, so it answers even
    while the caller's loop is busy or blocked) until the block ends."""
    sock = listen(port)
    server = uvicorn.Server(
        uvicorn.Config(
            codec_app(codec, origins, token),
            log_config=None,  # leave the process's logging as the CLI set it up
            log_level="warning",
            access_log=False,
            server_header=False,
            lifespan="off",
            loop="asyncio",
            http="h11",
            timeout_graceful_shutdown=2,  # a browser's kept-alive connection must not hold us
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="codec-server", daemon=True
    )
    thread.start()
    running = CodecServer(int(sock.getsockname()[1]))
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise Unavailable(f"the codec server on {running.url} did not start")
            time.sleep(0.01)
        log.debug("codec server for the Temporal UI at %s", running.url)
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT)
        sock.close()
