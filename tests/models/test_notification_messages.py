"""The message each audit entry becomes: Slack's incoming-webhook JSON whose `text` reads
alone, with a link to the console, and nothing a person typed able to open a link or
mention anyone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from models.notifications import ZERO_WIDTH_SPACE, escaped, event_of, greeting, message
from models.views import AuditEntry

CONSOLE = "https://stageline.example.com"


def entry(action: str, subject: str, actor: str = "alice", **detail: Any) -> AuditEntry:
    return AuditEntry(
        at=datetime(2026, 12, 1, tzinfo=UTC),
        actor=actor,
        action=action,
        environment="production",
        app="web",
        subject=subject,
        detail=detail,
    )


def text_of(e: AuditEntry) -> str:
    event = event_of(e)
    assert event is not None
    sent = message(e, event, CONSOLE)
    # The same sentence in `text` (all Mattermost and Discord show) and in the blocks.
    assert sent["blocks"][0]["text"]["text"] == sent["text"]
    text: str = sent["text"]
    return text


def test_deployed_reads_as_one_sentence_with_the_run_link() -> None:
    text = text_of(entry("promotion.deployed", "web@1.4.0 -> production", workflow_id="p-1"))
    assert text == (
        ":white_check_mark: web 1.4.0 deployed to production by alice — "
        f"<{CONSOLE}/runs/p-1|open in stageline>"
    )
    sent = message(
        entry("promotion.deployed", "web@1.4.0 -> production", workflow_id="p-1"),
        "deployed",
        CONSOLE,
    )
    assert sent["blocks"][1]["elements"][0]["url"] == f"{CONSOLE}/runs/p-1"


def test_each_event_says_what_happened() -> None:
    approval = entry(
        "promotion.awaiting_approval",
        "web@1.4.0 -> production",
        workflow_id="promote-web-1.4.0-production",
        version="1.4.0",
        required_approvals=2,
        reviewers=["bob", "@release-managers"],
    )
    assert text_of(approval).startswith(
        ":raised_hand: web 1.4.0 needs 2 approvals to deploy to production (requested by "
        f"alice; reviewers: bob, @{ZERO_WIDTH_SPACE}release-managers) — "
        f"<{CONSOLE}/runs/promote-web-1.4.0-production|"
    )
    failed = entry(
        "promotion.failed",
        "web@1.1.0 -> production",
        workflow_id="w",
        reason="step 'migrate' failed (exit 1); production is back on 1.0.0",
    )
    assert text_of(failed).startswith(
        ":x: web 1.1.0 failed to deploy to production (requested by alice): step 'migrate' "
        "failed (exit 1); production is back on 1.0.0 — "
    )
    rollback = entry("rollback.rolled_back", "web in production: 1.4.0 -> 1.3.0", "oncall")
    assert text_of(rollback).startswith(
        ":rewind: web rolled back in production from 1.4.0 to 1.3.0 by oncall — "
    )
    broken = entry(
        "rollback.failed", "web in production: 1.4.0 -> 1.3.0", "oncall", reason="hook 500"
    )
    assert "rollback of web in production from 1.4.0 to 1.3.0 failed" in text_of(broken)
    stopped = entry("promotion.rolled_back", "web@1.5.0 -> production", workflow_id="w")
    assert "web 1.5.0 stopped deploying to production: a rollback took precedence" in (
        text_of(stopped)
    )


def test_link_goes_to_the_environment_without_a_run() -> None:
    text = text_of(entry("rollback.rolled_back", "web in production: 1.4.0 -> 1.3.0"))
    assert text.endswith(f"<{CONSOLE}/environments/production|open in stageline>")


def test_entries_that_send_nothing() -> None:
    noop = entry("promotion.deployed", "web@1.4.0 -> production", noop=True)
    assert event_of(noop) is None
    for action in ("promotion.request", "compensation.rolled_back", "compensation.failed"):
        assert event_of(entry(action, "x")) is None


@pytest.mark.parametrize(
    "hostile",
    [
        "<https://evil.example|open in stageline>",
        "<!channel> <!here> <@U123> <#C999>",
        "@channel @here @everyone",
        "[open in stageline](https://evil.example)",
        "a & b > c\n:white_check_mark: web 9.9.9 deployed",
    ],
)
def test_hostile_text_cannot_open_a_link_or_mention_anyone(hostile: str) -> None:
    failed = entry(
        "promotion.failed",
        "web@1.1.0 -> production",
        actor=hostile,
        workflow_id="promote-web-1.1.0-production",
        reason=hostile,
    )
    text = text_of(failed)
    # The only link is the console's, and the only `<` and `>` are its brackets.
    assert text.count("<") == 1 and text.count(">") == 1
    assert text.endswith(f"<{CONSOLE}/runs/promote-web-1.1.0-production|open in stageline>")
    assert "\n" not in text
    assert "](" not in text
    for word in ("channel", "here", "everyone"):
        assert f"@{word}" not in text
    assert "&amp;" in text or "&" not in hostile


def test_escaping_follows_slacks_rules() -> None:
    assert escaped("a & <b>") == "a &amp; &lt;b&gt;"
    assert escaped("ops@acme.com") == f"ops@{ZERO_WIDTH_SPACE}acme.com"


def test_a_hostile_workflow_id_stays_inside_its_link() -> None:
    text = text_of(entry("promotion.deployed", "web@1.4.0 -> production", workflow_id="x|y>z"))
    assert text.endswith(f"<{CONSOLE}/runs/x%7Cy%3Ez|open in stageline>")


def test_the_test_message_names_target_and_environment() -> None:
    sent = greeting("production", "ops", CONSOLE + "/")
    assert "target ops of production" in sent["text"]
    assert sent["text"].endswith(f"<{CONSOLE}/environments/production|open in stageline>")
