"""Who is looking at a console page, and which environment they selected.

A page needs a session: without one (or with an expired one) a GET is sent to /login and back.
The environment selector is kept in the URL (`?env=production`; `?env=` is every environment)
and remembered for that user in a cookie, so the next page opened without `?env` shows the same
environment; a cookie left by another user of the same browser is ignored.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote, unquote

from fastapi import Request, Response

from models.errors import NotFound
from models.identity import Action, Identity
from server import auth
from server.app import Server, invoke
from server.operations import BY_CALL

ENV_COOKIE = "stageline_env"
LOGIN_CSRF_COOKIE = "stageline_login_csrf"


@dataclass
class Viewer:
    """What every page knows: the person, the environments they may view (in promotion
    order), the one selected (None: all of them) and the CSRF value its forms carry."""

    identity: Identity
    environments: list[str]
    selected: str | None
    csrf: str
    remember: bool  # the selection came from the URL: remember it in the cookie

    def may(self, action: Action, environment: str | None, app: str | None = None) -> bool:
        return auth.may(self.identity, action, environment, app)


def local_path(target: str | None) -> str:
    """Only a path on this server may be a place to return to after login (never another
    site: `//evil.example` or `https://...` are refused)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def viewer(server: Server, request: Request, form_csrf: str | None = None) -> Viewer:
    identity = await auth.authenticate(server.units, request, form_csrf)
    listed = await invoke(server, identity, BY_CALL[("environments", "list_environments")], {})
    names = [e.name for e in listed if auth.may(identity, Action.VIEW, e.name, None)]
    selected, remember = _selected(request, identity, names)
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    return Viewer(
        identity=identity,
        environments=names,
        selected=selected,
        csrf=auth.csrf_token(cookie) if cookie else "",
        remember=remember,
    )


def _selected(request: Request, identity: Identity, names: list[str]) -> tuple[str | None, bool]:
    if "env" in request.query_params:
        wanted = request.query_params["env"]
        if wanted and wanted not in names:
            raise NotFound(
                f"there is no environment {wanted!r} you may view; choose one of: "
                f"{', '.join(names) or 'none'}"
            )
        return wanted or None, True
    remembered = request.cookies.get(ENV_COOKIE, "")
    owner, _, wanted = remembered.partition("|")
    if unquote(owner) == identity.name and unquote(wanted) in names:
        return unquote(wanted), False
    return None, False


def remember(response: Response, who: Viewer) -> None:
    """Keep the selection for this user (a year; it is a preference, not a credential)."""
    if who.remember:
        value = f"{quote(who.identity.name, safe='')}|{quote(who.selected or '', safe='')}"
        response.set_cookie(
            ENV_COOKIE, value, max_age=365 * 86400, samesite="strict", httponly=True, path="/"
        )


def login_csrf(request: Request) -> str:
    """The login form's CSRF value (double submit: a cookie and a form field that must match);
    a new one when the browser has none."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def login_csrf_ok(request: Request, given: str) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())
