"""`stageline server` as an operator runs it: each mistake at start is one line and an exit
code, and SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

from tests.conftest import STAGELINE, Cli, clean_environ
from tests.server.conftest import Served, free_port, server_process


def test_without_a_master_key_it_refuses_to_start(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if k != "STAGELINE_MASTER_KEY"}
    result = Cli(env)("server", "--port", str(free_port()))
    assert result.code == 3 and "no master key is configured" in result.err
    assert "Traceback" not in result.err


def test_a_port_in_use_is_one_line_and_exit_5(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = cli("server", "--port", str(taken.getsockname()[1]))
    assert result.code == 5 and "could not listen" in result.err
    assert "Traceback" not in result.err


def test_a_revoked_server_key_is_never_taken_back(served_alone: Served) -> None:
    machine = served_alone.machine
    [key] = json.loads(machine.ok("reviewer", "key", "list", "--json").out)
    assert key["reviewer"] == ":server"
    machine.ok("reviewer", "key", "revoke", ":server", key["fingerprint"])
    refused = machine("server", "--port", str(free_port()))
    assert refused.code == 3 and "remove the server's key file" in refused.err
    assert "Traceback" not in refused.err
    # With a new key file it starts, and registers the new key.
    (Path(machine.env["STAGELINE_HOME"]) / "keys" / "server.ed25519").unlink()
    with server_process(machine, served_alone.root):
        keys = json.loads(machine.ok("reviewer", "key", "list", "--json").out)
    assert [k["revoked_at"] is None for k in keys] == [False, True]


def test_sigterm_stops_it_cleanly(cli: Cli, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [STAGELINE, "server", "--port", str(free_port())],
        env=cli.env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "Application startup complete" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=30)
    assert process.returncode == 0, rest
    assert "Traceback" not in rest and "shutdown complete" in rest


def test_a_wrong_or_unreachable_server_url_is_one_line(tmp_path: Path) -> None:
    env = clean_environ()
    env["STAGELINE_HOME"] = str(tmp_path)
    wrong = Cli({**env, "STAGELINE_URL": "stageline.example.com"})("env", "list")
    assert wrong.code == 3 and "is not an http:// or https:// address" in wrong.err
    down = Cli({**env, "STAGELINE_URL": f"http://127.0.0.1:{free_port()}"})("status")
    assert down.code == 5 and "cannot reach the stageline server" in down.err
    for result in (wrong, down):
        assert "Traceback" not in result.err
    assert list(tmp_path.iterdir()) == []  # nothing made on the way
