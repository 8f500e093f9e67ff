"""A workspace for promotion tests: dev, staging, production; app web; known secret values."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.stack import Stack
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
