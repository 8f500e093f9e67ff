"""Who is calling, and whether they may: bearer tokens, cookie sessions with their CSRF
check, the role checks of an operation, and the login rate limit.

- A client (the CLI, a CI job) sends `Authorization: Bearer <token>`: a CI token or the
  session token `stageline login` stored. No cookie is involved, so no CSRF check either.
- A browser holds its session in an HttpOnly, SameSite=Strict cookie. Any request with it
  that is not a GET or HEAD must also carry `X-CSRF-Token`, a value derived from the session
  token (HMAC), which a page of another site can neither read nor compute.
- A refusal for a missing role is 403 naming the role needed; it is audited with the
  principal, in a transaction of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from collections.abc import Iterable

from fastapi import Request

from models.errors import Refused
from models.identity import NEEDS, Action, Forbidden, Identity, holds, refusal
from server.operations import ANY, EVERY, Check
from services.base import Service
from services.principals import NotAuthenticated
from services.unit import Units

SESSION_COOKIE = "stageline_session"
CSRF_COOKIE = "stageline_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(session_token: str) -> str:
    """The CSRF value of one session: bound to it, and useless without it."""
    return hmac.new(session_token.encode(), b"stageline-csrf-v1", hashlib.sha256).hexdigest()


class CrossSiteRefused(Refused):
    """A cookie-authenticated change without the session's CSRF token (403)."""


def bearer_of(request: Request, form_csrf: str | None = None) -> str | None:
    """The token a request carries, after the CSRF check for cookie sessions: the header, or
    for the console's forms (which cannot send headers) the form's `csrf_token` field."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated(
                "the Authorization header is not 'Bearer <token>'; send a CI token or the "
                "token 'stageline login' stored"
            )
        return token.strip()
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        return None
    if request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER) or form_csrf or ""
        if not hmac.compare_digest(given.encode(), csrf_token(cookie).encode()):
            raise CrossSiteRefused(
                f"{request.method} with a session cookie needs the X-CSRF-Token header of "
                "that session (a page of another site cannot send it); reload the page"
            )
    return cookie


async def authenticate(units: Units, request: Request, form_csrf: str | None = None) -> Identity:
    token = bearer_of(request, form_csrf)
    if token is None:
        raise NotAuthenticated(
            "no credentials: log in with 'stageline login' (or set STAGELINE_TOKEN to a CI "
            "token), then try again"
        )
    async with units.read() as w:
        return await w.principals.authenticate(token)


def environments_of(check: Check, arguments: dict[str, object]) -> str | None:
    """The environment a check is about: a name, EVERY, or None for ANY."""
    if check.environment == EVERY:
        return EVERY
    if check.environment == ANY:
        return None
    value = arguments.get(check.environment)
    return value if isinstance(value, str) else None


def may(identity: Identity, action: Action, environment: str | None, app: str | None) -> bool:
    return why_not(identity, action, environment, app) is None


def why_not(
    identity: Identity, action: Action, environment: str | None, app: str | None
) -> str | None:
    """Why `identity` may not take `action` in `environment` (None: in any one), or None."""
    if environment is not None:
        return refusal(identity, action, environment, app)
    if app is not None and identity.apps and app not in identity.apps:
        return refusal(identity, action, "*", app)
    role = NEEDS[action]
    if any(holds(identity, role, grant.environment) for grant in identity.roles):
        return None
    has = ", ".join(str(g) for g in identity.roles) or "no role"
    return (
        f"{identity.name} may not do this: that needs the {role} role in at least one "
        f"environment; {identity.name} has {has}"
    )


async def authorize(
    units: Units,
    identity: Identity,
    what: str,
    checks: Iterable[tuple[Action, str | None]],
    app: str | None,
) -> None:
    """Raise Forbidden (audited with the principal) unless every check holds."""
    for action, environment in checks:
        reason = why_not(identity, action, environment, app)
        if reason is None:
            continue
        async with units.write() as w:
            await Service(w).audit(
                identity.name,
                "access.refused",
                what,
                environment=environment if environment not in (None, EVERY) else None,
                app=app,
                detail={"action": str(action), "needs": str(NEEDS[action])},
            )
        raise Forbidden(reason)


class LoginLimiter:
    """At most `limit` failed logins per name and per client address in `window` seconds;
    past that, logins are refused (429) until the window moves on. In memory: a server
    restart forgets, which only ever favours the person locked out."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        found = self._failures.setdefault(key, deque())
        while found and found[0] <= now - self.window:
            found.popleft()
        return found

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds to wait when any of `keys` is over the limit, else None."""
        now = time.monotonic()
        waits = [
            int(found[0] + self.window - now) + 1
            for key in keys
            if len(found := self._recent(key, now)) >= self.limit
        ]
        return max(waits) if waits else None

    def failed(self, keys: Iterable[str]) -> None:
        now = time.monotonic()
        for key in keys:
            self._recent(key, now).append(now)
        if len(self._failures) > 10_000:  # forget idle keys, so memory stays bounded
            for key in [k for k, v in self._failures.items() if not self._recent(k, now)]:
                del self._failures[key]
