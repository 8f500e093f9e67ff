"""`stageline user` and `stageline token`, through the real executable: passwords from stdin,
a token printed once and never again, clean one-line errors for every mistake, and nothing
stored by a refused command."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli

PASSWORD = "correct horse battery staple"


def workspace(cli: Cli) -> None:
    cli.ok("env", "create", "dev")
    cli.ok("env", "create", "production", "--after", "dev")
    cli.ok("app", "create", "web", "--env", "dev", "--env", "production")


def test_users_are_added_listed_and_disabled(cli: Cli) -> None:
    workspace(cli)
    added = cli.ok(
        "user",
        "add",
        "alice",
        "--role",
        "production:reviewer",
        "--role",
        "*:viewer",
        "--json",
        input=PASSWORD + "\n",
    )
    view = json.loads(added.out)
    assert [f"{g['environment']}:{g['role']}" for g in view["roles"]] == [
        "production:reviewer",
        "*:viewer",
    ]
    listed = cli.ok("user", "list")
    assert "alice" in listed.out and "production:reviewer" in listed.out
    cli.ok("user", "disable", "alice")
    assert "disabled" in cli.ok("user", "list").out
    audit = cli.ok("audit", "--json").out
    assert "user.add" in audit and "user.disable" in audit and PASSWORD not in audit


def test_user_mistakes_are_one_line_errors_and_store_nothing(cli: Cli) -> None:
    workspace(cli)
    mistakes = [
        (("user", "add", "bob", "--role", "production"), PASSWORD, 3, "is not ENV:ROLE"),
        (
            ("user", "add", "bob", "--role", "prod:viewer"),
            PASSWORD,
            3,
            "known environments: dev, production",
        ),
        (("user", "add", "bob", "--role", "dev:owner"), PASSWORD, 3, "roles: viewer, deployer"),
        (("user", "add", "bob"), "Zq9#xk", 3, "too short (6 characters)"),
        (("user", "add", "bob smith"), PASSWORD, 3, "is not valid"),
        (("user", "disable", "nobody"), None, 3, "user 'nobody' does not exist"),
    ]
    for args, password, code, says in mistakes:
        result = cli(*args, input=password)
        assert result.code == code, (args, result.err)
        assert says in result.err, (args, result.err)
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
        if password:
            assert password not in result.err + result.out
    assert json.loads(cli.ok("user", "list", "--json").out) == []


def test_a_ci_token_is_printed_once_and_only_its_start_is_kept(cli: Cli, tmp_path: Path) -> None:
    workspace(cli)
    created = cli.ok("token", "create", "gh-deploy", "--app", "web", "--env", "dev")
    token = created.out.strip()
    assert token.startswith("stl_ci_") and len(token) > 40
    assert "shown this once" in created.err
    listed = cli.ok("token", "list")
    assert "gh-deploy" in listed.out and "dev:deployer" in listed.out
    listed_json = cli.ok("token", "list", "--json").out
    prefix = json.loads(listed_json)[0]["tokens"][0]["prefix"]
    assert token.startswith(prefix) and len(prefix) < 16
    assert token not in listed.out and prefix in listed.out
    everything = listed_json + cli.ok("audit", "--json").out
    assert token not in everything
    database = (Path(cli.env["STAGELINE_HOME"]) / "stageline.db").read_bytes()
    assert token.encode() not in database

    again = cli("token", "create", "gh-deploy")
    assert again.code == 3 and "already a CI token" in again.err
    bad = cli("token", "create", "nightly", "--expires", "2y")
    assert bad.code == 3 and "'90m', '12h' or '30d'" in bad.err
    too_long = cli("token", "create", "nightly", "--expires", "400d")
    assert too_long.code == 3 and "longer than a year" in too_long.err
    unknown = cli("token", "create", "nightly", "--env", "staging")
    assert unknown.code == 3 and "environment 'staging' does not exist" in unknown.err
    cli.ok("token", "revoke", "gh-deploy")
    assert "disabled" in cli.ok("token", "list").out
