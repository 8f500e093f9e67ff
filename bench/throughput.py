"""200 promotions at once, on SQLite and on PostgreSQL, with one and with two `stageline
worker` processes on one task queue; the bare baseline, in the promotion's shape, right
after each burst; the fastest burst of each side.

Each setup gets worker processes of its own on a task queue of its own, warmed with a few
promotions first; CPU is read before and after the burst (bench.cpu)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from bench.baseline import Work
from bench.common import history_facts, peak_rss_mb, ratio, start_profiler, wait_for_worker
from bench.cpu import Processes, Tally
from models.settings import Settings
from services.unit import Units
from store.database import Database
from vault.keys import MasterKey

THROUGHPUT = 200
WARM_EACH = 4  # promotions per worker process before the burst, untimed
ROUNDS = 2  # bursts per setup, each followed by a bare one
NOOP_PIPELINE = 'steps:\n  - name: one\n    run: ["true"]\n  - name: two\n    run: ["true"]\n'
BIN = Path(sys.executable).parent

Start = Callable[[], Awaitable[WorkflowHandle[Any, Any]]]
# promote(app, version, target, task_queue)
Promote = Callable[[str, str, str, str], Awaitable[WorkflowHandle[Any, Any]]]


@dataclass(frozen=True)
class Setup:
    backend: str
    url: str
    workers: int

    @property
    def label(self) -> str:
        return f"{self.backend}, {self.workers} worker{'s' if self.workers > 1 else ''}"

    @property
    def tag(self) -> str:
        return f"{self.backend[:2]}{self.workers}"

    @property
    def queue(self) -> str:
        return f"stageline-{self.tag}"


@dataclass(frozen=True)
class Stage:
    """What every setup shares: the stageline client, where workers connect, the dev server's
    and the PostgreSQL cluster's pids."""

    client: Client
    settings: Settings
    key: MasterKey
    key_text: str
    server: int | None
    postmaster: int | None


async def seed(stage: Stage, url: str, apps: list[str]) -> None:
    """One environment, `dev`, where none is yet; each app with a release 1.0.0."""
    settings = stage.settings.model_copy(update={"database_url": url})
    db = Database(url)
    try:
        async with Units(db, settings, stage.key).write() as w:
            if not await w.environments.list_environments():
                await w.environments.create_environment("dev", actor="bench")
            for app in apps:
                await w.environments.create_app(app, ["dev"], actor="bench")
                await w.releases.create_release(app, "1.0.0", NOOP_PIPELINE, actor="bench")
    finally:
        await db.close()


def spawn_worker(stage: Stage, setup: Setup) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STAGELINE_HOME": str(stage.settings.home),
        "TEMPORAL_ADDRESS": stage.settings.temporal_address,
        "STAGELINE_DATABASE_URL": setup.url,
        "STAGELINE_MASTER_KEY": stage.key_text,
        "STAGELINE_TASK_QUEUE": setup.queue,
    }
    with open(stage.settings.home / f"workers-{setup.tag}.log", "a") as logs:
        return subprocess.Popen(
            [str(BIN / "stageline"), "worker"], env=env, stdout=logs, stderr=logs
        )


async def burst(starts: Sequence[Start], processes: Processes) -> tuple[dict[str, Any], list[Any]]:
    """All started at once, each awaited; completed/s and CPU per workflow."""
    tally = Tally()
    before = processes.snapshot()
    began = time.perf_counter()
    handles = await asyncio.gather(*(start() for start in starts))
    results = await asyncio.gather(*(h.result() for h in handles))
    seconds = time.perf_counter() - began
    tally.add(before, processes.snapshot(), len(starts))
    facts = await history_facts(handles[0])
    figures = {
        "workflows": len(starts),
        "seconds": round(seconds, 2),
        "per_second": round(len(starts) / seconds, 1),
        "cpu_ms": tally.per_workflow_ms(),
        "shape": facts,
    }
    return figures, results


async def measure_setup(
    stage: Stage,
    setup: Setup,
    promote: Promote,
    bare: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """ROUNDS bursts of this setup, each followed by a bare burst (`bare(facts)`, given the
    history facts of a promotion in the burst before); the fastest of each side, with the
    CPU it took."""
    warm = [f"warm-{setup.tag}-{n}" for n in range(WARM_EACH * setup.workers)]
    loads = [[f"load-{setup.tag}-{r}-{n:03d}" for n in range(THROUGHPUT)] for r in range(ROUNDS)]
    await seed(stage, setup.url, warm + [app for load in loads for app in load])
    workers = [spawn_worker(stage, setup) for _ in range(setup.workers)]
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    try:
        await wait_for_worker(stage.client, setup.queue, setup.workers)
        if os.environ.get("BENCH_PROFILE"):  # the first worker of each setup, a file each
            start_profiler(workers[0].pid, f"{os.environ['BENCH_PROFILE']}.{setup.tag}")
        processes = Processes(tuple(w.pid for w in workers), stage.server, stage.postmaster)
        starts = [partial(promote, app, "1.0.0", "dev", setup.queue) for app in warm]
        await burst(starts, processes)
        for load in loads:
            starts = [partial(promote, app, "1.0.0", "dev", setup.queue) for app in load]
            figures, results = await burst(starts, processes)
            assert all(r.status == "deployed" for r in results), {r.status for r in results}
            ours.append(figures)
            theirs.append(await bare(figures["shape"]))
        best = max(ours, key=lambda f: f["per_second"])
        best["peak_rss_mb"] = max(peak_rss_mb(w.pid) for w in workers)
        best["rounds"] = [f["per_second"] for f in ours]
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    row = {"setup": setup.label, "backend": setup.backend, "workers": setup.workers, **best}
    baseline = max(theirs, key=lambda f: f["per_second"])
    baseline["rounds"] = [f["per_second"] for f in theirs]
    return row, baseline


def bare_work(facts: dict[str, Any]) -> Work:
    """The bare workflow in a promotion's shape, read from that promotion's history."""
    return Work(
        steps=facts["activities"],
        local_before=facts["local_before"],
        local_after=facts["local_activities"] - facts["local_before"],
    )


async def measure_all(
    stage: Stage,
    setups: list[Setup],
    promote: Promote,
    bare: Callable[[Work, int], Awaitable[WorkflowHandle[Any, Any]]],
    bare_pid: int,
) -> dict[str, Any]:
    """Each setup, each of its bursts followed by a bare burst in the first promotion's
    shape; a setup's ratio is its fastest burst against the fastest bare burst beside it.

    Beside, because the dev server keeps every history in memory and the machine's speed
    drifts: a baseline taken once, before the later setups ran, made them look slower than
    they are. The fastest of each, because this shared machine's other tenants come and go
    (a burst's background CPU went from 6 to 26 ms per workflow between two runs): as
    `timeit` takes the least disturbed run, on both sides alike."""
    rows: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    processes = Processes((bare_pid,), stage.server)
    shape: list[Work] = []

    async def bare_burst(facts: dict[str, Any]) -> dict[str, Any]:
        if not shape:  # every baseline in the shape of the first setup's promotion
            shape.append(bare_work(facts))
        starts = [partial(bare, shape[0], n) for n in range(THROUGHPUT)]
        figures, _ = await burst(starts, processes)
        figures["peak_rss_mb"] = peak_rss_mb(bare_pid)
        return figures

    for setup in setups:
        row, baseline = await measure_setup(stage, setup, promote, bare_burst)
        row["ratio"] = ratio(row["per_second"], baseline["per_second"])
        rows.append(row)
        baselines.append(baseline)
    return {"baseline": baselines[0], "baselines": baselines, "setups": rows}
