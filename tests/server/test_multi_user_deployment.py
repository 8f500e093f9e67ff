"""The multi-user deployment of README "Running stageline for a team", on one machine: a
`stageline server` and two `stageline worker` processes on one PostgreSQL and one Temporal;
two CI jobs, each with its own scoped token, start 20 promotions at once through the CLI in
remote mode. Every promotion deploys exactly once, by a worker of the two, and every record
agrees."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import postgres
from tests.conftest import KEY_TEXT, STAGELINE, Cli, clean_environ
from tests.server.conftest import Served, server_process
from tests.stack import fresh_namespace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PIPELINE = f"""\
steps:
  - name: deploy
    run: [{sys.executable!r}, "-c", "import os; print('deploying', os.environ['REGION'])"]
    env: {{REGION: "${{{{ vars.REGION }}}}"}}
"""
APPS = 10  # per CI job


def call(http: httpx.Client, operation: str, **arguments: Any) -> None:
    answer = http.post(f"/api/v1/{operation}", json=arguments)
    assert answer.status_code == 200, answer.text


async def run_cli(cli: Cli, *args: str) -> tuple[int, str, str]:
    """The real executable, many at once (threads would queue them)."""
    process = await asyncio.create_subprocess_exec(
        STAGELINE,
        *args,
        env=cli.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_server_and_two_workers_on_postgresql_take_twenty_promotions(
    temporal: Any, pg: postgres.Cluster | None, tmp_path: Path
) -> None:
    assert pg is not None, postgres.available()
    database = pg.create_database(f"team_{uuid.uuid4().hex[:10]}")
    client = await fresh_namespace(temporal)
    home = tmp_path / "server"
    home.mkdir()
    env = clean_environ()
    env.update(
        STAGELINE_HOME=str(home),
        STAGELINE_DATABASE_URL=database,
        STAGELINE_MASTER_KEY=KEY_TEXT,
        STAGELINE_USER="root",
        TEMPORAL_ADDRESS=client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=client.namespace,
    )
    machine = Cli(env)
    machine.ok("env", "create", "dev")
    machine.ok("env", "create", "sandbox", "--after", "dev")

    workers = []
    log = tmp_path / "workers.log"
    with log.open("ab") as out:
        for _ in range(2):
            workers.append(subprocess.Popen([STAGELINE, "worker"], env=env, stdout=out, stderr=out))
    try:
        with server_process(machine, tmp_path) as served:
            await twenty_promotions(served, tmp_path, client, database, pg)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    assert "Traceback" not in log.read_text()


async def twenty_promotions(
    served: Served, tmp_path: Path, client: Any, database: str, pg: postgres.Cluster
) -> None:
    jobs = {
        "ci-a": ("dev", "a"),
        "ci-b": ("sandbox", "b"),
    }
    # The workspace, by an admin through the API (one CLI process per call would take most
    # of this test's time; the CLI's own remote calls are tested in test_remote_mode).
    with served.http(served.ci_token("setup", "--role", "admin")) as admin:
        for env_name, prefix in jobs.values():
            call(admin, "variables/set-variable", environment=env_name, key="REGION", value="eu")
            for i in range(APPS):
                call(admin, "environments/create-app", name=f"{prefix}{i}", environments=[env_name])
                call(
                    admin,
                    "releases/create-release",
                    app=f"{prefix}{i}",
                    version="1.0.0",
                    pipeline_text=PIPELINE,
                )
    clis = {}
    for job, (env_name, _) in jobs.items():
        token = served.ci_token(job, "--env", env_name, "--role", "deployer")
        clis[job] = served.remote(token, name=job)
        clis[job].env["CI"] = "true"

    starts = [
        run_cli(clis[job], "promote", f"{prefix}{i}", "1.0.0", "--to", env_name, "--wait", "--json")
        for job, (env_name, prefix) in jobs.items()
        for i in range(APPS)
    ]
    results = await asyncio.gather(*starts)
    for code, out, err in results:
        assert code == 0, out + err
        result = json.loads(out)
        assert result["status"] == "deployed" and result["requester_verified"] is True

    # Every record agrees: one deployment per promotion, deployed; each pointer on it; no
    # queue ticket left holding; the requester is the token that asked, proven.
    db = database.rsplit("/", 1)[1]
    rows = pg.psql(
        "SELECT a.name, e.name, d.status, d.requested_by, d.requester_verified, d.source "
        "FROM deployment d JOIN app a ON a.id = d.app_id "
        "JOIN environment e ON e.id = d.environment_id ORDER BY a.name",
        db,
    ).split()
    deployments = [tuple(r.split("|")) for r in rows]
    expected = [
        (f"{prefix}{i}", env_name, "deployed", job, "t", "ci")
        for job, (env_name, prefix) in jobs.items()
        for i in range(APPS)
    ]
    assert sorted(deployments) == sorted(expected)
    pointers = pg.psql(
        "SELECT count(*) FROM current_release c JOIN release r ON r.id = c.release_id "
        "WHERE r.version = '1.0.0'",
        db,
    ).strip()
    assert pointers == str(2 * APPS)
    assert (
        pg.psql("SELECT count(*) FROM deployment_ticket WHERE state <> 'done'", db).strip() == "0"
    )
    promotions = pg.psql("SELECT count(*), count(DISTINCT workflow_id) FROM promotion", db)
    assert promotions.strip() == f"{2 * APPS}|{2 * APPS}"

    # Both workers did the work (their identities in the histories).
    identities = set()
    for env_name, prefix in jobs.values():
        for i in range(APPS):
            handle = client.get_workflow_handle(f"promote-{prefix}{i}-1.0.0-{env_name}")
            async for event in handle.fetch_history_events():
                if event.HasField("activity_task_started_event_attributes"):
                    identities.add(event.activity_task_started_event_attributes.identity)
    assert len(identities) == 2, identities

    # Each token saw only its own environment.
    status = json.loads((await run_cli(clis["ci-a"], "status", "--json"))[1])
    assert {c["environment"] for c in status["cells"]} == {"dev"}
