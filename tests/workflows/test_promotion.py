"""PromotionWorkflow against a real Temporal dev server, real subprocesses, real HTTP."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.http_recorder import recorder
from tests.stack import Stack, stack
from vault.secret_value import SecretValue

DEV_SECRET = "dev-db-password-4f1c"
PROD_SECRET = "prod-db-password-9a7e"
DEV_TOKEN = "dev-hook-token-77aa"
PROD_TOKEN = "prod-hook-token-88bb"

PROBE = (
    "import json, os, sys; "
    "out = {k: os.environ.get(k) for k in ['DATABASE_URL', 'FEATURE', 'STAGELINE_RUN_ID', "
    "'STAGELINE_ENVIRONMENT', 'STAGELINE_DATA_NAMESPACE', 'STAGELINE_DATA_THREADS', 'UNRELATED']}; "
    "open(sys.argv[1], 'w').write(json.dumps({**out, 'keys': sorted(os.environ)})); "
    "print('connecting with', os.environ['DATABASE_URL'])"
)


def pipeline(probe_file: Path, verify_url: str | None = None) -> str:
    text = f"""\
steps:
  - name: migrate
    run: ["{sys.executable}", "-c", "{PROBE}", "{probe_file}"]
    env: {{DATABASE_URL: "${{{{ secrets.DATABASE_URL }}}}", FEATURE: "${{{{ vars.FEATURE }}}}"}}
  - name: notify
    tool: deploy-hook
    with: {{version: "${{{{ release.version }}}}", env: "${{{{ env.name }}}}"}}
"""
    if verify_url:
        text += f"""verify:
  - name: health
    http: {{url: "{verify_url}", expect_status: 200, deadline_seconds: 3, interval_seconds: 0.5}}
"""
    return text


@pytest.fixture
async def workspace(temporal: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    async with stack(temporal, tmp_path / "home") as s:
        for name in ("dev", "staging", "production"):
            await s.envs.create_environment(name, actor="t")
        await s.envs.create_app("web", ["dev", "staging", "production"], actor="t")
        await s.config.set_secret("dev", "DATABASE_URL", SecretValue(DEV_SECRET), actor="t")
        await s.config.set_secret("production", "DATABASE_URL", SecretValue(PROD_SECRET), actor="t")
        await s.config.set_secret("dev", "HOOK_TOKEN", SecretValue(DEV_TOKEN), actor="t")
        await s.config.set_secret("production", "HOOK_TOKEN", SecretValue(PROD_TOKEN), actor="t")
        await s.config.set_variable("dev", "FEATURE", "on-in-dev", actor="t")
        await s.config.set_variable("production", "FEATURE", "off-in-prod", actor="t")
        await s.config.create_tool("deploy-hook", kind="webhook", actor="t")
        yield s


async def test_dev_promotion_injects_only_dev_values_and_calls_only_dev_hook(
    workspace: Stack, tmp_path: Path
) -> None:
    probe = tmp_path / "probe.json"
    with recorder() as dev_hook, recorder() as prod_hook:
        await workspace.config.set_tool_profile(
            "deploy-hook",
            "dev",
            url=f"{dev_hook.url}/dev",
            auth_secret="HOOK_TOKEN",
            headers={"X-Env": "dev"},
            params={"region": "sandbox"},
            actor="t",
        )
        await workspace.config.set_tool_profile(
            "deploy-hook",
            "production",
            url=f"{prod_hook.url}/prod",
            auth_secret="HOOK_TOKEN",
            actor="t",
        )
        await workspace.releases.create_release("web", "1.0.0", pipeline(probe), actor="t")
        result = await workspace.promote("web", "1.0.0", "dev")

    assert result.status == "deployed", result.reason
    seen = json.loads(probe.read_text())
    assert seen["DATABASE_URL"] == DEV_SECRET and seen["FEATURE"] == "on-in-dev"
    assert seen["STAGELINE_ENVIRONMENT"] == "dev"
    assert seen["STAGELINE_DATA_NAMESPACE"] == seen["STAGELINE_DATA_THREADS"] == "dev/web"
    assert seen["STAGELINE_RUN_ID"].startswith("promote-web-1.0.0-dev/")
    assert seen["UNRELATED"] is None
    assert PROD_SECRET not in probe.read_text()
    # Least privilege: no HOOK_TOKEN (the step did not name it), nothing of the worker's own.
    assert "HOOK_TOKEN" not in seen["keys"] and "STAGELINE_MASTER_KEY" not in seen["keys"]

    assert prod_hook.calls == []
    [call] = dev_hook.calls
    assert call.path == "/dev" and call.query == {"region": ["sandbox"]}
    assert call.headers["Authorization"] == f"Bearer {DEV_TOKEN}"
    assert call.headers["X-Env"] == "dev"
    assert call.body["version"] == "1.0.0" and call.body["env"] == "dev"
    assert set(call.body["data_namespaces"].values()) == {"dev/web"}

    migrate = result.steps[0]
    assert migrate.status == "succeeded" and DEV_SECRET not in (migrate.detail or "")
    assert "connecting with ***" in (migrate.detail or "")


async def test_tool_profiles_authenticate_as_configured_and_add_body_fields(
    workspace: Stack, tmp_path: Path
) -> None:
    import base64

    await workspace.config.create_tool("basic-hook", kind="webhook", actor="t")
    await workspace.config.set_secret("dev", "BASIC", SecretValue("svc:pa55"), actor="t")
    text = (
        "steps:\n"
        "  - name: a\n    tool: deploy-hook\n    with: {x: '1'}\n"
        "  - name: b\n    tool: basic-hook\n"
    )
    with recorder() as hook:
        await workspace.config.set_tool_profile(
            "deploy-hook",
            "dev",
            url=f"{hook.url}/header",
            auth_secret="HOOK_TOKEN",
            auth_scheme="header",
            auth_header="X-Api-Key",
            body={"team": "web"},
            actor="t",
        )
        await workspace.config.set_tool_profile(
            "basic-hook",
            "dev",
            url=f"{hook.url}/basic",
            auth_secret="BASIC",
            auth_scheme="basic",
            actor="t",
        )
        await workspace.releases.create_release("web", "2.0.0", text, actor="t")
        result = await workspace.promote("web", "2.0.0", "dev")
    assert result.status == "deployed", result.reason
    by_path = {c.path: c for c in hook.calls}
    assert by_path["/header"].headers["X-Api-Key"] == DEV_TOKEN
    assert "Authorization" not in by_path["/header"].headers
    assert by_path["/header"].body["team"] == "web" and by_path["/header"].body["x"] == "1"
    expected = base64.b64encode(b"svc:pa55").decode()
    assert by_path["/basic"].headers["Authorization"] == f"Basic {expected}"
