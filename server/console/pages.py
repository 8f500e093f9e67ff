"""The console's read-only pages: what runs where, what each environment holds, releases,
runs, diffs, history and audit. Each reads through server.app.invoke, so it sees exactly
what the person's roles let the JSON API show them."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from models.errors import NotFound
from models.identity import Action
from models.views import EnvironmentDetail, StatusView
from models.workspace import AppView, ReleaseView
from server.app import Server, invoke
from server.console import session
from server.console.render import page, segment
from server.console.session import Viewer
from server.operations import BY_CALL
from server.runs import run_result, run_view

# Phases in which a reviewer's decision is awaited, and the decisions each takes.
DECISIONS = {
    "awaiting_approval": ("approve", "reject"),
    "frozen": ("override", "reject"),
    "waiting": ("reject",),  # an override lifts a freeze, not the wait timer
}
# How long a page waits for an ended run's result (one history read, normally milliseconds).
RESULT_WAIT = 10.0


def server_of(request: Request) -> Server:
    found: Server = request.app.state.server
    return found


async def call(request: Request, who: Viewer, service: str, method: str, **arguments: Any) -> Any:
    return await invoke(server_of(request), who.identity, BY_CALL[(service, method)], arguments)


async def viewer(request: Request, form_csrf: str | None = None) -> Viewer:
    return await session.viewer(server_of(request), request, form_csrf)


def shown(request: Request, who: Viewer, template: str, title: str, **context: Any) -> Response:
    """A page for `who`, remembering the environment they selected."""
    response = page(request, template, {"who": who, "title": title, **context})
    session.remember(response, who)
    return response


def before(chain: list[str], environment: str | None) -> str | None:
    """The stage before `environment` in `chain`, if any."""
    if environment is None or environment not in chain or chain.index(environment) == 0:
        return None
    return chain[chain.index(environment) - 1]


async def apps_of(request: Request, who: Viewer) -> list[AppView]:
    found: list[AppView] = await call(request, who, "environments", "list_apps")
    return found


async def overview(request: Request) -> Response:
    who = await viewer(request)
    status: StatusView = await call(request, who, "views", "status", environment=who.selected)
    running: dict[tuple[str, str], list[Any]] = {}
    for p in status.in_progress:
        running.setdefault((p.app, p.environment), []).append(p)
    return shown(
        request,
        who,
        "overview.html",
        "Overview",
        status=status,
        apps=sorted({c.app for c in status.cells}),
        cells={(c.app, c.environment): c for c in status.cells},
        running=running,
        pending=[p for p in status.in_progress if p.phase == "awaiting_approval"],
    )


async def environment(request: Request) -> Response:
    name = request.path_params["name"]
    who = await viewer(request)
    if name not in who.environments:
        raise NotFound(
            f"there is no environment {name!r} you may view; choose one of: "
            f"{', '.join(who.environments) or 'none'}"
        )
    if who.selected != name:  # the page is the selection
        who.selected, who.remember = name, True
    detail: EnvironmentDetail = await call(
        request, who, "views", "environment_detail", environment=name
    )
    targets = await call(request, who, "notifications", "list_targets", environment=name)
    return shown(
        request, who, "environment.html", name, detail=detail, targets=targets, Action=Action
    )


async def releases(request: Request) -> Response:
    who = await viewer(request)
    apps = await apps_of(request, who)
    chosen = request.query_params.get("app") or None
    status: StatusView = await call(request, who, "views", "status")
    rows = []
    for app_view in apps:
        if chosen and app_view.name != chosen:
            continue
        listed: list[ReleaseView] = await call(
            request, who, "releases", "list_releases", app=app_view.name
        )
        chain = [e for e in who.environments if e in app_view.environments]
        for release in reversed(listed):
            row = _release_row(status, chain, release)
            if who.selected in (None, row["next"]) or who.selected in row["runs_in"]:
                rows.append(row)
    context = {"apps": apps, "chosen": chosen, "rows": rows, "Action": Action}
    return shown(request, who, "releases.html", "Releases", **context)


def _release_row(status: StatusView, chain: list[str], release: ReleaseView) -> dict[str, Any]:
    """Where a release runs, and the next stage it may be promoted to (after the furthest
    stage it runs in; the first stage when it runs nowhere)."""
    runs_in = [
        c.environment for c in status.cells if c.app == release.app and c.version == release.version
    ]
    reached = [chain.index(e) for e in runs_in if e in chain]
    following = max(reached) + 1 if reached else 0
    return {
        "release": release,
        "runs_in": runs_in,
        "next": chain[following] if following < len(chain) else None,
    }


async def diff(request: Request) -> Response:
    who = await viewer(request)
    apps = await apps_of(request, who)
    query = request.query_params
    app = query.get("app") or (apps[0].name if apps else None)
    last = who.environments[-1] if who.environments else None
    target = query.get("target") or who.selected or last
    source = query.get("source") or before(who.environments, target)
    found = None
    if app and source and target:
        found = await call(request, who, "views", "diff", app=app, source=source, target=target)
    return shown(
        request,
        who,
        "diff.html",
        "Diff",
        apps=apps,
        app=app,
        source=source,
        target=target,
        diff=found,
    )


async def history(request: Request) -> Response:
    who = await viewer(request)
    apps = await apps_of(request, who)
    app = request.query_params.get("app") or (apps[0].name if apps else None)
    outcome = request.query_params.get("status") or None
    view = None
    if app and who.selected:
        view = await call(request, who, "views", "history_view", app=app, environment=who.selected)
        if outcome:
            view.deployments = [d for d in view.deployments if d.status == outcome]
    return shown(
        request, who, "history.html", "History", apps=apps, app=app, view=view, outcome=outcome
    )


async def audit(request: Request) -> Response:
    who = await viewer(request)
    query = request.query_params
    app = query.get("app") or None
    actor = query.get("actor") or None
    action = query.get("action") or None
    entries = await call(
        request, who, "views", "audit_log", environment=who.selected, app=app, limit=500
    )
    entries = [
        e
        for e in reversed(entries)  # newest first
        if (actor is None or e.actor == actor) and (action is None or action in e.action)
    ]
    return shown(
        request,
        who,
        "audit.html",
        "Audit",
        apps=await apps_of(request, who),
        app=app,
        actor=actor,
        action=action,
        entries=entries,
    )


async def _run_context(request: Request) -> tuple[Viewer, dict[str, Any]]:
    server = server_of(request)
    run_id = request.path_params["run_id"]
    who = await viewer(request)
    view = await run_view(server, who.identity, run_id)
    status = view.status or {}
    phase = status.get("phase")
    result = None
    if view.ended:  # its result says how it ended (a train's status has no phase)
        result = (await run_result(server, who.identity, run_id, RESULT_WAIT)).result
        phase = result["status"] if result else phase
    elif view.kind == "train":
        phase = "running"
    choices: tuple[str, ...] = ()
    if phase in DECISIONS and who.may(Action.DECIDE, view.environment):
        choices = DECISIONS[phase]
        # Only those the workflow would count (eligible, not decided yet, not the requester
        # where self-review is barred) are offered a decision.
        if phase == "awaiting_approval" and who.identity.name not in status.get("may_approve", []):
            choices = ()
    ui: str | None = request.app.state.temporal_ui
    namespace = segment(server.settings.temporal_namespace)
    return who, {
        "who": who,
        "title": f"{view.kind} {run_id}",
        "run": view,
        "status": status,
        "result": result,
        "phase": phase,
        "live": not view.ended,
        "choices": choices,
        "notice": request.query_params.get("done"),
        "temporal_link": f"{ui}/namespaces/{namespace}/workflows/{segment(run_id)}" if ui else None,
    }


async def run(request: Request) -> Response:
    who, context = await _run_context(request)
    response = page(request, "run.html", context)
    session.remember(response, who)
    return response


async def run_live(request: Request) -> Response:
    """The live part of a run's page, which htmx fetches every 2 s while it runs."""
    _, context = await _run_context(request)
    return page(request, "run_live.html", context)
