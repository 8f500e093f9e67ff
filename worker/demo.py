"""The demo workspace `stageline dev --demo` sets up, and the little HTTP service it deploys
to (a webhook receiver and a health endpoint on 127.0.0.1), so a newcomer sees a whole
promotion in the Temporal UI within a minute without any outside service."""

from __future__ import annotations

import json
import logging
import secrets
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from models.errors import Conflict
from models.settings import Settings
from models.workspace import Protection
from services.unit import Units, Work
from store.database import Database
from vault.keys import KeyProvider
from vault.secret_value import SecretValue

log = logging.getLogger("stageline.demo")
APP = "web"
VERSION = "1.0.0"
DEMO_USER = "demo"
REVIEWER = "alice"


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
    await envs.create_app(APP, ["dev", "staging", "production"], actor=DEMO_USER)
    await w.tools.create_tool("deploy-hook", kind="webhook", actor=DEMO_USER)
    for env in ("dev", "staging", "production"):
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
        for env in ("dev", "staging", "production"):
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
