"""The console's routes.

    GET  /                        overview: apps x environments, promotions waiting for approval
    GET  /environments/{name}     what one environment runs and holds
    GET  /releases                releases, where each runs and may go next
    GET  /runs/{id}               a promotion or rollback, live while it runs (/runs/{id}/live)
    GET  /diff                    one app in two environments, side by side
    GET  /history, /audit         deployments and the audit log, filtered
    GET  /promote, /rollback      what an action will do, to confirm it
    POST /runs/{id}/decide, /promote, /rollback, /login, /logout

Every page takes `?env=` (the environment selector). Every POST is a form carrying the
session's CSRF value, and each action is checked and carried out by the functions the JSON API
uses (server.app.invoke, server.runs): a button shown to the wrong person would still do
nothing, and a forged POST gets 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from models.errors import NotFound
from server.console import actions, pages
from server.console.render import href, page

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {
    "htmx.min.js": "htmx-2.0.11.min.js",
    "console.js": "console.js",
    "console.css": "console.css",
}

Handler = Callable[[Request], Awaitable[Response]]
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/", pages.overview),
    ("GET", "/environments/{name}", pages.environment),
    ("GET", "/releases", pages.releases),
    ("GET", "/diff", pages.diff),
    ("GET", "/history", pages.history),
    ("GET", "/audit", pages.audit),
    ("GET", "/runs/{run_id}", pages.run),
    ("GET", "/runs/{run_id}/live", pages.run_live),
    ("GET", "/login", actions.login_form),
    ("POST", "/login", actions.login),
    ("POST", "/logout", actions.logout),
    ("POST", "/runs/{run_id}/decide", actions.decide_run),
    ("GET", "/promote", actions.confirm_promote),
    ("POST", "/promote", actions.promote),
    ("GET", "/rollback", actions.confirm_rollback),
    ("POST", "/rollback", actions.rollback),
)


def add_console_routes(app: FastAPI, temporal_ui: str | None) -> None:
    """The console on `app` (whose state holds the server); `temporal_ui`: the Temporal UI,
    for links to a run's workflow there (None: no link)."""
    app.state.console_error = error_page
    app.state.temporal_ui = temporal_ui
    app.add_api_route("/static/{name}", static, methods=["GET"], include_in_schema=False)
    for method, path, handler in ROUTES:
        app.add_api_route(path, handler, methods=[method], include_in_schema=False)


def error_page(request: Request, status: int, message: str) -> Response:
    """A console request that went wrong, as a page (the API answers JSON instead); without
    a session, a page sends the browser to log in and come back."""
    if status == 401 and request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(href("/login", next=target), 303)
    return page(request, "error.html", {"status": status, "message": message, "who": None}, status)


async def static(name: str) -> Response:
    if name not in STATIC_FILES:
        raise NotFound(f"no static file {name!r}")
    return FileResponse(
        STATIC / STATIC_FILES[name],
        media_type="text/css" if name.endswith(".css") else "text/javascript",
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
