"""Configuration lifecycle through the real CLI against a real SQLite file: which
environments an app points to, deleting variables and secrets, renaming and removing reviewer
groups, certificate expiry, --json everywhere, and refusals in the audit log."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest

from models.errors import MissingConfiguration
from models.pipeline import parse_pipeline
from models.promotion import ConfigVersions, PromotionInput, PromotionOutcome, WorkflowRef
from models.settings import Settings
from models.status import PromotionEnd
from services.unit import Units
from store.database import Database
from tests.conftest import ROOT, Cli, certificate_pem, make_cli, snapshot
from vault.secret_value import SecretValue

DEV_SECRET = "dev-secret-value-1a2b3c"
PIPELINE = """\
steps:
  - name: migrate
    run: ["python", "-c", "print('migrating')"]
    env: {DATABASE_URL: "${{ secrets.DATABASE_URL }}", FEATURE: "${{ vars.FEATURE }}"}
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dev -> staging -> production, app web in all three, one release; copied per test."""
    root = tmp_path_factory.mktemp("lifecycle")
    cli = make_cli(root)
    cli.ok("env", "create", "dev")
    cli.ok("env", "create", "staging")
    cli.ok("group", "create", "release-managers", "--member", "erin", "--member", "frank")
    cli.ok(
        "env", "create", "production", "--required-approvals", "1",
        "--reviewer", "alice", "--reviewer", "@release-managers",
    )  # fmt: skip
    cli.ok("app", "create", "web", "--env", "dev", "--env", "staging", "--env", "production")
    cli.ok("secret", "set", "DATABASE_URL", "--env", "dev", input=DEV_SECRET)
    for env in ("staging", "production"):
        cli.ok("secret", "set", "DATABASE_URL", "--env", env, input=f"{env}-secret-value")
    for env in ("dev", "staging", "production"):
        cli.ok("var", "set", "FEATURE", "on", "--env", env)
    (root / "pipeline.yaml").write_text(PIPELINE)
    cli.ok("release", "create", "web", "1.0.0", "--pipeline", str(root / "pipeline.yaml"))
    return root / "home"


@pytest.fixture
def workspace(template: Path, cli: Cli) -> Path:
    home = Path(cli.env["STAGELINE_HOME"])
    shutil.rmtree(home)
    shutil.copytree(template, home)
    return home


def settings_of(cli: Cli) -> Settings:
    return Settings.from_env(cli.env)


def in_process(cli: Cli, work: Any) -> Any:
    """Run service code against the CLI's own database file (what a worker would do)."""

    async def main() -> Any:
        settings = settings_of(cli)
        db = Database(settings.database_url)
        try:
            return await work(Units(db, settings))
        finally:
            await db.close()

    return asyncio.run(main())


def deploy(cli: Cli, env: str, version: str = "1.0.0") -> int:
    """A real promotion's stored path, minus Temporal: gates, deployment, verified."""

    async def work(units: Units) -> int:
        # One unit of work per step, as the workflow's activities run them.
        run = WorkflowRef(workflow_id=f"promote-web-{version}-{env}", run_id="r1")
        request = PromotionInput(app="web", version=version, target=env, requested_by="ci")
        async with units.write() as w:
            prepared = await w.deployments.prepare_promotion(request, run)
        assert prepared.passed, prepared.reason
        async with units.write() as w:
            started = await w.deployments.begin_deployment(prepared.promotion_record_id, run)
        async with units.write() as w:
            await w.deployments.finish_deployment(started.deployment_id, True, None, caller=run)
        outcome = PromotionOutcome(
            promotion_record_id=prepared.promotion_record_id, status=PromotionEnd.DEPLOYED
        )
        async with units.write() as w:
            await w.deployments.record_promotion_outcome(outcome, caller=run)
        return started.deployment_id

    result: int = in_process(cli, work)
    return result


def start_promotion(cli: Cli, env: str, version: str = "1.0.0") -> str:
    """A promotion whose gates ran and which is still under way (awaiting approval)."""

    async def work(units: Units) -> str:
        run = WorkflowRef(workflow_id=f"promote-web-{version}-{env}", run_id="r2")
        request = PromotionInput(app="web", version=version, target=env, requested_by="ci")
        async with units.write() as w:
            await w.deployments.prepare_promotion(request, run)
        return run.workflow_id

    result: str = in_process(cli, work)
    return result


def audit_events(cli: Cli, *args: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(cli.ok("audit", "--json", *args).out)
    return events


def assert_refused_and_audited(
    cli: Cli,
    home: Path,
    args: list[str],
    message: str,
    action: str,
    environment: str | None,
) -> dict[str, Any]:
    """Exit 2 with one sentence, nothing stored but one audit entry of the refusal."""
    before = snapshot(home)
    result = cli(*args)
    assert result.code == 2, result
    assert message in result.err
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    after = snapshot(home)
    assert {t: r for t, r in after.items() if t != "audit_event"} == {
        t: r for t, r in before.items() if t != "audit_event"
    }
    assert len(after["audit_event"]) == len(before["audit_event"]) + 1
    event = audit_events(cli)[-1]
    assert event["action"] == action
    assert event["environment"] == environment
    assert message in event["detail"]["reason"]
    if environment is not None:
        assert environment in event["subject"]
    return event


def test_app_envs_replaces_the_set_is_a_noop_when_repeated_and_is_audited(
    cli: Cli, workspace: Path
) -> None:
    changed = json.loads(cli.ok("app", "envs", "web", "--env", "production", "--env", "dev",
                                "--json").out)  # fmt: skip
    assert changed == {
        "name": "web",
        "environments": ["dev", "production"],  # chain order, whatever order was given
        "before": ["dev", "staging", "production"],
        "added": [],
        "removed": ["staging"],
    }
    apps = json.loads(cli.ok("app", "list", "--json").out)
    assert apps[0]["environments"] == ["dev", "production"]
    assert json.loads(cli.ok("env", "show", "staging", "--json").out)["apps"] == []
    # Running it again (a retried CI job) changes nothing and says so.
    before = snapshot(workspace)
    again = cli.ok("app", "envs", "web", "--env", "dev", "--env", "production")
    assert "already points to dev, production; nothing to do" in again.out
    assert snapshot(workspace) == before
    added = cli.ok("app", "envs", "web", "--env", "dev", "--env", "staging", "--env", "production")
    assert "added staging" in added.out
    events = [e for e in audit_events(cli) if e["action"] == "app.environments"]
    assert [(e["environment"], e["subject"]) for e in events] == [
        ("staging", "app web no longer points to staging"),
        ("staging", "app web now points to staging"),
    ]
    assert events[0]["detail"]["before"] == ["dev", "staging", "production"]
    assert events[0]["detail"]["after"] == ["dev", "production"]
    # An app-scoped value needs the app to point to the environment again.
    cli.ok("var", "set", "ONLY_WEB", "x", "--env", "staging", "--app", "web")


def test_app_envs_refuses_to_drop_a_deployed_environment_unless_forced(
    cli: Cli, workspace: Path
) -> None:
    deploy(cli, "dev")
    deploy(cli, "staging")
    event = assert_refused_and_audited(
        cli,
        workspace,
        ["app", "envs", "web", "--env", "dev", "--env", "production"],
        "web@1.0.0 is deployed in staging",
        "app.environments.refused",
        "staging",
    )
    assert event["app"] == "web"
    assert "--force" in event["detail"]["reason"]
    forced = json.loads(
        cli.ok("app", "envs", "web", "--env", "dev", "--env", "production", "--force",
               "--json").out
    )  # fmt: skip
    assert forced["removed"] == ["staging"]
    status = json.loads(cli.ok("status", "--json").out)
    assert {(c["app"], c["environment"]) for c in status["cells"]} == {
        ("web", "dev"),
        ("web", "production"),
    }
    # The deployment stays on record.
    history = json.loads(cli.ok("history", "web", "--env", "staging", "--json").out)
    assert [(d["version"], d["status"]) for d in history["deployments"]] == [("1.0.0", "deployed")]


def test_app_envs_refuses_to_drop_an_environment_with_a_promotion_under_way(
    cli: Cli, workspace: Path
) -> None:
    deploy(cli, "dev")
    deploy(cli, "staging")
    promotion = start_promotion(cli, "production")
    for force in ([], ["--force"]):  # --force never cuts a promotion short
        assert_refused_and_audited(
            cli,
            workspace,
            ["app", "envs", "web", "--env", "dev", "--env", "staging", *force],
            f"{promotion} is under way in production: wait for it to end, or reject",
            "app.environments.refused",
            "production",
        )


# -- deleting variables and secrets -----------------------------------------------------------


def test_deleted_variable_is_absent_everywhere_but_past_deployments_keep_their_version(
    cli: Cli, workspace: Path
) -> None:
    deployment = deploy(cli, "dev")
    deleted = json.loads(cli.ok("var", "delete", "FEATURE", "--env", "dev", "--json").out)
    assert deleted == {
        "kind": "variable",
        "environment": "dev",
        "app": None,
        "key": "FEATURE",
        "deleted": True,
        "version": 2,
        "last_version": 1,
        "already_deleted": False,
    }
    assert json.loads(cli.ok("var", "list", "--env", "dev", "--json").out) == []
    assert json.loads(cli.ok("env", "show", "dev", "--json").out)["variables"] == []
    assert json.loads(cli.ok("status", "--env", "dev", "--json").out)["variables"] == []
    diff = json.loads(cli.ok("diff", "web", "--from", "dev", "--to", "staging", "--json").out)
    assert {"key": "FEATURE", "source": None, "target": "on"} in diff["vars"]

    # The next promotion's preflight gate names it as missing.
    async def preflight(units: Units) -> str | None:
        run = WorkflowRef(workflow_id="promote-web-1.0.0-dev-again", run_id="r3")
        request = PromotionInput(
            app="web", version="1.0.0", target="dev", requested_by="ci", force=True
        )
        async with units.write() as w:
            prepared = await w.deployments.prepare_promotion(request, run)
        assert not prepared.passed
        return prepared.reason

    reason = in_process(cli, preflight)
    assert reason is not None and "vars.FEATURE" in reason

    # What the earlier deployment ran with stays on record, and still resolves (rollback).
    history = json.loads(cli.ok("history", "web", "--env", "dev", "--json").out)
    [entry] = [d for d in history["deployments"] if d["id"] == deployment]
    assert entry["config"]["vars"]["FEATURE"] == {"version": 1, "scope": "env"}
    assert "FEATURE@v1" in cli.ok("history", "web", "--env", "dev").out

    async def pinned(units: Units) -> str:
        async with units.read() as w:
            resolved = await w.resolution.resolve(
                "dev", "web", pinned=ConfigVersions.model_validate(entry["config"])
            )
        return resolved.vars["FEATURE"].value

    assert in_process(cli, pinned) == "on"

    # Deleting it again is a safe no-op; setting it again makes the next version.
    before = snapshot(workspace)
    again = cli.ok("var", "delete", "FEATURE", "--env", "dev")
    assert "was already deleted; nothing to do" in again.out
    assert snapshot(workspace) == before
    assert (
        json.loads(cli.ok("var", "set", "FEATURE", "off", "--env", "dev", "--json").out)["version"]
        == 3
    )
    [event] = [e for e in audit_events(cli, "--env", "dev") if e["action"] == "variable.delete"]
    assert event["subject"] == "vars.FEATURE in dev" and event["environment"] == "dev"
    assert event["detail"] == {"key": "FEATURE", "version": 2, "last_version": 1}


def test_deleting_the_app_value_uncovers_the_environment_value(cli: Cli, workspace: Path) -> None:
    cli.ok("var", "set", "FEATURE", "web-only", "--env", "dev", "--app", "web")
    cli.ok("var", "delete", "FEATURE", "--env", "dev", "--app", "web")
    listed = json.loads(cli.ok("var", "list", "--env", "dev", "--app", "web", "--json").out)
    assert [(v["key"], v["value"], v["app"]) for v in listed] == [("FEATURE", "on", None)]
    # A name that now differs only by case from nothing current may be used.
    cli.ok("var", "delete", "FEATURE", "--env", "dev")
    cli.ok("var", "set", "feature", "lower", "--env", "dev")


def test_deleted_secret_is_absent_but_its_old_version_still_decrypts(
    cli: Cli, workspace: Path
) -> None:
    deployment = deploy(cli, "dev")
    out = cli.ok("secret", "delete", "DATABASE_URL", "--env", "dev").out
    assert "deleted secrets.DATABASE_URL in dev (version 2" in out
    assert json.loads(cli.ok("secret", "list", "--env", "dev", "--json").out) == []
    history = json.loads(cli.ok("history", "web", "--env", "dev", "--json").out)
    [entry] = [d for d in history["deployments"] if d["id"] == deployment]
    assert entry["config"]["secrets"]["DATABASE_URL"]["version"] == 1

    async def resolve(units: Units) -> tuple[SecretValue | None, list[str]]:
        async with units.read() as w:
            then = await w.resolution.resolve(
                "dev", "web", decrypt=True, pinned=ConfigVersions.model_validate(entry["config"])
            )
        refs = parse_pipeline(PIPELINE).references()
        try:
            async with units.read() as w:
                await w.resolution.resolve("dev", "web", refs)
        except MissingConfiguration as exc:
            return then.secrets["DATABASE_URL"].value, exc.missing
        raise AssertionError("a deleted secret resolved")

    value, missing = in_process(cli, resolve)
    assert value == SecretValue(DEV_SECRET)
    assert missing == ["secrets.DATABASE_URL"]
    [event] = [e for e in audit_events(cli) if e["action"] == "secret.delete"]
    assert (event["environment"], event["subject"]) == ("dev", "secrets.DATABASE_URL in dev")
    cli.ok("secret", "set", "DATABASE_URL", "--env", "dev", input="a-new-secret-value")
    listed = json.loads(cli.ok("secret", "list", "--env", "dev", "--json").out)
    assert [(s["key"], s["version"]) for s in listed] == [("DATABASE_URL", 3)]
    raw = (workspace / "stageline.db").read_bytes()
    for wal in workspace.glob("stageline.db-wal"):
        raw += wal.read_bytes()
    assert DEV_SECRET.encode() not in raw


# -- reviewer groups ---------------------------------------------------------------------------


def test_group_rename_rewrites_every_environment_that_names_it(cli: Cli, workspace: Path) -> None:
    cli.ok("env", "protect", "staging", "--required-approvals", "1",
           "--reviewer", "@release-managers")  # fmt: skip
    renamed = json.loads(cli.ok("group", "rename", "release-managers", "approvers",
                                "--json").out)  # fmt: skip
    assert renamed == {
        "name": "approvers",
        "renamed_from": "release-managers",
        "members": ["erin", "frank"],
        "environments": ["staging", "production"],
    }
    production = json.loads(cli.ok("env", "show", "production", "--json").out)
    assert production["protection"]["reviewers"] == ["alice", "@approvers"]
    assert "@approvers" in cli.ok("env", "show", "staging").out
    assert [g["name"] for g in json.loads(cli.ok("group", "list", "--json").out)] == ["approvers"]
    events = audit_events(cli)
    assert [e["action"] for e in events[-3:]] == [
        "environment.reviewers",
        "environment.reviewers",
        "group.rename",
    ]
    assert {(e["environment"], e["subject"]) for e in events[-3:-1]} == {
        ("staging", "environment staging: reviewer @release-managers is now @approvers"),
        ("production", "environment production: reviewer @release-managers is now @approvers"),
    }


def test_group_delete_is_refused_while_an_environment_names_it(cli: Cli, workspace: Path) -> None:
    assert_refused_and_audited(
        cli,
        workspace,
        ["group", "delete", "release-managers"],
        "environment(s) production list @release-managers among their reviewers; give them "
        "other reviewers first, e.g. 'stageline env protect production --reviewer alice'",
        "group.delete.refused",
        "production",
    )
    cli.ok("env", "protect", "production", "--reviewer", "alice")
    deleted = json.loads(cli.ok("group", "delete", "release-managers", "--json").out)
    assert deleted == {
        "kind": "group",
        "name": "release-managers",
        "deleted": True,
        "members": ["erin", "frank"],
    }
    assert json.loads(cli.ok("group", "list", "--json").out) == []
    assert audit_events(cli)[-1]["action"] == "group.delete"


# -- certificates ----------------------------------------------------------------------------


def test_certificate_expiry_is_listed_and_warned_about_within_30_days(
    cli: Cli, workspace: Path, tmp_path: Path
) -> None:
    soon, later = tmp_path / "soon.pem", tmp_path / "later.pem"
    soon.write_text(certificate_pem(10))
    later.write_text(certificate_pem(90))
    set_soon = cli.ok("secret", "set", "TLS_SOON", "--env", "dev", "--kind", "certificate",
                      "--from-file", str(soon))  # fmt: skip
    assert "warning: certificate secrets.TLS_SOON in dev expires in 10 days" in set_soon.err
    set_later = cli.ok("secret", "set", "TLS_LATER", "--env", "production", "--kind",
                       "certificate", "--from-file", str(later))  # fmt: skip
    assert set_later.err == ""

    listed = cli.ok("secret", "list", "--env", "dev")
    assert "EXPIRES" in listed.out.splitlines()[0]
    expiry = (datetime.now(UTC) + timedelta(days=10)).strftime("%Y-%m-%d")
    assert expiry in listed.out
    [warning] = listed.err.strip().splitlines()
    assert warning.startswith("warning: certificate secrets.TLS_SOON in dev expires in 10 days")
    assert "'stageline secret set TLS_SOON --env dev --kind certificate" in warning
    as_json = cli.ok("secret", "list", "--env", "dev", "--json")
    by_key = {s["key"]: s for s in json.loads(as_json.out)}
    assert by_key["TLS_SOON"]["expires_at"].startswith(expiry)
    assert by_key["DATABASE_URL"]["expires_at"] is None
    assert "warning:" in as_json.err  # stdout stays JSON, the exit code 0

    later_list = cli.ok("secret", "list", "--env", "production", "--json")
    listed_later = {s["key"]: s for s in json.loads(later_list.out)}["TLS_LATER"]
    assert listed_later["expires_at"] is not None and later_list.err == ""

    status_run = cli.ok("status", "--json")
    status = json.loads(status_run.out)
    [status_warning] = status["warnings"]
    # People see it too: one line on stderr, stdout unchanged, exit 0.
    assert status_run.err == f"warning: {status_warning}\n"
    assert f"warning: {status_warning}" in cli.ok("status").err
    assert status_warning.startswith("certificate secrets.TLS_SOON in dev expires in 10 days")
    assert json.loads(cli.ok("status", "--env", "production", "--json").out)["warnings"] == []
    assert json.loads(cli.ok("status", "--env", "dev", "--json").out)["warnings"] == [
        status_warning
    ]

    # Replaced by a certificate that lasts, or deleted: no more warning.
    cli.ok("secret", "set", "TLS_SOON", "--env", "dev", "--kind", "certificate",
           "--from-file", str(later))  # fmt: skip
    assert cli.ok("secret", "list", "--env", "dev").err == ""
    cli.ok("secret", "set", "TLS_SOON", "--env", "dev", "--kind", "certificate",
           "--from-file", str(soon))  # fmt: skip
    cli.ok("secret", "delete", "TLS_SOON", "--env", "dev")
    assert json.loads(cli.ok("status", "--json").out)["warnings"] == []


# -- --json on every command that changes or shows something -----------------------------------

# Commands without --json, and why (the README says the same).
WITHOUT_JSON = {
    "dev": "long-running",
    "worker": "long-running",
    "codec-server": "long-running",
    "server": "long-running",
    "vault generate-key": "prints the key alone, for $(...)",
}


def test_every_command_takes_json_but_the_documented_few() -> None:
    from cli.main import cli as root

    def commands(group: click.Group, path: str = "") -> list[tuple[str, click.Command]]:
        found = []
        context = click.Context(group)
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            assert command is not None, name
            full = f"{path} {name}".strip()
            if isinstance(command, click.Group):
                found += commands(command, full)
            else:
                found.append((full, command))
        return found

    without = {
        name
        for name, command in commands(root)
        if not any(p.name == "as_json" for p in command.params)
    }
    assert without == set(WITHOUT_JSON)
    readme = (ROOT / "README.md").read_text()
    for name in WITHOUT_JSON:
        assert f"`{name}`" in readme


def test_commands_that_lacked_json_print_one_json_object(
    cli: Cli, workspace: Path, tmp_path: Path
) -> None:
    def js(*args: str, input: str | None = None) -> dict[str, Any]:
        result = cli.ok(*args, "--json", input=input)
        value = json.loads(result.out)
        assert isinstance(value, dict), result.out
        return value

    cli.ok("env", "create", "scratch")
    assert js("env", "rename", "scratch", "sandbox")["name"] == "sandbox"
    assert js("env", "delete", "sandbox") == {"kind": "environment", "name": "sandbox",
                                               "deleted": True}  # fmt: skip
    cli.ok("env", "freeze", "staging", "--reason", "sale")
    unfrozen = js("env", "unfreeze", "staging")
    assert unfrozen["environment"] == "staging" and len(unfrozen["lifted"]) == 1
    assert unfrozen["lifted"][0]["reason"] == "sale"
    cli.ok("app", "create", "api", "--env", "dev")
    assert js("app", "delete", "api") == {"kind": "app", "name": "api", "deleted": True}
    cli.ok("tool", "create", "hook", "--kind", "webhook")
    assert js("tool", "delete", "hook") == {"kind": "tool", "name": "hook", "deleted": True}

    key_file = tmp_path / "new.key"
    key_file.write_text(cli.ok("vault", "generate-key").out)
    key_file.chmod(0o600)
    rotated = js("vault", "rotate", "--new-key-file", str(key_file))
    assert rotated["environments"] == 3 and rotated["key_file"] == str(key_file)
    env = {k: v for k, v in cli.env.items() if k != "STAGELINE_MASTER_KEY"}
    cli = Cli({**env, "STAGELINE_MASTER_KEY_FILE": str(key_file)})

    generated = json.loads(
        cli.ok("reviewer", "key", "generate", "bob", "--key-file", str(tmp_path / "bob"),
               "--json").out
    )  # fmt: skip
    cli.ok("reviewer", "key", "add", "bob", generated["public_key"])
    revoked = js("reviewer", "key", "revoke", "bob", generated["fingerprint"])
    assert revoked["reviewer"] == "bob" and revoked["revoked_by"] == "tester"

    cli.ok("data", "put", "web", "memory", "faq", "--env", "production", "--value", "42")
    copied = js("data", "copy", "web", "memory", "--from", "production", "--to", "staging")
    assert copied == {"app": "web", "kind": "memory", "from": "production", "to": "staging",
                      "keys": None, "copied": 1}  # fmt: skip
    shared = js("data", "share", "web", "sources")
    assert shared == {
        "app": "web",
        "kind": "sources",
        "shared": True,
        "namespaces": {"dev": "shared/web", "staging": "shared/web", "production": "shared/web"},
    }
    assert js("data", "share", "web", "sources", "--off")["namespaces"]["dev"] == "dev/web"

    # And the new commands.
    assert (
        js("app", "envs", "web", "--env", "dev", "--env", "staging", "--env", "production")[
            "removed"
        ]
        == []
    )
    assert js("var", "delete", "FEATURE", "--env", "dev")["deleted"] is True
    assert js("secret", "delete", "DATABASE_URL", "--env", "dev")["deleted"] is True
    assert js("group", "rename", "release-managers", "rm")["name"] == "rm"
    cli.ok("group", "create", "spare", "--member", "zoe")
    assert js("group", "delete", "spare")["deleted"] is True


# -- refusals are audited ----------------------------------------------------------------------


def test_refusals_are_in_the_audit_log_with_their_reason_and_environment(
    cli: Cli, workspace: Path
) -> None:
    cli.ok("tool", "create", "hook", "--kind", "webhook")
    (workspace / "uses-hook.yaml").write_text("steps:\n  - name: n\n    tool: hook\n")
    cli.ok("release", "create", "web", "2.0.0", "--pipeline", str(workspace / "uses-hook.yaml"))
    cli.ok("data", "share", "web", "memory")
    deploy(cli, "dev")
    cases: list[tuple[list[str], str, str, str | None]] = [
        (["env", "delete", "dev"], "app(s) web point to it", "environment.delete.refused", "dev"),
        (["env", "rename", "dev", "development"], "cannot be renamed",
         "environment.rename.refused", "dev"),
        (["tool", "delete", "hook"], "release(s) web@2.0.0 use it", "tool.delete.refused", None),
        (["app", "delete", "web"], "it has releases", "app.delete.refused", None),
        (["data", "copy", "web", "memory", "--from", "dev", "--to", "staging"],
         "shared by all environments", "data.copy.refused", "staging"),
    ]  # fmt: skip
    for args, message, action, environment in cases:
        assert_refused_and_audited(cli, workspace, args, message, action, environment)
    refusals = [e for e in audit_events(cli) if e["action"].endswith(".refused")]
    assert [e["action"] for e in refusals] == [c[2] for c in cases]
    assert refusals[3]["app"] == "web" and refusals[4]["app"] == "web"
    # Filtered by environment, the log shows the refusals about it.
    dev_actions = [e["action"] for e in audit_events(cli, "--env", "dev")]
    assert "environment.delete.refused" in dev_actions


# -- mistakes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["var", "delete", "FEATUR", "--env", "dev"],
         "variable 'FEATUR' is not set in dev (did you mean FEATURE?); set there: FEATURE"),
        (["var", "delete", "FEATURE", "--env", "dev", "--app", "web"],
         "is set for all of dev: drop --app to delete it"),
        (["var", "delete", "FEATURE", "--env", "prodution"], "(did you mean production?)"),
        (["var", "delete", "BAD-KEY", "--env", "dev"], "variable name 'BAD-KEY' is not valid"),
        (["secret", "delete", "DATABASE_UR", "--env", "dev"], "(did you mean DATABASE_URL?)"),
        (["secret", "delete", "TOKEN", "--env", "staging"],
         "secret 'TOKEN' is not set in staging; set there: DATABASE_URL"),
        (["var", "delete", "FEATURE", "--env", "dev", "--app", "nope"],
         "app 'nope' does not exist"),
        (["secret", "delete", "X", "--env", "dev", "--app", "web"],
         "secret 'X' is not set in dev for app web; set there: none"),
        (["app", "envs", "web", "--env", "dev", "--env", "qa"], "environment 'qa' does not exist"),
        (["app", "envs", "web"], "Missing option '--env'"),
        (["app", "envs", "nope", "--env", "dev"], "app 'nope' does not exist"),
        (["app", "envs", "web", "--env", "Dev"], "environment name 'Dev' is not valid"),
        (["group", "rename", "release-manager", "rm"],
         "reviewer group 'release-manager' does not exist (did you mean release-managers?)"),
        (["group", "rename", "release-managers", "Bad Name"], "group name 'Bad Name' is not valid"),
        (["group", "delete", "nobody"], "reviewer group 'nobody' does not exist"),
        (["secret", "set", "TLS", "--env", "dev", "--kind", "certificate", "--from-file", "BAD"],
         "secret 'TLS' is of kind certificate but is not a PEM certificate"),
    ],
)  # fmt: skip
def test_mistakes_exit_3_with_one_sentence_and_change_nothing(
    cli: Cli, workspace: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    args = [str(bad) if a == "BAD" else a for a in args]
    before = snapshot(workspace)
    result = cli(*args)
    assert result.code == 3, result
    assert message in result.err
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert snapshot(workspace) == before
