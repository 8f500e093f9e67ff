"""A workspace for promotion tests: dev, staging, production; app web; known secret values."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from store.tables import Deployment, Promotion
from tests.http_recorder import Recorder, recorder
from tests.stack import Stack, outcome, stack
from vault.secret_value import SecretValue

SECRETS = {
    ("dev", "DATABASE_URL"): "dev-db-password-4f1c",
    ("staging", "DATABASE_URL"): "staging-db-password-5e2d",
    ("production", "DATABASE_URL"): "prod-db-password-9a7e",
    ("dev", "HOOK_TOKEN"): "dev-hook-token-77aa",
    ("staging", "HOOK_TOKEN"): "staging-hook-token-66cc",
    ("production", "HOOK_TOKEN"): "prod-hook-token-88bb",
}


async def build(s: Stack, hook_url: str, production_approvals: int = 0) -> None:
    from models.workspace import Protection

    for name in ("dev", "staging"):
        await s.envs.create_environment(name, actor="t")
    await s.envs.create_environment(
        "production",
        actor="t",
        protection=Protection(
            required_approvals=production_approvals,
            reviewers=["alice", "bob", "carol"] if production_approvals else [],
        ),
    )
    await s.envs.create_app("web", ["dev", "staging", "production"], actor="t")
    await s.config.create_tool("deploy-hook", kind="webhook", actor="t")
    for (env, key), value in SECRETS.items():
        await s.config.set_secret(env, key, SecretValue(value), actor="t")
    for env in ("dev", "staging", "production"):
        await s.config.set_variable(env, "FEATURE", f"feature-{env}", actor="t")
        await s.config.set_variable(env, "HEALTH_URL", f"{hook_url}/health/{env}", actor="t")
        await s.config.set_tool_profile(
            "deploy-hook", env, url=f"{hook_url}/hooks/{env}", auth_secret="HOOK_TOKEN", actor="t"
        )


def pipeline(
    marker: Path | None = None,
    verify: str = "${{ vars.HEALTH_URL }}",
    sleep: float = 0,
    fail_step: bool = False,
) -> str:
    """A pipeline whose run step appends `<version> <env> start|end <time>` to `marker`."""
    script = (
        "import os, sys, time; v, e = os.environ['STAGELINE_VERSION'], "
        "os.environ['STAGELINE_ENVIRONMENT']; "
        f"m = {str(marker)!r}; "
        "log = lambda what: m != 'None' and "
        "open(m, 'a').write(f'{v} {e} {what} {time.time()}\\n'); "
        f"log('start'); time.sleep({sleep}); print('db', os.environ['DATABASE_URL']); "
        f"log('end'); sys.exit({1 if fail_step else 0})"
    )
    return f"""\
steps:
  - name: migrate
    run: [{sys.executable!r}, "-c", {script!r}]
    env: {{DATABASE_URL: "${{{{ secrets.DATABASE_URL }}}}", FEATURE: "${{{{ vars.FEATURE }}}}"}}
  - name: notify
    tool: deploy-hook
    with: {{version: "${{{{ release.version }}}}"}}
activate:
  - name: switch
    tool: deploy-hook
    with: {{action: activate, version: "${{{{ release.version }}}}"}}
verify:
  - name: health
    http: {{url: "{verify}", expect_status: 200, deadline_seconds: 2, interval_seconds: 0.5}}
"""


async def deployments_of(s: Stack, workflow_id: str) -> list[Deployment]:
    async with s.db.read() as session:
        rows = await session.scalars(
            select(Deployment).where(Deployment.workflow_id == workflow_id)
        )
        return list(rows)


def marked_pipeline(marker: Path, verify_sleep: float = 0) -> str:
    """A deploy step and a verification step, each appending `<section> start|end` to
    `marker`, so a test knows which is running and how often each ran."""

    def script(section: str, sleep: float) -> str:
        return (
            f"import time; m = open({str(marker)!r}, 'a', buffering=1); "
            f"m.write('{section} start\\n'); time.sleep({sleep}); m.write('{section} end\\n')"
        )

    return f"""\
steps:
  - name: deploy
    run: [{sys.executable!r}, "-c", {script("deploy", 0)!r}]
verify:
  - name: smoke
    run: [{sys.executable!r}, "-c", {script("verify", verify_sleep)!r}]
"""


def counts(marker: Path) -> dict[str, int]:
    lines = marker.read_text().splitlines()
    return {line: lines.count(line) for line in set(lines)}


async def assert_deployed_once(s: Stack, handle: Any, environment: str = "dev") -> None:
    """The new worker finished the promotion: one promotion record, one deployment, and the
    environment's pointer on the release."""
    result = await asyncio.wait_for(outcome(handle), 120)
    assert result.status == "deployed", result.reason
    [deployment] = await deployments_of(s, handle.id)
    assert deployment.status == "deployed" and deployment.finished_at is not None
    async with s.db.read() as session:
        records = await session.scalar(
            select(func.count()).select_from(Promotion).where(Promotion.workflow_id == handle.id)
        )
    assert records == 1
    assert (await s.views.status(environment=environment)).cells[0].version == "1.0.0"


async def wait_for_line(path: Path, text: str, timeout: float = 60) -> None:
    for _ in range(int(timeout * 10)):
        if path.exists() and text in path.read_text():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {path}")


@asynccontextmanager
async def workspace(
    temporal: Any,
    home: Path,
    *,
    production_approvals: int = 0,
    releases: Iterable[str] = (),
    **stack_options: Any,
) -> AsyncIterator[tuple[Stack, Recorder]]:
    """This scenario on a stack of its own, with its webhook receiver recording, and the
    given releases of web created."""
    with recorder() as hooks:
        async with stack(temporal, home, **stack_options) as s:
            await build(s, hooks.url, production_approvals=production_approvals)
            for version in releases:
                await s.releases.create_release("web", version, pipeline(), actor="t")
            yield s, hooks
