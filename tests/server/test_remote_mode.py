"""The CLI through a real `stageline server`, as a team uses it: an admin configures from
their laptop, CI promotes with scoped tokens, a reviewer approves, on-call rolls back. None
of those machines has the master key or the database; every refusal names the role needed,
exits 2 and is audited with the principal."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from models.promotion import train_workflow_id
from tests.server.conftest import PASSWORD, Served, no_secret_text
from tests.server.test_console_pages import browser_login

PIPELINE = f"""\
steps:
  - name: deploy
    run: [{sys.executable!r}, "-c", "import os; print('deploying to', os.environ['REGION'])"]
    env: {{REGION: "${{{{ vars.REGION }}}}", API_KEY: "${{{{ secrets.API_KEY }}}}"}}
"""

pytestmark = pytest.mark.timeout(300)


async def awaiting_approval(served: Served, token: str, pid: str) -> None:
    """Until the promotion waits for approval, as the reviewer sees it through the API."""
    with served.http(token) as http:
        for _ in range(300):
            found = await asyncio.to_thread(http.get, f"/api/v1/runs/{pid}")
            status = found.json().get("status") if found.status_code == 200 else None
            if status and status["phase"] == "awaiting_approval":
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"{pid} never waited for approval")


async def test_promote_approve_and_roll_back_through_the_server(
    served: Served, tmp_path: Path
) -> None:
    served.add_user("admin", "*:admin")
    admin = served.remote(name="admin")
    login = await admin.run("login", "admin", input=PASSWORD + "\n")
    assert login.code == 0, login.err
    assert "signed in" in login.out
    assert list((tmp_path / "remote-admin").iterdir()) == [tmp_path / "remote-admin/session.json"]

    # The admin configures everything from their own machine.
    for env, region in (("dev", "eu-dev"), ("production", "eu")):
        assert (await admin.run("var", "set", "REGION", region, "--env", env)).code == 0
        done = await admin.run(
            "secret", "set", "API_KEY", "--env", env, input=f"{env}-api-key-value\n"
        )
        assert done.code == 0, done.err
    protect = await admin.run(
        "env", "protect", "production", "--required-approvals", "1", "--reviewer", "rita",
        "--reviewer", "sam", "--require-verified-requester",
    )  # fmt: skip
    assert protect.code == 0, protect.err
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    for version in ("1.0.0", "1.1.0"):
        made = await admin.run(
            "release", "create", "web", version, "--pipeline", str(tmp_path / "pipeline.yaml")
        )
        assert made.code == 0, made.err

    rita_token = served.add_user("rita", "production:reviewer", "*:viewer")
    rita = served.remote(rita_token, name="rita")
    ci_dev = served.remote(served.ci_token("ci-dev", "--env", "dev", "--role", "deployer"), "d")
    ci_prod = served.remote(
        served.ci_token("ci-prod", "--env", "production", "--role", "deployer"), "p"
    )

    for version in ("1.0.0", "1.1.0"):
        into_dev = await ci_dev.run("promote", "web", version, "--to", "dev", "--wait", "--json")
        assert into_dev.code == 0, into_dev.out + into_dev.err
        assert json.loads(into_dev.out)["status"] == "deployed"

        # Scope: the dev token cannot reach production, and says what it would need.
        refused = await ci_dev.run("promote", "web", version, "--to", "production")
        assert refused.code == 2
        assert "scoped to dev, not production" in refused.err

        # CI waits for the outcome while the reviewer decides.
        waiting = asyncio.create_task(
            ci_prod.run("promote", "web", version, "--to", "production", "--wait", "--json")
        )
        pid = f"promote-web-{version}-production"
        await awaiting_approval(served, rita_token, pid)

        # The CI token is a deployer, not a reviewer: its approval is refused, naming the role.
        self_approval = await ci_prod.run("approve", pid)
        assert self_approval.code == 2
        assert "needs the reviewer role" in self_approval.err

        # A name on the command line is a claim: rita cannot decide as someone else.
        claimed = await rita.run("approve", pid, "--reviewer", "alice")
        assert claimed.code == 2 and "signed in as rita" in claimed.err

        approved = await rita.run("approve", pid, "--comment", "looks good")
        assert approved.code == 0, approved.err
        assert "signed by the server" in approved.out
        waited = await waiting
        assert waited.code == 0, waited.out + waited.err
        result = json.loads(waited.out)
        assert result["status"] == "deployed" and result["requester_verified"] is True

    status = json.loads((await rita.run("status", "--json")).out)
    assert {(c["environment"], c["version"]) for c in status["cells"]} >= {("production", "1.1.0")}

    # Roll back: a deployer of production may; the dev token may not.
    assert (await ci_dev.run("rollback", "web", "--env", "production")).code == 2
    rolled = await ci_prod.run("rollback", "web", "--env", "production", "--wait", "--json")
    assert rolled.code == 0, rolled.err
    assert json.loads(rolled.out)["to_version"] == "1.0.0"

    # Who did what is recorded with authenticated names, and refusals with the principal.
    history = json.loads((await rita.run("history", "web", "--env", "production", "--json")).out)
    requesters = {(d["requested_by"], d["requester_verified"]) for d in history["deployments"]}
    assert requesters == {("ci-prod", True)}
    audit = json.loads((await admin.run("audit", "--json", "--limit", "500")).out)
    refusals = [e for e in audit if e["action"] == "access.refused"]
    assert {e["actor"] for e in refusals} >= {"ci-dev", "ci-prod"}
    approvals = [e for e in audit if e["action"] == "promotion.approve"]
    assert approvals and all(e["actor"] == "rita" for e in approvals)

    # Self-review compares authenticated names: sam deploys and reviews production, and may
    # not approve his own promotion, whatever name he types.
    sam = served.remote(served.add_user("sam", "production:deployer", "production:reviewer"), "s")
    waiting = asyncio.create_task(
        sam.run("promote", "web", "1.1.0", "--to", "production", "--wait", "--json")
    )
    await awaiting_approval(served, rita_token, "promote-web-1.1.0-production")
    own = await sam.run("approve", "promote-web-1.1.0-production")
    assert own.code == 2 and "sam requested this promotion" in own.err, own.err
    assert (await rita.run("approve", "promote-web-1.1.0-production")).code == 0
    again = await waiting
    assert again.code == 0 and json.loads(again.out)["status"] == "deployed", again.err

    # Rita is a reviewer and viewer: she may not change production.
    change = await rita.run("env", "protect", "production", "--required-approvals", "0")
    assert change.code == 2 and "needs the admin role" in change.err
    shown = json.loads((await rita.run("env", "show", "production", "--json")).out)
    assert shown["protection"]["required_approvals"] == 1

    no_secret_text(served, PASSWORD, rita_token, *served.tokens.values())
    for home in ("remote-rita", "remote-d", "remote-p"):
        assert not list((tmp_path / home).glob("*.db")), "a remote CLI made a database"


async def test_starts_without_the_server_are_unverified_and_can_be_refused(
    served: Served, tmp_path: Path
) -> None:
    """The machine's embedded CLI (or the Temporal UI) can still start a promotion; with
    `--require-verified-requester` the environment refuses it, naming the way in."""
    machine = served.machine
    machine.ok("env", "protect", "dev", "--require-verified-requester")
    assert "verified requesters only" in machine.ok("env", "list").out
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.replace("secrets.API_KEY", "vars.REGION"))
    machine.ok("var", "set", "REGION", "eu", "--env", "dev")
    machine.ok("release", "create", "web", "1.0.0", "--pipeline", str(tmp_path / "pipeline.yaml"))
    embedded = await machine.run("promote", "web", "1.0.0", "--to", "dev", "--wait", "--json")
    assert embedded.code == 2, embedded.err
    assert "stageline server" in json.loads(embedded.out)["reason"]

    ci = served.remote(served.ci_token("ci", "--env", "dev", "--role", "deployer"), "ci")
    remote = await ci.run("promote", "web", "1.0.0", "--to", "dev", "--wait", "--force", "--json")
    assert remote.code == 0, remote.out + remote.err
    assert json.loads(remote.out)["requester_verified"] is True


async def test_a_release_train_through_the_server_shows_its_stages(
    served: Served, tmp_path: Path
) -> None:
    """`train --wait` remote: each stage's gates and steps as they happen, from the server."""
    machine = served.machine
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.replace("secrets.API_KEY", "vars.REGION"))
    for env in ("dev", "production"):
        machine.ok("var", "set", "REGION", "eu", "--env", env)
    machine.ok("release", "create", "web", "2.0.0", "--pipeline", str(tmp_path / "pipeline.yaml"))
    dev_only = served.remote(served.ci_token("t-dev", "--env", "dev", "--role", "deployer"), "t1")
    refused = await dev_only.run("train", "web", "2.0.0", "--through", "production")
    assert refused.code == 2 and "scoped to dev, not production" in refused.err
    ci = served.remote(served.ci_token("t-all", "--role", "deployer"), "t2")
    train = await ci.run("train", "web", "2.0.0", "--through", "production", "--wait")
    assert train.code == 0, train.out + train.err
    assert "stage dev: deployed" in train.err and "stage production: deployed" in train.err
    assert "deployed: web@2.0.0 -> production" in train.out
    # The console's page of the train: its stages, each linking to its promotion; ended.
    served.add_user("tina", "*:viewer")
    tina = browser_login(served, "tina")
    path = f"/runs/{train_workflow_id('web', '2.0.0', 'production')}"
    # In a thread: this test's event loop runs the worker that answers the page's queries.
    page = await asyncio.to_thread(tina.get, path)
    assert page.status_code == 200, page.text
    assert 'data-testid="phase">deployed<' in page.text
    assert 'href="/runs/promote-web-2.0.0-dev">deployed</a>' in page.text
    assert "Stages" in page.text
    assert "hx-trigger" not in page.text  # nothing left to follow
