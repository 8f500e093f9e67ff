"""`tool:` steps: call a webhook with the target environment's tool profile."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from activities.http_client import step_client
from activities.masking import mask
from activities.step_run import render
from models.resolution import StepContext

USER_AGENT = "stageline"
MAX_RESPONSE_CHARS = 2000


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    status: int | None
    output: str


async def call_tool(ctx: StepContext, run_id: str, heartbeat: Callable[[], None]) -> ToolResult:
    """POST a JSON body (the step's `with`, plus who and what) to the profile's URL.

    The profile's auth secret goes as a bearer token; its headers and params (as the query
    string) are added. Connection errors and 5xx answers are retried as the profile says;
    a 4xx is the receiver's final word and is not.
    """
    assert ctx.step.tool is not None
    profile = ctx.config.tools[ctx.step.tool]
    secrets = ctx.config.secret_values()
    headers = {"User-Agent": USER_AGENT, **profile.headers, "X-Stageline-Run-Id": run_id}
    if profile.auth_secret:
        secret = ctx.config.secrets[profile.auth_secret].value
        assert secret is not None
        if profile.auth_scheme == "basic":
            token = base64.b64encode(secret.reveal().encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        elif profile.auth_scheme == "header" and profile.auth_header:
            headers[profile.auth_header] = secret.reveal()
        else:
            headers["Authorization"] = f"Bearer {secret.reveal()}"
    body = {
        **profile.body,
        "app": ctx.app,
        "environment": ctx.environment,
        "version": ctx.version,
        "step": ctx.step.name,
        "run_id": run_id,
        "data_namespaces": ctx.data_namespaces,
        **{key: render(ctx, value) for key, value in ctx.step.with_.items()},
    }
    last = ""
    async with step_client(profile.timeout_seconds) as client:
        for attempt in range(profile.retries + 1):
            heartbeat()
            try:
                response = await client.post(
                    profile.url, json=body, headers=headers, params=profile.params
                )
            except httpx.HTTPError as exc:
                last = mask(f"{ctx.step.tool}: {type(exc).__name__} calling {profile.url}", secrets)
            else:
                # The whole answer is masked before it is cut: a receiver may echo the
                # request (its Authorization header, its JSON body) anywhere in it.
                answer = mask(response.text, secrets)[:MAX_RESPONSE_CHARS]
                summary = f"{ctx.step.tool}: HTTP {response.status_code}\n{answer}"
                if response.is_success:
                    return ToolResult(ok=True, status=response.status_code, output=summary)
                if response.status_code < 500:
                    return ToolResult(ok=False, status=response.status_code, output=summary)
                last = summary
            if attempt < profile.retries:
                await asyncio.sleep(min(2**attempt, 10))
    return ToolResult(ok=False, status=None, output=last)
