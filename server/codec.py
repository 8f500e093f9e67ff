"""The codec routes on the server (`/codec/encode`, `/codec/decode`): the Temporal UI's codec
endpoint is then `<server>/codec`. Payloads decode to what workflows hold (inputs, results,
step output), so the routes are as guarded as the API: with a codec token configured
(STAGELINE_CODEC_TOKEN_FILE) they take that bearer token, as `stageline codec-server` does;
without one, a stageline token whose principal views every environment (`*:viewer` or more).
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint

from models.errors import StagelineError
from models.identity import Action
from server import auth
from server.app import Server, error_response, status_of
from server.operations import EVERY
from vault.codec import EncryptionCodec
from vault.keys import load_previous_keys
from worker.codec_server import codec_app, read_token_file

CODEC = "/codec"


def mount_codec(app: FastAPI, server: Server, ui_origins: tuple[str, ...]) -> None:
    settings = server.settings
    token = read_token_file(settings.codec_token_file) if settings.codec_token_file else None

    # Read at start: the server holds the master key, and says so at once when it cannot.
    codec = EncryptionCodec(server.units.keys.get(), load_previous_keys(settings))
    app.mount(CODEC, codec_app(codec, ui_origins, token))

    @app.middleware("http")
    async def codec_access(request: Request, call_next: RequestResponseEndpoint) -> Response:
        if (
            token is None
            and request.url.path.startswith(f"{CODEC}/")
            and request.method not in auth.SAFE_METHODS
        ):
            try:
                identity = await server.identity(request)
                await auth.authorize(server.units, identity, "codec", [(Action.VIEW, EVERY)], None)
            except StagelineError as exc:
                return error_response(status_of(exc), exc.message, exc.exit_code)
        return await call_next(request)
