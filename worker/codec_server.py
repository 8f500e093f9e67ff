"""A codec server: lets the Temporal web UI (and `temporal --codec-endpoint`) show stageline's
encrypted payloads decoded, without the UI or the Temporal server ever holding the key.

It speaks the Temporal codec server protocol: POST /encode and POST /decode, each taking and
returning {"payloads": [{"metadata": {name: base64}, "data": base64}]}. It listens on
127.0.0.1 only, and a browser may call it only from the configured UI origins (CORS); a
request from any other origin is refused outright, so another web page cannot have a visitor's
browser decode payloads for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from temporalio.api.common.v1 import Payload

from models.errors import BadInput, Unavailable
from vault.codec import EncryptionCodec, PayloadDecryptionError

log = logging.getLogger("stageline.codec")
HOST = "127.0.0.1"
MAX_BODY = 64 * 1024 * 1024  # far above Temporal's own payload limits
ALLOW_METHODS = "POST, OPTIONS"
ALLOW_HEADERS = "Content-Type, X-Namespace"
_FORMAT = '{"payloads": [{"metadata": {"<name>": "<base64>"}, "data": "<base64>"}]}'


class BadRequest(Exception):
    """The request body is not the codec JSON format; the message says where."""


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


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where} is not valid base64") from None


def parse_payloads(body: bytes) -> list[Payload]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON ({exc}); expected {_FORMAT}") from None
    if not isinstance(document, dict) or not isinstance(document.get("payloads"), list):
        raise BadRequest(f"the body must be a JSON object with a list 'payloads': {_FORMAT}")
    payloads = []
    for i, item in enumerate(document["payloads"]):
        if not isinstance(item, dict):
            raise BadRequest(f"payloads[{i}] must be an object with 'metadata' and 'data'")
        metadata = item.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise BadRequest(f"payloads[{i}].metadata must be an object of base64 strings")
        payloads.append(
            Payload(
                metadata={
                    str(k): _b64(v, f"payloads[{i}].metadata.{k}") for k, v in metadata.items()
                },
                data=_b64(item.get("data", ""), f"payloads[{i}].data"),
            )
        )
    return payloads


def render_payloads(payloads: Sequence[Payload]) -> bytes:
    return json.dumps(
        {
            "payloads": [
                {
                    "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                    "data": base64.b64encode(p.data).decode(),
                }
                for p in payloads
            ]
        }
    ).encode()


class CodecServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, codec: EncryptionCodec, origins: Sequence[str], port: int = 0) -> None:
        self.codec = codec
        self.origins = frozenset(ui_origin(o) for o in origins)
        try:
            super().__init__((HOST, port), _Handler)
        except OSError as exc:
            raise Unavailable(
                f"the codec server cannot listen on {HOST}:{port} ({exc.strerror}); pick "
                "another port with --port"
            ) from None
        self.port = int(self.server_address[1])
        # Names a browser or the temporal CLI may use for this server; any other Host is a
        # DNS rebinding attempt (a hostile name resolving to 127.0.0.1).
        self.hosts = frozenset({f"{HOST}:{self.port}", f"localhost:{self.port}"})

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


class _Handler(BaseHTTPRequestHandler):
    server: CodecServer
    server_version = "stageline-codec"

    def do_OPTIONS(self) -> None:
        if self._refused():
            return
        self._send(204, b"", preflight=True)

    def do_POST(self) -> None:
        if self._refused():
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._error(400, "the Content-Length header is not a number")
            return
        if length > MAX_BODY:
            self._error(413, f"the body is larger than {MAX_BODY} bytes")
            return
        body = self.rfile.read(length)
        codec = self.server.codec
        try:
            payloads = parse_payloads(body)
            if self.path == "/decode":
                result = [codec.decrypt(p) for p in payloads]
            else:
                result = [codec.encrypt(p) for p in payloads]
        except BadRequest as exc:
            self._error(400, str(exc))
            return
        except PayloadDecryptionError as exc:
            self._error(422, exc.message)
            return
        self._send(200, render_payloads(result))

    def do_GET(self) -> None:
        self._error(405, "use POST /encode or POST /decode")

    def _refused(self) -> bool:
        """Answer, and return True, when the request must not be served."""
        host = (self.headers.get("Host") or "").lower()
        if host not in self.server.hosts:
            self._error(403, f"unexpected Host {host!r}; call {self.server.url}")
            return True
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() not in self.server.origins:
            # No CORS headers: the browser of a page on another origin learns nothing.
            self._error(
                403,
                f"origin {origin!r} is not allowed; allowed: "
                f"{', '.join(sorted(self.server.origins))} (set them with --ui-origin)",
            )
            return True
        if self.path not in ("/encode", "/decode"):
            self._error(404, f"no {self.path}; use POST /encode or POST /decode")
            return True
        return False

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode())

    def _send(self, status: int, body: bytes, preflight: bool = False) -> None:
        self.send_response(status)
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() in self.server.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            # The UI may send credentials (its "include cross-origin credentials" setting).
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Access-Control-Allow-Methods", ALLOW_METHODS)
            self.send_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
            if preflight:
                self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Vary", "Origin")
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


@contextmanager
def serve_codec(
    codec: EncryptionCodec, origins: Sequence[str], port: int = 0
) -> Iterator[CodecServer]:
    """Serve in a background thread (port 0: a free one) until the block ends."""
    server = CodecServer(codec, origins, port)
    thread = threading.Thread(target=server.serve_forever, name="codec-server", daemon=True)
    thread.start()
    log.debug("codec server for the Temporal UI at %s", server.url)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
