"""The demo `stageline dev --demo` sets up: a workspace, the little HTTP service it deploys to
(a webhook receiver and a health endpoint on 127.0.0.1), three demo users of the dev stack's
server, and the promotions that take web@1.0.0 to dev, to staging and to production, where it
waits for alice's approval. So a newcomer sees whole promotions in the Temporal UI, and
approves one in the console, within a couple of minutes and without any outside service."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from models.errors import Conflict
from models.identity import EVERY_ENVIRONMENT, Grant, PrincipalKind, Role
from models.promotion import Phase, PromotionInput, PromotionResult, promotion_workflow_id
from models.settings import Settings
from models.status import PromotionEnd
from models.workspace import Protection
from services.unit import Units, Work
from store.database import Database
from vault.keys import KeyProvider
from vault.secret_value import SecretValue
from worker.client import result_of
from worker.runs import query_status, start
from workflows.contract import PROMOTION
from workflows.details import promotion_summary

log = logging.getLogger("stageline.demo")
APP = "web"
VERSION = "1.0.0"
DEMO_USER = "demo"  # the requester of the demo's promotions
REVIEWER = "alice"  # the one reviewer of production
VIEWER = "victor"
ENVIRONMENTS = ("dev", "staging", "production")
USERS_FILE = "demo-users.json"  # in STAGELINE_HOME: the demo users' passwords, mode 0600


_MIGRATE = (
    "import os, time; print('migrating', os.environ['STAGELINE_ENVIRONMENT'], "
    "'with token', os.environ['API_TOKEN']); time.sleep(2); print('schema is current')"
)
# The deploy target's address is a variable, so the release never bakes in a port.
PIPELINE = f"""\
steps:
  - name: migrate
    run: ["{sys.executable}", "-c", "{_MIGRATE}"]
    env: {{API_TOKEN: "${{{{ secrets.API_TOKEN }}}}", GREETING: "${{{{ vars.GREETING }}}}"}}
  - name: notify
    tool: deploy-hook
    with: {{version: "${{{{ release.version }}}}", greeting: "${{{{ vars.GREETING }}}}"}}
activate:
  - name: switch-alias
    tool: deploy-hook
    with: {{action: activate, version: "${{{{ release.version }}}}"}}
verify:
  - name: health
    http: {{url: "${{{{ vars.BASE_URL }}}}/health/${{{{ env.name }}}}", expect_status: 200}}
exposes:
  endpoints: [{{name: web, path: /}}, {{name: api, path: /api/v1}}]
  augmentations: [{{name: greeting-tool, path: /tools/greet}}]
"""


@contextmanager
def receiver(port: int) -> Iterator[str]:
    """The demo's deploy target: logs each webhook call, answers health checks."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            log.info("demo webhook %s: %s", self.path, json.loads(body or b"{}"))
            self._answer(200)

        def do_GET(self) -> None:
            self._answer(200 if self.path.startswith("/health") else 404)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


async def _create_workspace(w: Work) -> None:
    envs = w.environments
    await envs.create_environment("dev", actor=DEMO_USER)
    await envs.create_environment("staging", actor=DEMO_USER)
    await envs.create_environment(
        "production",
        actor=DEMO_USER,
        protection=Protection(required_approvals=1, reviewers=[REVIEWER]),
    )
    await envs.create_app(APP, list(ENVIRONMENTS), actor=DEMO_USER)
    await w.tools.create_tool("deploy-hook", kind="webhook", actor=DEMO_USER)
    for env in ENVIRONMENTS:
        await w.variables.set_variable(env, "GREETING", f"hello from {env}", actor=DEMO_USER)
        await w.secrets.set_secret(
            env, "API_TOKEN", SecretValue(f"{env}-{secrets.token_hex(8)}"), actor=DEMO_USER
        )


async def ensure_workspace(db: Database, settings: Settings, key: KeyProvider, url: str) -> bool:
    """Create the demo workspace once; returns False when it already existed."""
    units = Units(db, settings, key)
    async with units.write() as w:
        created = not any(e.name == "dev" for e in await w.environments.list_environments())
        if created:
            await _create_workspace(w)
        # Point the demo at this run's receiver (its port may differ from the last run's).
        for env in ENVIRONMENTS:
            resolved = await w.resolution.resolve(env, APP)
            if "BASE_URL" not in resolved.vars or resolved.vars["BASE_URL"].value != url:
                await w.variables.set_variable(env, "BASE_URL", url, actor=DEMO_USER)
            hook = resolved.tools.get("deploy-hook")
            if hook is None or not hook.url.startswith(url):
                await w.tools.set_tool_profile(
                    "deploy-hook",
                    env,
                    url=f"{url}/hooks/{env}",
                    auth_secret="API_TOKEN",
                    actor=DEMO_USER,
                )
    with suppress(Conflict):  # made by an earlier run
        async with units.write() as w:
            await w.releases.create_release(
                APP, VERSION, PIPELINE, actor=DEMO_USER, artifact=f"demo/{APP}:{VERSION}"
            )
    return created


# -- demo users ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoUser:
    """A person of the demo, as `stageline dev` prints them."""

    name: str
    roles: tuple[Grant, ...]
    does: str  # what they are in the demo, in a few words
    # None: created by an earlier run whose password file has since been deleted.
    password: str | None = None


USERS = (
    DemoUser(
        REVIEWER,
        (
            Grant(environment="production", role=Role.REVIEWER),
            Grant(environment=EVERY_ENVIRONMENT, role=Role.VIEWER),
        ),
        "reviewer in production: approves the demo's promotion",
    ),
    DemoUser(
        DEMO_USER,
        (Grant(environment=EVERY_ENVIRONMENT, role=Role.ADMIN),),
        "admin everywhere; requested the promotion, so may not approve it",
    ),
    DemoUser(
        VIEWER,
        (Grant(environment=EVERY_ENVIRONMENT, role=Role.VIEWER),),
        "viewer everywhere",
    ),
)


def users_file(settings: Settings) -> Path:
    return settings.home / USERS_FILE


def _read_passwords(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _write_passwords(path: Path, passwords: dict[str, str]) -> None:
    """Readable by its owner only, replaced whole (never half written)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(passwords, indent=2) + "\n")
    os.chmod(partial, 0o600)
    os.replace(partial, path)


async def ensure_users(db: Database, settings: Settings, key: KeyProvider) -> list[DemoUser]:
    """Create the demo users once per STAGELINE_HOME, through the principal service, with
    random passwords kept in `$STAGELINE_HOME/demo-users.json` (mode 0600), so every later
    run prints the same ones. Needs the demo workspace (alice's grant names production)."""
    path = users_file(settings)
    passwords = _read_passwords(path)
    units = Units(db, settings, key)
    async with units.read() as w:
        people = await w.principals.list_principals(PrincipalKind.PERSON)
    existing = {p.name for p in people}
    missing = [u for u in USERS if u.name not in existing]
    new = {u.name: secrets.token_urlsafe(15) for u in missing if u.name not in passwords}
    if new:
        # Written before the users exist: a run that fails in between reuses them.
        passwords = {**passwords, **new}
        _write_passwords(path, passwords)
    if missing:
        with suppress(Conflict):  # created a moment ago by another run on this home
            async with units.write() as w:
                for user in missing:
                    await w.principals.add_user(
                        user.name, passwords[user.name], list(user.roles), actor=DEMO_USER
                    )
    return [DemoUser(u.name, u.roles, u.does, passwords.get(u.name)) for u in USERS]


# -- the demo's promotions -------------------------------------------------------------------


def promotion_id(environment: str) -> str:
    return promotion_workflow_id(APP, VERSION, environment)


async def _start(client: Client, settings: Settings, environment: str) -> WorkflowHandle[Any, Any]:
    """Start the demo's promotion into `environment`, or attach to it when it runs."""
    request = PromotionInput(
        app=APP, version=VERSION, target=environment, requested_by=DEMO_USER, source="cli"
    )
    handle, _ = await start(
        client,
        settings,
        PROMOTION,
        request,
        promotion_id(environment),
        app=APP,
        environment=environment,
        version=VERSION,
        summary=promotion_summary(APP, VERSION, environment),
    )
    return handle


def _outcome(result: PromotionResult) -> str:
    if result.status == PromotionEnd.DEPLOYED:
        how = " (it was already)" if result.noop else ""
        return f"{APP}@{VERSION} deployed to {result.environment}{how}"
    return f"{result.promotion_id} ended {result.status}: {result.reason or 'no reason given'}"


async def promote_through(
    client: Client,
    settings: Settings,
    say: Callable[[str], None],
    on_awaiting: Callable[[str], None],
) -> PromotionResult:
    """Promote web@1.0.0 to dev, then staging (each to its end), then production, which waits
    for alice's approval: `on_awaiting` is called with its id when it does. Ends with the last
    promotion's result (the production one, once decided). Run again, it attaches to the
    promotion that runs and passes quickly over the ones deployed already."""
    for environment in ENVIRONMENTS[:-1]:
        result = await result_of(await _start(client, settings, environment), PromotionResult)
        say(_outcome(result))
        if result.status != PromotionEnd.DEPLOYED:
            return result
    handle = await _start(client, settings, ENVIRONMENTS[-1])
    final = asyncio.ensure_future(result_of(handle, PromotionResult))
    try:
        while not final.done():
            status = await query_status(handle)
            if status is not None and status.phase == Phase.AWAITING_APPROVAL:
                on_awaiting(handle.id)
                break
            await asyncio.wait({final}, timeout=0.5)
        result = await final
    finally:
        final.cancel()
    say(_outcome(result))
    return result
