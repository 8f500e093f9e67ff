"""What the step sandbox costs per `run:` step: `python -m bench.sandbox` (a few seconds).

Each step is spawned, run to its end and reaped through `activities.step_run.run_process`,
as the worker does: unsandboxed as before the sandbox (a `PR_SET_PDEATHSIG` preexec
function, so Python forks the whole worker), and sandboxed (bwrap, whose --die-with-parent
replaces the preexec function, so Python can vfork; plus the step's private work dir). This
process carries a ballast of the worker's resident size under load (BENCH_BALLAST_MB, 180 by
default, README "Performance"), since forking cost grows with it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from activities.sandbox import StepSandbox, build
from activities.step_run import run_process

RUNS, WARMUP = 50, 5
PROGRAMS = {"true": ["true"], "python -c pass": [sys.executable, "-c", "pass"]}


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered) * 1000, "p95_ms": p95 * 1000}


async def _timed(run: Callable[[], Awaitable[None]]) -> dict[str, float]:
    samples = []
    for i in range(WARMUP + RUNS):
        began = time.perf_counter()
        await run()
        if i >= WARMUP:
            samples.append(time.perf_counter() - began)
    return _stats(samples)


async def measure() -> dict[str, Any]:
    ballast_mb = int(os.environ.get("BENCH_BALLAST_MB", "180"))
    ballast = bytearray(ballast_mb << 20)
    for i in range(0, len(ballast), 4096):  # resident, as a worker's heap is
        ballast[i] = 1
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SystemExit("bwrap is not installed: apt-get install bubblewrap")
    box: StepSandbox = build(bwrap, cwd=Path.cwd())
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def noop() -> None:
        pass

    async def unsandboxed(argv: list[str], fork: bool = True) -> None:
        done = await run_process(argv, env, 30, noop, die_with_worker=fork)
        assert done.exit_code == 0, done.output

    async def sandboxed(argv: list[str]) -> None:
        async with box.workdir() as workdir:
            done = await run_process(
                box.command(argv, workdir), box.environment(env), 30, noop, die_with_worker=False
            )
        assert done.exit_code == 0, done.output

    rows = []
    for name, argv in PROGRAMS.items():
        before = await _timed(partial(unsandboxed, argv))
        # Not an option (nothing would tie the step to the worker): bwrap's own cost.
        vfork = await _timed(partial(unsandboxed, argv, fork=False))
        after = await _timed(partial(sandboxed, argv))
        rows.append(
            {
                "program": name,
                "unsandboxed": before,
                "unsandboxed_vfork": vfork,
                "sandboxed": after,
                "added_ms": after["median_ms"] - before["median_ms"],
                "bwrap_ms": after["median_ms"] - vfork["median_ms"],
            }
        )
    del ballast
    return {"ballast_mb": ballast_mb, "runs": RUNS, "steps": rows}


def report(results: dict[str, Any]) -> str:
    lines = [
        f"| one step, spawn to exit, from a {results['ballast_mb']} MB process (median / p95 ms)"
        " | before: unsandboxed, fork | sandboxed: bwrap, vfork | change | bwrap alone "
        "(vs. unsandboxed vfork) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in results["steps"]:
        u, s, v = row["unsandboxed"], row["sandboxed"], row["unsandboxed_vfork"]
        lines.append(
            f"| `{row['program']}` | {u['median_ms']:.1f} / {u['p95_ms']:.1f} | "
            f"{s['median_ms']:.1f} / {s['p95_ms']:.1f} | {row['added_ms']:+.1f} | "
            f"{row['bwrap_ms']:+.1f} (vfork: {v['median_ms']:.1f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(asyncio.run(measure())))
