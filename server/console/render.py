"""Turning a page's data into HTML: one Jinja2 environment with autoescaping on for every
template (a name, comment, reason or step output is text, never markup), the filters the
templates share, and the headers every console response carries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

# No inline script or style is allowed, nor any other origin: a string that slipped past the
# escaping still could not run. htmx is told not to inject its indicator styles (see base.html).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def href(path: str, **query: Any) -> str:
    """A console link: path segments quoted by the caller's `segment`, query values encoded
    (None and "" left out)."""
    kept = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def segment(value: str) -> str:
    """One path segment, quoted (a workflow id may hold '/' or '@')."""
    return quote(value, safe="")


def _moment(value: datetime | str) -> datetime:
    """A time from a model (datetime) or from a run's JSON status (ISO text), in UTC."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def ago(moment: datetime | str | None) -> str:
    if moment is None:
        return "-"
    seconds = int((datetime.now(UTC) - _moment(moment)).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{max(seconds, 0)} s ago"


def stamp(moment: datetime | str | None) -> str:
    if moment is None:
        return "-"
    return _moment(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# How an outcome or phase reads, and its badge colour (a CSS class).
BADGES = {
    "deployed": "ok",
    "succeeded": "ok",
    "passed": "ok",
    "promotion": "ok",
    "rolled_back": "warn",
    "rollback": "warn",
    "compensation": "warn",
    "compensated": "warn",
    "failed": "bad",
    "rejected": "bad",
    "interrupted": "bad",
    "superseded": "muted",
    "awaiting_approval": "wait",
    "frozen": "wait",
    "waiting": "wait",
    "queued": "wait",
}


def badge(value: str | None) -> str:
    return BADGES.get(value or "", "info")


templates = Environment(
    loader=PackageLoader("server.console", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(ago=ago, stamp=stamp, badge=badge, segment=segment)
templates.globals.update(href=href)


def page(
    request: Request, template: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    html = templates.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status, headers=SECURITY_HEADERS)
