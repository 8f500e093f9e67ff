"""The console's forms: log in and out, decide on a run, promote (the diff shown first) and
roll back (where to, shown first). Each POST carries the session's CSRF value and is carried
out by the very functions the JSON API uses, with the same role checks."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ValidationError

from models.errors import BadInput, Refused, describe
from models.identity import Action, Forbidden
from server import auth
from server.app import TooManyLogins, clear_session_cookies, log_in, set_session_cookies
from server.console import session
from server.console.pages import apps_of, before, call, server_of, shown, viewer
from server.console.render import page, segment
from server.console.session import Viewer
from server.runs import (
    DecideRequest,
    PromoteRequest,
    RollbackRequest,
    decide,
    start_promotion,
    start_rollback,
)
from services.principals import NotAuthenticated

M = TypeVar("M", bound=BaseModel)


async def _form(request: Request) -> tuple[Viewer, dict[str, str]]:
    """A POSTed form and its sender, whose session's CSRF value it must carry."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    who = await viewer(request, fields.get("csrf_token", ""))
    return who, fields


def _model(model: type[M], fields: dict[str, Any]) -> M:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise BadInput(describe(exc)) from None


def login_page(request: Request, problem: str | None = None, status: int = 200) -> Response:
    csrf = session.login_csrf(request)
    response = page(
        request,
        "login.html",
        {
            "who": None,
            "title": "Log in",
            "problem": problem,
            "csrf": csrf,
            "next": session.local_path(request.query_params.get("next")),
            "name": "",
        },
        status,
    )
    response.set_cookie(
        session.LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/login"
    )
    return response


async def login_form(request: Request) -> Response:
    return login_page(request)


async def login(request: Request) -> Response:
    form = await request.form()
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    if not session.login_csrf_ok(request, str(form.get("csrf_token", ""))):
        return login_page(request, "The login form expired; please try again.", 403)
    if not name or not password:
        return login_page(request, "Enter your name and your password.", 400)
    try:
        issued = await log_in(server_of(request), request, name, password)
    except (TooManyLogins, NotAuthenticated) as exc:
        return login_page(request, exc.message, 429 if isinstance(exc, TooManyLogins) else 401)
    response = RedirectResponse(session.local_path(str(form.get("next", ""))), 303)
    set_session_cookies(response, request, issued)
    return response


async def logout(request: Request) -> Response:
    _, fields = await _form(request)
    token = auth.bearer_of(request, fields.get("csrf_token", ""))
    if token is not None:
        async with server_of(request).units.write() as w:
            await w.principals.logout(token)
    response = RedirectResponse("/login", 303)
    clear_session_cookies(response)
    return response


async def decide_run(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    who, fields = await _form(request)
    body = _model(
        DecideRequest, {"kind": fields.get("kind"), "comment": fields.get("comment") or None}
    )
    outcome = await decide(server_of(request), who.identity, run_id, body)
    if not outcome.accepted:
        raise Refused(f"the {body.kind} was not accepted: {outcome.reason}")
    return RedirectResponse(f"/runs/{segment(run_id)}?done={body.kind}", 303)


def _may_deploy(who: Viewer, environment: str, app: str) -> None:
    """A confirmation page is for those who may then press its button."""
    reason = auth.why_not(who.identity, Action.DEPLOY, environment, app)
    if reason is not None:
        raise Forbidden(reason)


def _promotion(fields: Any) -> PromoteRequest:
    return _model(
        PromoteRequest,
        {"app": fields.get("app"), "version": fields.get("version"), "target": fields.get("to")},
    )


async def confirm_promote(request: Request) -> Response:
    """What a promotion changes (the diff from the stage before), before it is asked for."""
    who = await viewer(request)
    body = _promotion(request.query_params)
    _may_deploy(who, body.target, body.app)
    chain = [
        e
        for a in await apps_of(request, who)
        if a.name == body.app
        for e in who.environments
        if e in a.environments
    ]
    source = before(chain, body.target)
    found = None
    if source is not None:
        found = await call(
            request, who, "views", "diff", app=body.app, source=source, target=body.target
        )
    return shown(request, who, "promote.html", "Promote", wanted=body, source=source, diff=found)


async def promote(request: Request) -> Response:
    who, fields = await _form(request)
    started = await start_promotion(server_of(request), who.identity, _promotion(fields))
    return RedirectResponse(f"/runs/{segment(started.id)}", 303)


async def confirm_rollback(request: Request) -> Response:
    """Where a rollback would go, before it is asked for."""
    who = await viewer(request)
    app, environment = request.query_params.get("app"), request.query_params.get("environment")
    if not app or not environment:
        raise BadInput(
            "a rollback needs ?app= and ?environment= (use the button on an environment's page)"
        )
    _may_deploy(who, environment, app)
    plan = await call(
        request, who, "deployments", "preview_rollback", app=app, environment=environment
    )
    return shown(
        request, who, "rollback.html", "Roll back", app=app, environment=environment, plan=plan
    )


async def rollback(request: Request) -> Response:
    who, fields = await _form(request)
    body = _model(
        RollbackRequest,
        {
            "app": fields.get("app"),
            "environment": fields.get("environment"),
            "reason": fields.get("reason") or None,
        },
    )
    started = await start_rollback(server_of(request), who.identity, body)
    return RedirectResponse(f"/runs/{segment(started.id)}", 303)
