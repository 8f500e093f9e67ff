"""No part of a secret, in any spelling stageline produces, reaches what a promotion leaves.

A real promotion on a real Temporal dev server: a step printing 1.5 MiB around a long secret,
a step printing a 2-character secret stored before secrets had a minimum length, and tools
whose receiver echoes the request (bearer token, basic auth, a JSON body with a secret
holding `"` and `\\`, the same URL-encoded) in answers longer than the 2000 characters kept,
the credential placed across that cut. The stored step output, every payload of the history
(decoded with the key) and the CLI output are searched for every piece of every spelling.
"""

from __future__ import annotations

import json
import random
import string
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from sqlalchemy import select

import services.secrets
from activities.masking import spellings
from models.workspace import AuthScheme
from store.tables import StepRun
from tests.stack import CONVERTER, Stack, payloads_in, stack
from vault.secret_value import MASK, SecretValue

# Letters and digits drawn once: no piece of them is ordinary text, a uuid or a word.
LONG = "".join(random.Random(400).choices(string.ascii_letters + string.digits, k=400))
TINY = "Q7"  # stored before `secret set` had a minimum length
BEARER = "Zq9-Br3aT0k-x7Kd2-w8Pm"
BASIC = "svc9Xq:pA55-w0Rd-7hJk"
QUOTED = 'qU0"tE\\bK-sL4sH-é-Vx8Rt'
FORMED = "fRm Vx9q&w1Th=sP4c/aNd+pLu5"
SECRETS = {"LONG": LONG, "TINY": TINY, "HOOK_TOKEN": BEARER, "BASIC": BASIC}
SECRETS |= {"QUOTED": QUOTED, "FORMED": FORMED}
CUT = 2000  # what step_tool keeps of an answer

# 1.5 MiB: filler, secrets side by side where a 1 MiB cap of the raw output would start,
# filler, and secrets side by side again where the last 16,000 characters would start;
# written in odd-sized pieces so that reads split the secrets anywhere.
PRINT_MUCH = """
import os, sys
secret = os.environ["SECRET"]
line = "filler line of ordinary output, nothing secret in it at all.\\n"
text = (line * 30000)[:1_350_000]
dense = (secret + "|") * 500
text = text[:440_000] + dense + text[440_000:] + (secret + "|") * 60 + "END\\n"
out = sys.stdout.buffer
for i in range(0, len(text), 4093):
    out.write(text[i : i + 4093].encode())
    out.flush()
"""


def pipeline() -> str:
    def run(script: str) -> str:
        return json.dumps([sys.executable, "-c", script])

    return f"""\
steps:
  - name: much
    run: {run(PRINT_MUCH)}
    env: {{SECRET: "${{{{ secrets.LONG }}}}"}}
  - name: tiny
    run: {run("import os; print('tiny=' + os.environ['T'] + '.')")}
    env: {{T: "${{{{ secrets.TINY }}}}"}}
  - name: bearer
    tool: bearer-hook
  - name: basic
    tool: basic-hook
  - name: json
    tool: json-hook
    with: {{token: "${{{{ secrets.QUOTED }}}}"}}
  - name: form
    tool: form-hook
    with: {{value: "${{{{ secrets.FORMED }}}}"}}
"""


@contextmanager
def echo_server() -> Iterator[str]:
    """A receiver that answers with the request it got, more than 2000 characters of it,
    the credential (its Authorization header, or the secret in its body, as JSON or
    URL-encoded) centred on character 2000."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            value = json.loads(raw).get("value", "")
            encoded = f"{quote(value, safe='')} {quote_plus(value)}"
            focus = {
                "/bearer": self.headers.get("Authorization", ""),
                "/basic": self.headers.get("Authorization", ""),
                "/json": raw[raw.index('"token"') :] if '"token"' in raw else raw,
                "/form": quote_plus(value),
            }[self.path]
            echo = "".join(f"{k}: {v}\n" for k, v in self.headers.items())
            text = "." * (CUT - len(focus) // 2) + focus + "\n" + echo + raw + "\n" + encoded
            body = (text + "\n" + "." * 3000).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def pieces(secret: str) -> set[str]:
    """What must not be seen: every 6 characters of every spelling (all of a shorter one)."""
    found: set[str] = set()
    for form in spellings(secret):
        if len(form) <= 6:
            found.add(form)
        else:
            found.update(form[i : i + 6] for i in range(len(form) - 5))
    return found


def leaks(where: str, text: str) -> list[str]:
    return [
        f"{where}: {name} shows {piece!r}"
        for name, secret in SECRETS.items()
        for piece in sorted(pieces(secret))
        if piece in text
    ]


@pytest.fixture
async def workspace(
    temporal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    async with stack(temporal, tmp_path / "home") as s:
        await s.envs.create_environment("dev", actor="t")
        await s.envs.create_app("web", ["dev"], actor="t")
        for key, value in SECRETS.items():
            if key == "TINY":
                # As if set before the minimum: `secret set` refuses it now.
                with monkeypatch.context() as old_rules:
                    old_rules.setattr(services.secrets, "MIN_SECRET_CHARS", 1)
                    await s.config.set_secret("dev", key, SecretValue(value), actor="t")
            else:
                await s.config.set_secret("dev", key, SecretValue(value), actor="t")
        yield s


async def test_no_piece_of_any_secret_reaches_step_output_history_or_cli(
    workspace: Stack,
) -> None:
    s = workspace
    with echo_server() as url:
        profiles: list[tuple[str, str | None, AuthScheme]] = [
            ("bearer", "HOOK_TOKEN", "bearer"),
            ("basic", "BASIC", "basic"),
            ("json", None, "bearer"),
            ("form", None, "bearer"),
        ]
        for name, secret, scheme in profiles:
            await s.config.create_tool(f"{name}-hook", kind="webhook", actor="t")
            await s.config.set_tool_profile(
                f"{name}-hook",
                "dev",
                url=f"{url}/{name}",
                auth_secret=secret,
                auth_scheme=scheme,
                actor="t",
            )
        await s.releases.create_release("web", "1.0.0", pipeline(), actor="t")
        done = await s.cli().run("promote", "web", "1.0.0", "--to", "dev", "--wait", "--json")
    assert done.code == 0, done.err
    result = json.loads(done.out)
    details = {step["name"]: step["detail"] or "" for step in result["steps"]}

    # Each step did what it should, and its secrets are masked where they were.
    assert details["much"].endswith("END\n") and f"|{MASK}|" in details["much"]
    assert f"tiny={MASK}." in details["tiny"]
    for name in ("bearer", "basic", "json", "form"):
        answer = details[name].split("\n", 1)[1]
        assert len(answer) == CUT and MASK in answer, (name, answer[-200:])
    assert f".Bearer {MASK}\n" in details["bearer"]
    assert f".Basic {MASK}\n" in details["basic"]

    problems = leaks("CLI", done.out + done.err)
    async with s.db.read() as session:
        for row in await session.scalars(select(StepRun)):
            problems += leaks(f"step_run {row.name}", row.output or "")
    assert CONVERTER.payload_codec is not None
    async for execution in s.client.list_workflows():
        handle = s.client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        for event in history.events:
            for path, payload in payloads_in(event):
                [clear] = await CONVERTER.payload_codec.decode([payload])
                decoded = clear.SerializeToString().decode("utf-8", "replace")
                problems += leaks(f"{execution.id} {path}", decoded)
    assert problems == []
