"""`http:` checks: a request whose status must match, retried until a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from activities.http_client import step_client
from activities.masking import mask
from activities.step_run import render
from models.resolution import StepContext


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    status: int | None
    output: str


async def check_http(ctx: StepContext, heartbeat: Callable[[], None]) -> CheckResult:
    check = ctx.step.http
    assert check is not None
    url = render(ctx, check.url)
    # A secret in the URL (a token in the query) must not reach the output.
    shown = mask(url, ctx.config.secret_values())
    headers = {key: render(ctx, value) for key, value in check.headers.items()}
    deadline = time.monotonic() + check.deadline_seconds
    attempts = 0
    last = ""
    async with step_client(check.timeout_seconds) as client:
        while True:
            attempts += 1
            heartbeat()
            try:
                response = await client.request(check.method, url, headers=headers)
            except httpx.HTTPError as exc:
                status, last = None, f"{type(exc).__name__}"
            else:
                status, last = response.status_code, f"HTTP {response.status_code}"
                if status == check.expect_status:
                    return CheckResult(
                        ok=True,
                        status=status,
                        output=f"{check.method} {shown}: {last} after {attempts} attempt(s)",
                    )
            if time.monotonic() + check.interval_seconds >= deadline:
                return CheckResult(
                    ok=False,
                    status=status,
                    output=f"{check.method} {shown}: expected HTTP {check.expect_status}, last got "
                    f"{last} after {attempts} attempt(s) in {check.deadline_seconds:g}s",
                )
            await asyncio.sleep(check.interval_seconds)
