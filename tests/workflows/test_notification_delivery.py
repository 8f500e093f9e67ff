"""Notifications from real promotions and rollbacks: a real Temporal dev server, the worker
with its notification dispatcher (as `stageline worker` builds it), and a real webhook
receiver on 127.0.0.1 that gets Slack-compatible JSON with a link to the console."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from models.review import Decision
from models.settings import CONSOLE_URL
from tests.http_recorder import Recorder, recorder
from tests.stack import Stack, outcome, stack, until_phase
from tests.workflows import scenario
from vault.secret_value import SecretValue
from workflows.contract import PromotionHandle

TOKEN = "T0NOTIFY/B0NOTIFY/notification-webhook-token"


@pytest.fixture
async def scenario_ws(temporal: Any, tmp_path: Path) -> AsyncIterator[tuple[Stack, Recorder]]:
    with recorder() as hooks, recorder() as chat:
        async with stack(temporal, tmp_path / "home") as s:
            await scenario.build(s, hooks.url, production_approvals=1)
            async with s.units.write() as w:
                for env in ("dev", "production"):
                    await w.notifications.add_target(
                        env, "chat", SecretValue(f"{chat.url}/{env}/{TOKEN}"), actor="ana"
                    )
            yield s, chat


@pytest.fixture
def chat(scenario_ws: tuple[Stack, Recorder]) -> Recorder:
    """The webhook receiver the notifications of dev and production go to."""
    return scenario_ws[1]


async def messages(chat: Recorder, path: str, count: int, timeout: float = 30.0) -> list[str]:
    """The texts the receiver got on `path`, once there are `count` (the dispatcher looks at
    the log every 1.5 s)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        texts = [c.body["text"] for c in chat.calls if c.path.startswith(path)]
        if len(texts) >= count or asyncio.get_running_loop().time() > deadline:
            assert len(texts) == count, texts
            return texts
        await asyncio.sleep(0.1)


def link(text: str) -> str:
    assert text.endswith("|open in stageline>"), text
    return text[text.rindex("<") + 1 : text.rindex("|")]


async def test_a_protected_promotion_asks_for_approval_then_says_it_deployed(
    ws: Stack, chat: Recorder
) -> None:
    await ws.releases.create_release("web", "1.0.0", scenario.pipeline(), actor="t")
    for env in ("dev", "staging"):
        assert (await ws.promote("web", "1.0.0", env)).status == "deployed"
    handle = await ws.start_promotion("web", "1.0.0", "production", requested_by="alice")
    await until_phase(handle, "awaiting_approval")
    [asking] = await messages(chat, "/production/", 1)
    run_page = f"{CONSOLE_URL}/runs/promote-web-1.0.0-production"
    assert asking == (
        ":raised_hand: web 1.0.0 needs 1 approval to deploy to production (requested by alice; "
        f"reviewers: alice, bob, carol) — <{run_page}|open in stageline>"
    )
    await PromotionHandle(handle).approve(Decision(reviewer="bob"))
    assert (await outcome(handle)).status == "deployed"
    texts = await messages(chat, "/production/", 2)
    assert texts[1] == (
        f":white_check_mark: web 1.0.0 deployed to production by alice — <{run_page}|open in "
        "stageline>"
    )
    # Slack's blocks: the same sentence, and a button to the same page.
    body = [c.body for c in chat.calls if c.path.startswith("/production/")][1]
    assert body["blocks"][0]["text"] == {"type": "mrkdwn", "text": texts[1]}
    assert body["blocks"][1]["elements"][0]["url"] == run_page

    listed = await ws.cli().run("notify", "list", "production", "--json")
    assert listed.code == 0, listed.err
    [target] = json.loads(listed.out)
    assert target["last_delivery"]["status"] == "sent"
    assert target["last_delivery"]["event"] == "deployed"
    assert TOKEN.split("/")[-1] not in listed.out


async def test_deployed_failed_and_compensated_rolled_back_each_send_one_message(
    ws: Stack, chat: Recorder
) -> None:
    for version in ("1.0.0", "1.1.0"):
        await ws.releases.create_release("web", version, scenario.pipeline(), actor="t")
        assert (await ws.promote("web", version, "dev")).status == "deployed"
    # A CI job retried: already there, nothing changed, nothing sent.
    again = await ws.promote("web", "1.1.0", "dev")
    assert again.status == "deployed" and again.noop
    await ws.releases.create_release("web", "1.2.0", scenario.pipeline(fail_step=True), actor="t")
    failed = await ws.promote("web", "1.2.0", "dev")
    assert failed.status == "failed" and "dev is back on 1.1.0" in (failed.reason or "")
    rolled = await ws.cli().run("rollback", "web", "--env", "dev", "--wait")
    assert rolled.code == 0, rolled.err

    texts = await messages(chat, "/dev/", 4)
    assert texts[0].startswith(":white_check_mark: web 1.0.0 deployed to dev by tester — ")
    assert texts[1].startswith(":white_check_mark: web 1.1.0 deployed to dev by tester — ")
    assert texts[2].startswith(
        ":x: web 1.2.0 failed to deploy to dev (requested by tester): step 'migrate' failed"
    )
    assert "dev is back on 1.1.0 — <" in texts[2]
    assert texts[3].startswith(":rewind: web rolled back in dev from 1.1.0 to 1.0.0 by tester")
    assert [link(t) for t in texts[:3]] == [
        f"{CONSOLE_URL}/runs/promote-web-1.0.0-dev",
        f"{CONSOLE_URL}/runs/promote-web-1.1.0-dev",
        f"{CONSOLE_URL}/runs/promote-web-1.2.0-dev",
    ]
    assert link(texts[3]).startswith(f"{CONSOLE_URL}/runs/rollback-web-dev-")
    # The compensation's own entries sent nothing more; production got nothing.
    await asyncio.sleep(2)
    assert len([c for c in chat.calls if c.path.startswith("/dev/")]) == 4
    assert not [c for c in chat.calls if c.path.startswith("/production/")]
