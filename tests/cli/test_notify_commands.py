"""`stageline notify`, run as real subprocesses against a real SQLite file and a real webhook
receiver: the URL goes in on stdin and never comes out; bad input is one line and exit 3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli, make_cli
from tests.http_recorder import recorder

TOKEN = "T0CLI/B0CLI/cli-webhook-token-value"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    cli = make_cli(tmp_path)
    cli.ok("env", "create", "dev")
    cli.ok("env", "create", "production", "--required-approvals", "1", "--reviewer", "bob")
    return cli


def one_line_error(err: str, *parts: str) -> None:
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for part in parts:
        assert part in err, err


def database(cli: Cli) -> bytes:
    home = Path(cli.env["STAGELINE_HOME"])
    return b"".join(p.read_bytes() for p in home.glob("stageline.db*"))


def test_add_list_test_and_remove(cli: Cli) -> None:
    with recorder() as chat:
        url = f"{chat.url}/services/{TOKEN}"
        added = cli.ok(
            "notify", "add", "production", "ops", "--events", "approval-needed,deployed",
            input=url + "\n",
        )  # fmt: skip
        assert added.out.startswith(
            f"added notification target ops to production: approval-needed, deployed -> {chat.url} "
        )
        cli.ok("notify", "add", "production", "all", "--json", input=url)
        table = cli.ok("notify", "list", "production").out
        assert table.splitlines()[0].split() == ["NAME", "EVENTS", "HOST", "LAST", "DELIVERY",
                                                 "ADDED", "BY"]  # fmt: skip
        assert "ops   approval-needed,deployed" in table and chat.url in table
        listed = json.loads(cli.ok("notify", "list", "production", "--json").out)
        assert [(t["name"], t["url_host"]) for t in listed] == [
            ("all", chat.url),
            ("ops", chat.url),
        ]
        assert listed[0]["events"] == ["approval-needed", "deployed", "failed", "rolled-back"]
        assert listed[1]["last_delivery"] is None and listed[1]["created_by"] == "tester"

        tried = cli.ok("notify", "test", "production", "ops")
        assert tried.out == f"test message sent to ops ({chat.url}): HTTP 200\n"
        [call] = chat.calls
        assert call.path == f"/services/{TOKEN}" and call.method == "POST"
        assert call.body["text"].startswith(":wave: stageline test message for target ops of ")
        assert call.body["text"].endswith(
            "<http://127.0.0.1:8480/environments/production|open in stageline>"
        )

        chat.status = 404
        refused = cli("notify", "test", "production", "ops", "--json")
        assert refused.code == 1
        assert json.loads(refused.out)["http_status"] == 404
        one_line_error(refused.err, f"the test message to ops ({chat.url}) did not arrive")

        removed = cli.ok("notify", "remove", "production", "ops", "--json")
        assert json.loads(removed.out) == {"environment": "production", "name": "ops",
                                           "removed": True}  # fmt: skip
        left = json.loads(cli.ok("notify", "list", "production", "--json").out)
        assert [t["name"] for t in left] == ["all"]

    everything = cli.ok("audit", "--json").out
    assert '"action": "notification.add"' in everything
    assert '"action": "notification.remove"' in everything
    for part in TOKEN.split("/"):
        assert part not in everything and part.encode() not in database(cli)


def test_the_console_link_follows_stageline_console_url(cli: Cli) -> None:
    with recorder() as chat:
        cli.ok("notify", "add", "dev", "ops", input=f"{chat.url}/x")
        cli.env["STAGELINE_CONSOLE_URL"] = "https://stageline.example.com/"
        cli.ok("notify", "test", "dev", "ops")
    assert (
        chat.calls[0]
        .body["text"]
        .endswith("<https://stageline.example.com/environments/dev|open in stageline>")
    )
    cli.env["STAGELINE_CONSOLE_URL"] = "stageline.example.com"
    bad = cli("notify", "list", "dev")
    assert bad.code == 3
    one_line_error(bad.err, "STAGELINE_CONSOLE_URL 'stageline.example.com' is not an http://")


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["production", "ops", "https://hooks.example.com/x"], None, "never taken as an argument"),
        (["production", "ops"], "ftp://hooks.example.com/x", "must start with https://"),
        (["production", "ops"], "", "the webhook URL is empty"),
        (["production", "ops"], "https://hooks.example.com/a b", "space, line break or control"),
        (["production", "ops", "--events", "deploy"], "https://h.example.com/x",
         "event 'deploy' is not known (did you mean deployed?); use one or more of "
         "approval-needed, deployed, failed, rolled-back"),
        (["prod", "ops"], "https://h.example.com/x", "environment 'prod' does not exist"),
        (["production", "Ops"], "https://h.example.com/x", "notification target name 'Ops'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_3(
    cli: Cli, args: list[str], stdin: str | None, expected: str
) -> None:
    done = cli("notify", "add", *args, input=stdin if stdin is not None else "")
    assert done.code == 3, done
    one_line_error(done.err, expected)
    assert done.out == ""
    assert json.loads(cli.ok("notify", "list", "production", "--json").out) == []


def test_unknown_targets_duplicates_and_a_missing_key(cli: Cli) -> None:
    cli.ok("notify", "add", "dev", "ops", input="https://hooks.example.com/x")
    for command in ("remove", "test"):
        done = cli("notify", command, "dev", "opz")
        assert done.code == 3
        one_line_error(done.err, "notification target 'opz' does not exist in dev (did you mean")
    duplicate = cli("notify", "add", "dev", "ops", input="https://hooks.example.com/x")
    assert duplicate.code == 3
    one_line_error(duplicate.err, "'ops' already exists in dev; remove it first")

    keyless = Cli({k: v for k, v in cli.env.items() if k != "STAGELINE_MASTER_KEY"})
    missing = keyless("notify", "add", "dev", "other", input="https://hooks.example.com/x")
    assert missing.code == 3
    one_line_error(missing.err, "master key")
    assert [t["name"] for t in json.loads(keyless.ok("notify", "list", "dev", "--json").out)] == [
        "ops"
    ]
