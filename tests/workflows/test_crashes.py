"""A worker killed with SIGKILL in each phase of a promotion (gates, waiting for approval,
inside a step, during verification, while recording): a new worker finishes it, with exactly
one promotion and one deployment record and the right pointer. Steps run at least once, with
a stable run id.

The gates and recording kills run on PostgreSQL, where the test can hold a lock the worker's
own write waits on and see it waiting (pg_stat_activity): the kill lands exactly there."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from models.review import Decision
from store.tables import StepRun
from tests import postgres
from tests.conftest import STAGELINE, Cli
from tests.http_recorder import recorder
from tests.stack import Stack, outcome, stack, until_phase
from tests.workflows import scenario
from workflows import contract

# Among the slowest suites (workers killed, databases stopped): `make test-fast` leaves
# them out; `make test` and CI run them.
pytestmark = pytest.mark.slow


class Workers:
    """`stageline worker` processes, as an operator runs them, that a test can kill."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as out:
            process = subprocess.Popen([STAGELINE, "worker"], env=self.env, stdout=out, stderr=out)
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


@pytest.fixture(params=["sqlite"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """SQLite by default; the tests that need PostgreSQL ask for it by name."""
    if request.param == "sqlite":
        return None
    cluster: postgres.Cluster | None = request.getfixturevalue("pg")
    assert cluster is not None, postgres.available()
    return cluster.create_database(f"crash_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def ws(
    temporal: Any, tmp_path: Path, store_url: str | None
) -> AsyncIterator[tuple[Stack, Workers]]:
    with recorder() as hooks:
        # The in-process worker listens on a queue of its own; the promotions go to the
        # `stageline-crash` queue that only the killable worker processes serve.
        async with stack(temporal, tmp_path / "home", database_url=store_url) as s:
            await scenario.build(s, hooks.url, production_approvals=1)
            env = {**s.cli().env, "STAGELINE_TASK_QUEUE": "stageline-crash"}
            workers = Workers(env, tmp_path / "workers.log")
            try:
                yield s, workers
            finally:
                workers.stop_all()
            # Killed mid-step, retried, recovered: still no secret in any worker's log.
            log = workers.log.read_text() if workers.log.exists() else ""
            for value in scenario.SECRETS.values():
                assert value not in log, f"{value} in a worker's log"


async def start(s: Stack, version: str, target: str, by: str = "tester") -> Any:
    from models.promotion import PromotionInput, promotion_workflow_id

    return await contract.start(
        s.client,
        contract.PROMOTION,
        PromotionInput(app="web", version=version, target=target, requested_by=by, source="api"),
        id=promotion_workflow_id("web", version, target),
        task_queue="stageline-crash",
    )


async def test_worker_killed_inside_a_step_another_worker_finishes_once(
    ws: tuple[Stack, Workers], tmp_path: Path
) -> None:
    s, workers = ws
    marker = tmp_path / "steps"
    await s.releases.create_release(
        "web", "1.0.0", scenario.pipeline(marker=marker, sleep=3), actor="t"
    )
    first = workers.start()
    handle = await start(s, "1.0.0", "dev")
    await scenario.wait_for_line(marker, "1.0.0 dev start")
    workers.kill(first)
    workers.start()
    result = await asyncio.wait_for(outcome(handle), 120)
    assert result.status == "deployed"
    lines = marker.read_text().splitlines()
    whats = [line.split()[2] for line in lines]
    assert whats.count("start") == 2  # at least once: the step ran again on the new worker
    assert whats.count("end") == 1  # and the killed worker's copy died with it
    [deployment] = await scenario.deployments_of(s, handle.id)
    assert deployment.status == "deployed"
    assert (await s.views.status(environment="dev")).cells[0].version == "1.0.0"


async def test_worker_killed_while_waiting_for_approval_a_new_worker_carries_on(
    ws: tuple[Stack, Workers],
) -> None:
    s, workers = ws
    await s.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    worker = workers.start()
    for target in ("dev", "staging"):
        assert (await outcome(await start(s, "1.0.0", target))).status == "deployed"
    handle = await start(s, "1.0.0", "production", by="alice")
    await until_phase(handle, "awaiting_approval")
    workers.kill(worker)
    # Arrives while no worker runs.
    await contract.PromotionHandle(handle).approve(Decision(reviewer="bob"))
    workers.start()
    result = await asyncio.wait_for(outcome(handle), 120)
    assert result.status == "deployed"
    assert len(await scenario.deployments_of(s, handle.id)) == 1
    assert (await s.views.status(environment="production")).cells[0].version == "1.0.0"


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_worker_killed_during_gates_a_new_worker_finishes_once(
    ws: tuple[Stack, Workers], tmp_path: Path
) -> None:
    s, workers = ws
    marker = tmp_path / "steps"
    await s.releases.create_release("web", "1.0.0", scenario.marked_pipeline(marker), actor="t")
    blocker = postgres.LockHolder(s.settings.database_url)
    # Reads go on; the gates' write of the promotion record waits.
    await blocker.hold("LOCK TABLE promotion IN EXCLUSIVE MODE")
    first = workers.start()
    handle = await start(s, "1.0.0", "dev")
    assert "promotion" in await blocker.waiting("INSERT INTO promotion")
    workers.kill(first)
    await blocker.release()
    workers.start()
    await scenario.assert_deployed_once(s, handle)
    assert scenario.counts(marker) == {
        "deploy start": 1,
        "deploy end": 1,
        "verify start": 1,
        "verify end": 1,
    }


async def test_worker_killed_during_verification_a_new_worker_finishes_once(
    ws: tuple[Stack, Workers], tmp_path: Path
) -> None:
    s, workers = ws
    marker = tmp_path / "steps"
    await s.releases.create_release(
        "web", "1.0.0", scenario.marked_pipeline(marker, verify_sleep=3), actor="t"
    )
    first = workers.start()
    handle = await start(s, "1.0.0", "dev")
    await scenario.wait_for_line(marker, "verify start")
    workers.kill(first)
    workers.start()
    await scenario.assert_deployed_once(s, handle)
    # The deploy step ran once; the verification ran again on the new worker.
    assert scenario.counts(marker) == {
        "deploy start": 1,
        "deploy end": 1,
        "verify start": 2,
        "verify end": 1,
    }
    async with s.db.read() as session:
        verify_runs = (
            await session.scalars(select(StepRun).where(StepRun.section == "verify"))
        ).all()
    assert [r.status for r in verify_runs] == ["succeeded"]


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_worker_killed_while_recording_a_new_worker_finishes_once(
    ws: tuple[Stack, Workers], tmp_path: Path
) -> None:
    s, workers = ws
    marker = tmp_path / "steps"
    await s.releases.create_release(
        "web", "1.0.0", scenario.marked_pipeline(marker, verify_sleep=1), actor="t"
    )
    first = workers.start()
    handle = await start(s, "1.0.0", "dev")
    await scenario.wait_for_line(marker, "verify start")
    # The deployment row exists now; recording its end (and moving the pointer) will wait.
    blocker = postgres.LockHolder(s.settings.database_url)
    await blocker.hold(
        "SELECT id FROM deployment WHERE workflow_id = $1 FOR NO KEY UPDATE", handle.id
    )
    assert "UPDATE deployment" in await blocker.waiting("UPDATE deployment")
    workers.kill(first)
    await blocker.release()
    workers.start()
    await scenario.assert_deployed_once(s, handle)
    # Every step had finished before the kill: none ran again.
    assert scenario.counts(marker) == {
        "deploy start": 1,
        "deploy end": 1,
        "verify start": 1,
        "verify end": 1,
    }


async def test_a_promotion_waiting_across_a_master_key_rotation_completes(
    ws: tuple[Stack, Workers], tmp_path: Path
) -> None:
    """Its history holds payloads under the old key: a worker with the new key and the old
    one as a previous key carries it on; one without the old key cannot, and says which key
    it lacks."""
    s, workers = ws
    await s.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    old_worker = workers.start()
    for target in ("dev", "staging"):
        assert (await outcome(await start(s, "1.0.0", target))).status == "deployed"
    handle = await start(s, "1.0.0", "production", by="alice")
    await until_phase(handle, "awaiting_approval")
    workers.kill(old_worker)

    cli = s.cli()
    old_key, new_key = tmp_path / "old.key", tmp_path / "new.key"
    old_key.write_text(cli.env["STAGELINE_MASTER_KEY"])
    new_key.write_text((await cli.run("vault", "generate-key")).out)
    for path in (old_key, new_key):
        path.chmod(0o600)
    rotated = await cli.run("vault", "rotate", "--new-key-file", str(new_key))
    assert rotated.code == 0, rotated.err
    base = {k: v for k, v in workers.env.items() if k != "STAGELINE_MASTER_KEY"}
    new_only = {**base, "STAGELINE_MASTER_KEY_FILE": str(new_key)}

    # bob's approval arrives (sent before the rotation reached this client: old key).
    await contract.PromotionHandle(handle).approve(Decision(reviewer="bob"))
    # A worker without the old key cannot read the history: its task fails, naming the
    # key it lacks and where to give it; Temporal keeps the task for a worker that can.
    workers.env = new_only
    lacking = workers.start()
    await scenario.wait_for_line(workers.log, "STAGELINE_PREVIOUS_MASTER_KEY_FILES")
    workers.kill(lacking)

    workers.env = {**new_only, "STAGELINE_PREVIOUS_MASTER_KEY_FILES": str(old_key)}
    workers.start()
    for _ in range(600):
        deployments = await scenario.deployments_of(s, handle.id)
        if deployments and deployments[0].finished_at is not None:
            break
        await asyncio.sleep(0.2)
    [deployment] = await scenario.deployments_of(s, handle.id)
    assert deployment.status == "deployed"
    # The new key reads it all now, old payloads and new.
    status = await Cli(workers.env).run("status", "--env", "production", "--json")
    assert status.code == 0 and '"1.0.0"' in status.out, status.err
