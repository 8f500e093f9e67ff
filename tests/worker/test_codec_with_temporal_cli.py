"""The real `temporal` CLI reads and writes stageline's encrypted payloads through the codec
server (`--codec-endpoint`, `--codec-auth`), against a real Temporal dev server and worker:
what the README tells an operator to run, run as written."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError

from models.promotion import PromotionResult
from tests.conftest import ROOT, Result
from tests.stack import TEMPORAL, Stack, stack
from vault.codec import ENCODING, EncryptionCodec
from worker.codec_server import dev_ui_origins, serve_codec
from workflows.contract import PROMOTION

READS = {"show", "query", "describe", "result"}  # the commands that print payloads
REQUESTED_BY = "ci@acme-7e41"  # in the (encrypted) input, and in the `status` query's answer
CLI_REQUESTER = "cli@acme-51c0"
TOKEN = "codec-token-8d2e6b0f4a1c9e3d"
PIPELINE = f"""\
steps:
  - name: deploy
    run: [{sys.executable!r}, "-c", "print('deployed')"]
"""
DEPLOYED = "promote-web-1.0.0-dev"
FAILED = "promote-web-9.9.9-dev"  # no such release: fails with an encoded failure
MISSING_RELEASE = "release web@9.9.9 does not exist"
SEALED = "YmluYXJ5L2VuY3J5cHRlZA=="  # base64 of binary/encrypted: a payload left encrypted
# The codec addresses the README's examples use: `stageline dev`'s, and `codec-server --port 8081`
DEV_CODEC, README_CODEC = "http://127.0.0.1:8234", "http://127.0.0.1:8081"


@dataclass
class Cluster:
    stack: Stack
    open_codec: str
    guarded_codec: str

    async def temporal(
        self, *args: str, codec: str | None = None, auth: str | None = None
    ) -> Result:
        """Run the `temporal` CLI in a thread, so the worker in this loop answers queries."""
        command = [
            TEMPORAL,
            *args,
            "--address",
            self.stack.settings.temporal_address,
            "--namespace",
            self.stack.settings.temporal_namespace,
            "--disable-config-file",
            "--command-timeout",
            "30s",
        ]
        if codec is not None:
            command += ["--codec-endpoint", codec]
        if auth is not None:
            command += ["--codec-auth", auth]
        # No TEMPORAL_CODEC_* or other settings of whoever runs the tests.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, env=env, timeout=90
        )
        return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
async def cluster(
    temporal: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    """One worker, one deployed promotion and one failed one, and two codec servers (open, as
    `stageline dev` runs it, and token-protected), shared by this module's tests."""
    async with stack(temporal, tmp_path_factory.mktemp("codec-cli") / "home") as s:
        await s.envs.create_environment("dev", actor="t")
        await s.envs.create_environment("staging", actor="t")
        await s.envs.create_app("web", ["dev", "staging"], actor="t")
        await s.releases.create_release("web", "1.0.0", PIPELINE, actor="t")
        deployed = await s.promote("web", "1.0.0", "dev", requested_by=REQUESTED_BY)
        assert deployed.status == "deployed", deployed.reason
        with pytest.raises(WorkflowFailureError):
            await s.promote("web", "9.9.9", "dev")
        # What the README's examples read.
        await s.releases.create_release("web", "1.4.0", PIPELINE, actor="t")
        await s.promote("web", "1.4.0", "dev")
        await s.promote("web", "1.4.0", "staging", requested_by="ci@acme")
        codec = EncryptionCodec(s.key)
        with (
            serve_codec(codec, dev_ui_origins(8233)) as open_codec,
            serve_codec(codec, dev_ui_origins(8233), token=TOKEN) as guarded_codec,
        ):
            yield Cluster(s, open_codec.url, guarded_codec.url)


async def test_query_show_describe_and_result_print_decoded_payloads(cluster: Cluster) -> None:
    c = cluster
    query = ("workflow", "query", "-w", DEPLOYED, "--type", "status")
    decoded = await c.temporal(*query, codec=c.open_codec)
    assert decoded.code == 0, decoded.err
    assert f'"requested_by":"{REQUESTED_BY}"' in decoded.out and '"phase":"deployed"' in decoded.out
    # Without the codec server the CLI shows only ciphertext.
    sealed = await c.temporal(*query)
    assert sealed.code == 0, sealed.err
    assert REQUESTED_BY not in sealed.out and "YmluYXJ5L2VuY3J5cHRlZA==" in sealed.out

    show = await c.temporal("workflow", "show", "-w", DEPLOYED, "--detailed", codec=c.open_codec)
    assert show.code == 0, show.err
    assert f"input[0].requested_by: {REQUESTED_BY}" in show.out
    for command in ("result", "describe"):
        printed = await c.temporal("workflow", command, "-w", DEPLOYED, codec=c.open_codec)
        assert printed.code == 0, printed.err
        assert (
            '"status":"deployed"' in printed.out and f'"promotion_id":"{DEPLOYED}"' in printed.out
        )


async def test_failure_messages_are_decoded_from_their_encoded_attributes(
    cluster: Cluster,
) -> None:
    c = cluster
    describe = ("workflow", "describe", "-w", FAILED, "--output", "json")
    decoded = await c.temporal(*describe, codec=c.open_codec)
    assert decoded.code == 0, decoded.err
    failure = json.loads(decoded.out)["closeEvent"]["workflowExecutionFailedEventAttributes"][
        "failure"
    ]
    assert failure["message"] == "Encoded failure"
    assert MISSING_RELEASE in failure["encodedAttributes"]["message"]
    show = await c.temporal("workflow", "show", "-w", FAILED, "--detailed", codec=c.open_codec)
    assert f"failure.encodedAttributes.message: {MISSING_RELEASE}" in show.out
    sealed = await c.temporal(*describe)
    assert sealed.code == 0 and MISSING_RELEASE not in sealed.out


async def test_a_token_protected_codec_server_needs_codec_auth(cluster: Cluster) -> None:
    c = cluster
    query = ("workflow", "query", "-w", DEPLOYED, "--type", "status")
    allowed = await c.temporal(*query, codec=c.guarded_codec, auth=f"Bearer {TOKEN}")
    assert allowed.code == 0, allowed.err
    assert f'"requested_by":"{REQUESTED_BY}"' in allowed.out
    for auth in (None, "Bearer not-the-token-000000"):
        refused = await c.temporal(*query, codec=c.guarded_codec, auth=auth)
        assert refused.code != 0, refused.out
        assert "Unauthorized" in refused.err and "--codec-auth" in refused.err
        assert REQUESTED_BY not in refused.out + refused.err


async def test_what_the_cli_sends_is_encrypted_through_the_codec_server(cluster: Cluster) -> None:
    """`temporal workflow start --input` with the codec endpoint: the input is stored
    encrypted (the CLI called /encode) and the worker reads it."""
    c = cluster
    # 1.4.0, created later, is deployed in staging: replacing it is asked for with force.
    request = {
        "app": "web",
        "version": "1.0.0",
        "target": "staging",
        "requested_by": CLI_REQUESTER,
        "force": True,
    }
    workflow_id = "promote-web-1.0.0-staging"
    started = await c.temporal(
        "workflow",
        "start",
        "--type",
        PROMOTION.name,
        "--task-queue",
        c.stack.settings.task_queue,
        "--workflow-id",
        workflow_id,
        "--input",
        json.dumps(request),
        codec=c.guarded_codec,
        auth=f"Bearer {TOKEN}",
    )
    assert started.code == 0, started.err
    handle = c.stack.client.get_workflow_handle(workflow_id, result_type=PromotionResult)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "deployed", result.reason
    first = (await handle.fetch_history()).events[0]
    [stored] = first.workflow_execution_started_event_attributes.input.payloads
    assert stored.metadata["encoding"] == ENCODING and CLI_REQUESTER.encode() not in stored.data
    show = await c.temporal(
        "workflow",
        "show",
        "-w",
        workflow_id,
        "--detailed",
        codec=c.guarded_codec,
        auth=f"Bearer {TOKEN}",
    )
    assert f"input[0].requested_by: {CLI_REQUESTER}" in show.out


def readme_temporal_commands() -> list[list[str]]:
    """The `temporal workflow ...` commands of the README's sh blocks, as a shell splits them."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:2] == ["temporal", "workflow"]:
                commands.append(argv)
    return commands


async def test_the_readmes_temporal_examples_print_decoded_payloads(cluster: Cluster) -> None:
    c = cluster
    reading = [argv for argv in readme_temporal_commands() if argv[2] in READS]
    assert len(reading) >= 5, reading
    servers = {DEV_CODEC: c.open_codec, README_CODEC: c.guarded_codec}
    for argv in reading:
        assert "--codec-endpoint" in argv, f"README: {shlex.join(argv)} prints ciphertext"
        args = [servers.get(a, a).replace("$TOKEN", TOKEN) for a in argv[1:]]
        assert all(not a.startswith("http") or a in servers.values() for a in args), args
        done = await c.temporal(*args)
        assert done.code == 0, f"README: {shlex.join(argv)}: {done.err}"
        assert SEALED not in done.out, f"README: {shlex.join(argv)} left payloads encrypted"
        if argv[2] == "query":
            assert '"requested_by":"ci@acme' in done.out
