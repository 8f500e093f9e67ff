"""`run:` steps: a real subprocess, never through a shell, with a minimal environment."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from models.pipeline import Reference, substitute
from services.deployments import StepContext

# Passed through from the worker: what programs need to find themselves and speak the locale.
BASE_ENVIRONMENT = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SYSTEMROOT",
)
READ_CHUNK = 64 * 1024
MAX_CAPTURE = 1024 * 1024


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None
    output: str
    timed_out: bool = False


def render(ctx: StepContext, text: str) -> str:
    """Substitute references from the step's own resolved configuration."""

    def value(ref: Reference) -> str:
        if ref.kind == "vars":
            return ctx.config.vars[ref.name].value
        if ref.kind == "secrets":
            secret = ctx.config.secrets[ref.name].value
            assert secret is not None, "step secrets are resolved with decryption"
            return secret.reveal()
        if ref.kind == "tools":
            return ctx.config.tools[ref.name].url
        if ref.kind == "env":
            return ctx.environment
        return {"version": ctx.version, "app": ctx.app, "artifact": ctx.artifact or ""}[ref.name]

    return substitute(text, value)


def step_environment(ctx: StepContext, run_id: str) -> dict[str, str]:
    """Least privilege: a minimal base, stageline's own facts, and what the step names."""
    env = {k: os.environ[k] for k in BASE_ENVIRONMENT if k in os.environ}
    env.update(
        STAGELINE_APP=ctx.app,
        STAGELINE_ENVIRONMENT=ctx.environment,
        STAGELINE_VERSION=ctx.version,
        STAGELINE_STEP=ctx.step.name,
        STAGELINE_RUN_ID=run_id,
    )
    if ctx.artifact:
        env["STAGELINE_ARTIFACT"] = ctx.artifact
    # This environment's data namespaces, never another's.
    env["STAGELINE_DATA_NAMESPACE"] = f"{ctx.environment}/{ctx.app}"
    for kind, namespace in ctx.data_namespaces.items():
        env[f"STAGELINE_DATA_{kind.upper()}"] = namespace
    env.update({key: render(ctx, value) for key, value in ctx.step.env.items()})
    return env


async def run_process(
    argv: list[str],
    env: dict[str, str],
    timeout: float,
    heartbeat: Callable[[], None],
    cwd: str | None = None,
) -> RunResult:
    """Run argv, capture stdout+stderr, kill the whole process group on timeout or cancel."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_worker if sys.platform == "linux" else None,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        return RunResult(exit_code=127, output=f"cannot start {argv[0]!r}: {exc.strerror}")
    assert process.stdout is not None
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size
        assert process.stdout is not None
        while chunk := await process.stdout.read(READ_CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            while size > MAX_CAPTURE and len(chunks) > 1:
                size -= len(chunks.pop(0))

    reader = asyncio.ensure_future(read())
    timed_out = False
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                timed_out = True
                break
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), min(5.0, remaining))
                break
            except TimeoutError:
                heartbeat()
    finally:
        if process.returncode is None:
            _kill_group(process.pid)
            await process.wait()
        await reader
    output = b"".join(chunks).decode(errors="replace")
    return RunResult(
        exit_code=None if timed_out else process.returncode, output=output, timed_out=timed_out
    )


def on_parent_death(sig: int) -> Callable[[], None]:
    """A preexec function (Linux): the child gets `sig` when its parent dies, even by SIGKILL."""

    def arrange() -> None:
        with suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG

    return arrange


# If the worker dies, its step dies too: the retry on another worker never runs beside a
# stale copy of the same step.
_die_with_worker = on_parent_death(signal.SIGKILL)


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


async def run_step(ctx: StepContext, run_id: str, heartbeat: Callable[[], None]) -> RunResult:
    assert ctx.step.run is not None
    argv = [render(ctx, arg) for arg in ctx.step.run]
    return await run_process(
        argv, step_environment(ctx, run_id), float(ctx.step.timeout_seconds), heartbeat
    )
