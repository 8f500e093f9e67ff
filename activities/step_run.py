"""`run:` steps: a real subprocess, never through a shell, with a minimal environment."""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass

from activities.masking import StreamMasker
from activities.sandbox import StepSandbox
from models.pipeline import Reference, substitute
from models.resolution import StepContext

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
    *,
    secrets: Sequence[str] = (),
    die_with_worker: bool = True,
) -> RunResult:
    """Run argv, capture stdout+stderr, kill the whole process group on timeout or cancel.

    The output is masked as it is read (`secrets`), and only masked text is capped.
    """
    try:
        process = await _spawn(argv, env, cwd, die_with_worker)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        return RunResult(exit_code=127, output=f"cannot start {argv[0]!r}: {exc.strerror}")
    assert process.stdout is not None
    capture = _MaskedCapture(secrets)
    reader = asyncio.ensure_future(capture.drain(process.stdout))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        timed_out = await _wait_until(process, deadline, heartbeat)
    finally:
        if process.returncode is None:
            _kill_group(process.pid)
            await process.wait()
        await reader
    return RunResult(
        exit_code=None if timed_out else process.returncode,
        output=capture.finish(),
        timed_out=timed_out,
    )


async def _spawn(
    argv: list[str], env: dict[str, str], cwd: str | None, die_with_worker: bool
) -> asyncio.subprocess.Process:
    """Start argv in a session of its own (a process group to kill), output on one pipe."""
    return await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        # Not needed when argv sees to it (bwrap --die-with-parent); without a preexec
        # function Python spawns with vfork instead of forking the whole worker.
        preexec_fn=_die_with_worker if die_with_worker and sys.platform == "linux" else None,
    )


class _MaskedCapture:
    """A process's output, masked as it arrives and capped to its last MAX_CAPTURE characters.

    Mask first, then cap: a cap on raw output could keep the end of a secret whose start
    it dropped, which no longer matches the secret. A UTF-8 character split across reads
    is decoded whole.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        self._masker = StreamMasker(secrets)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._kept: deque[str] = deque()
        self._size = 0

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(READ_CHUNK):
            self._keep(self._masker.feed(self._decoder.decode(chunk)))

    def finish(self) -> str:
        """The capped output, once the stream is drained: what the masker still held."""
        self._keep(self._masker.feed(self._decoder.decode(b"", final=True)) + self._masker.finish())
        return "".join(self._kept)[-MAX_CAPTURE:]

    def _keep(self, masked: str) -> None:
        if not masked:
            return
        self._kept.append(masked)
        self._size += len(masked)
        while self._size - len(self._kept[0]) >= MAX_CAPTURE:
            self._size -= len(self._kept.popleft())


async def _wait_until(
    process: asyncio.subprocess.Process, deadline: float, heartbeat: Callable[[], None]
) -> bool:
    """Wait for the process to exit, heartbeating every 5 s; True if the loop's clock reached
    `deadline` first."""
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), min(5.0, remaining))
            return False
        except TimeoutError:
            heartbeat()


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


async def run_step(
    ctx: StepContext,
    run_id: str,
    heartbeat: Callable[[], None],
    *,
    sandbox: StepSandbox | None,
    secrets: Sequence[str] = (),
) -> RunResult:
    """Run the step in `sandbox` (the worker's; None only when its operator opted out), its
    output masked for `secrets` as it is read."""
    assert ctx.step.run is not None
    argv = [render(ctx, arg) for arg in ctx.step.run]
    env = step_environment(ctx, run_id)
    timeout = float(ctx.step.timeout_seconds)
    if sandbox is None:
        return await run_process(argv, env, timeout, heartbeat, secrets=secrets)
    async with sandbox.workdir() as workdir:
        ran = await run_process(
            sandbox.command(argv, workdir),
            sandbox.environment(env),
            timeout,
            heartbeat,
            secrets=secrets,
            die_with_worker=False,
        )
    return _exec_failure(argv, ran)


def _exec_failure(argv: list[str], ran: RunResult) -> RunResult:
    """bwrap reports a program it cannot start as `bwrap: execvp PROG: REASON`, exit 1; say
    it as an unsandboxed start failure reads (exit 127)."""
    prefix = f"bwrap: execvp {argv[0]}: "
    if ran.exit_code == 1 and ran.output.startswith(prefix):
        reason = ran.output.removeprefix(prefix).strip()
        return RunResult(exit_code=127, output=f"cannot start {argv[0]!r}: {reason}")
    return ran
