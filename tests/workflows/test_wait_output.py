"""What `promote --wait` and `train --wait` print while they wait, and what `history` prints,
through the real `stageline` executable against a real dev server and worker: in a pipe (as
CI reads it), with --json, and on a terminal (a pseudo-terminal)."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from models.promotion import PromotionResult
from models.review import Decision
from tests.conftest import STAGELINE, Result
from tests.http_recorder import Recorder
from tests.stack import Stack, outcome, until_phase
from tests.workflows import scenario
from workflows.contract import PromotionHandle

ANSI = re.compile(r"\x1b[\[\]()]")


@pytest.fixture
async def scenario_ws(temporal: Any, tmp_path: Path) -> AsyncIterator[tuple[Stack, Recorder]]:
    async with scenario.workspace(
        temporal, tmp_path / "home", production_approvals=1, releases=("1.0.0",)
    ) as built:
        yield built


async def result_of(s: Stack, workflow_id: str) -> PromotionResult:
    return await outcome(s.client.get_workflow_handle(workflow_id, result_type=PromotionResult))


def in_order(lines: list[str], wanted: list[str]) -> None:
    """Each wanted line appears exactly once, and in this order."""
    for line in wanted:
        assert lines.count(line) == 1, (line, lines)
    positions = [lines.index(line) for line in wanted]
    assert positions == sorted(positions), lines


def steps_of(lines: list[str]) -> list[str]:
    """`step section/name: status` of each step line, without its duration."""
    return [re.sub(r" in [0-9.]+[a-z]+.*$", "", line.strip()) for line in lines if "step " in line]


async def test_a_fast_promotion_in_a_pipe_prints_every_gate_phase_and_step_once(
    ws: Stack,
) -> None:
    done = await ws.cli().run("promote", "web", "1.0.0", "--to", "dev", "--wait")
    assert done.code == 0, done.err
    # The outcome on stdout, as before; the progress on stderr, plain: no escape codes.
    assert done.out.startswith("deployed: web@1.0.0 -> dev"), done.out
    assert not ANSI.search(done.err) and not ANSI.search(done.out), repr(done.err)
    assert "\r" not in done.err
    lines = done.err.splitlines()
    result = await result_of(ws, "promote-web-1.0.0-dev")
    gates = [f"  pass {g.name}: {g.reason}" for g in result.gates]
    assert len(gates) >= 4 and all(g.passed for g in result.gates)
    in_order(
        lines,
        [
            "phase: gates",
            *gates,
            "phase: deploying",
            "phase: verifying",
        ],
    )
    assert [line for line in lines if line.startswith("phase: ")] in (
        ["phase: gates", "phase: deploying", "phase: verifying"],
        ["phase: validating", "phase: gates", "phase: deploying", "phase: verifying"],
    )
    # Both deploy steps and the verification, each once, in order, each with its duration.
    assert steps_of(lines) == [
        "step steps/migrate: succeeded",
        "step steps/notify: succeeded",
        "step verify/health: succeeded",
    ]
    assert all(re.search(r" in [0-9.]+(ms|s)$", line) for line in lines if "step " in line), lines
    in_order(
        lines,
        [
            "phase: deploying",
            next(line for line in lines if "steps/migrate" in line),
            next(line for line in lines if "steps/notify" in line),
            "phase: verifying",
            next(line for line in lines if "verify/health" in line),
        ],
    )
    # No phase that did not happen: dev is not protected, nothing was compensated.
    assert "awaiting_approval" not in done.err and "compensating" not in done.err

    # --json: exactly one JSON object on stdout, and nothing of the progress.
    staged = await ws.cli().run("promote", "web", "1.0.0", "--to", "staging", "--wait", "--json")
    assert staged.code == 0, staged.err
    answer = json.loads(staged.out)
    assert isinstance(answer, dict) and answer["status"] == "deployed"
    assert "phase:" not in staged.err and "step " not in staged.err


async def test_a_compensated_promotion_shows_the_failed_step_and_the_compensation(
    ws: Stack,
) -> None:
    await ws.releases.create_release(
        "web", "1.1.0", scenario.pipeline(verify="http://127.0.0.1:9/nothing-listens"), actor="t"
    )
    assert (await ws.promote("web", "1.0.0", "dev")).status == "deployed"
    failed = await ws.cli().run("promote", "web", "1.1.0", "--to", "dev", "--wait")
    assert failed.code == 1, failed.err
    assert failed.out.startswith("failed: web@1.1.0 -> dev"), failed.out
    lines = failed.err.splitlines()
    assert steps_of(lines) == [
        "step steps/migrate: succeeded",
        "step steps/notify: succeeded",
        "step verify/health: failed",
        "step activate/switch: succeeded",  # the compensating rollback's own step
    ]
    in_order(lines, ["phase: gates", "phase: deploying", "phase: verifying", "phase: compensating"])
    compensating = lines.index("phase: compensating")
    assert compensating > lines.index(next(line for line in lines if "verify/health" in line))
    assert compensating < lines.index(next(line for line in lines if "activate/switch" in line))
    assert not ANSI.search(failed.err)


async def test_train_wait_in_a_pipe_prints_each_stage_its_steps_approval_and_outcome(
    ws: Stack,
) -> None:
    cli = ws.cli()
    running = asyncio.ensure_future(
        cli.run("train", "web", "1.0.0", "--through", "production", "--wait")
    )
    production = ws.client.get_workflow_handle("promote-web-1.0.0-production")
    await until_phase(production, "awaiting_approval", timeout=90)
    await asyncio.sleep(1.5)  # the CLI looks every half second: let it see the approval wait
    assert (await cli.run("approve", production.id, "--reviewer", "bob")).code == 0
    done = await running
    assert done.code == 0, done.err
    # The outcome lines on stdout, as before: one per stage.
    assert done.out.splitlines() == [
        "deployed: web@1.0.0 -> dev",
        "deployed: web@1.0.0 -> staging",
        "deployed: web@1.0.0 -> production",
    ]
    assert not ANSI.search(done.err), repr(done.err)
    lines = done.err.splitlines()
    assert lines[0] == "train web@1.0.0 through production: dev, staging, production"
    in_order(
        lines,
        [
            "stage dev: promote-web-1.0.0-dev",
            "stage dev: deployed",
            "stage staging: promote-web-1.0.0-staging",
            "stage staging: deployed",
            "stage production: promote-web-1.0.0-production",
            "  phase: awaiting_approval",
            "stage production: deployed",
        ],
    )
    waiting = [line for line in lines if "approvals 0/1" in line]
    assert len(waiting) == 1 and "may approve: alice, bob, carol" in waiting[0], lines
    # Every stage's steps, each once, inside its own stage.
    for env in ("dev", "staging", "production"):
        begin = lines.index(f"stage {env}: promote-web-1.0.0-{env}")
        end = lines.index(f"stage {env}: deployed")
        block = lines[begin:end]
        assert steps_of(block) == [
            "step steps/migrate: succeeded",
            "step steps/notify: succeeded",
            "step verify/health: succeeded",
        ], block
        assert all(line.startswith("  ") for line in block[1:]), block
        assert "  phase: gates" in block and "  phase: deploying" in block


async def test_history_shows_why_a_decision_was_refused_and_marks_what_it_cut(
    ws: Stack,
) -> None:
    for env in ("dev", "staging"):
        assert (await ws.promote("web", "1.0.0", env)).status == "deployed"
    handle = await ws.start_promotion("web", "1.0.0", "production", requested_by="alice")
    await until_phase(handle, "awaiting_approval")
    # The requester approves her own promotion, with a comment: refused, for a reason.
    await PromotionHandle(handle).approve(Decision(reviewer="alice", comment="trust me"))
    comment = (
        "not during the sale: the payment provider asked us to hold every change until "
        "the traffic peak is over on Monday morning"
    )
    cli = ws.cli()
    assert (await cli.run("reject", handle.id, "--reviewer", "bob", "--comment", comment)).code == 0
    assert (await outcome(handle)).status == "rejected"

    shown = await cli.run("history", "web", "--env", "production")
    assert shown.code == 0, shown.err
    [refused] = [line for line in shown.out.splitlines() if "promotion.refused" in line]
    assert "alice requested this promotion and may not approve it" in refused, refused
    assert "trust me" not in refused
    [rejected] = [line for line in shown.out.splitlines() if "promotion.reject " in line]
    assert "…" in rejected, rejected
    kept = rejected.split("not during the sale", 1)[1].split("…", 1)[0]
    kept = "not during the sale" + kept
    assert comment.startswith(kept) and len(kept) < len(comment)
    assert comment[len(kept)] == " ", (kept, comment)  # cut at a word, not inside one
    assert "… marks a reason or comment cut at a word" in shown.out
    assert "--json' has each whole" in shown.out
    whole = json.loads((await cli.run("history", "web", "--env", "production", "--json")).out)
    assert comment in [e["detail"].get("comment") for e in whole["events"]]


def run_in_terminal(env: dict[str, str], *args: str) -> Result:
    """Run stageline with stdin, stdout and stderr on a pseudo-terminal, as a person would."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    terminal = {k: v for k, v in env.items() if k not in ("NO_COLOR", "CI")}
    terminal["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [STAGELINE, *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=terminal,
        cwd=env["STAGELINE_HOME"],
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last process holding the terminal has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    code = proc.wait(timeout=180)
    return Result(code, b"".join(chunks).decode("utf-8", "replace"), "")


async def test_on_a_terminal_rich_shows_the_steps_and_the_outcome(ws: Stack) -> None:
    done = await asyncio.to_thread(
        run_in_terminal, ws.cli().env, "promote", "web", "1.0.0", "--to", "dev", "--wait"
    )
    assert done.code == 0, done.out
    screen = done.out
    assert ANSI.search(screen), repr(screen)  # styled: a terminal
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    for text in ("gates", "deploying", "verifying", "migrate", "notify", "health"):
        assert text in plain, plain
    assert plain.count("✓ migrate") == 1 and plain.count("✓ health") == 1, plain
    assert "deployed: web@1.0.0 -> dev" in plain
