"""Notifications per environment: the events a target can ask for, which audit entries they
come from, what a target looks like to people (never its URL), and the message each entry
becomes (Slack's incoming-webhook JSON, which Mattermost and Discord's Slack-compatible
endpoints take too).

Every value a person or a pipeline chose (a version, a reason, a comment, a name) is escaped
the way Slack asks (`&`, `<`, `>`), so it can neither open a link (`<https://...|text>`) nor
mention anyone (`<!channel>`, `<@U123>`); an `@` in it is followed by an invisible
zero-width space, so `@channel` or `@here` in a reason pings no one where plain `@` mentions
(Mattermost, Discord), and a Markdown link (`[text](url)`) is broken the same way.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel

from models.text import head
from models.views import AuditEntry

NotificationEvent = Literal["approval-needed", "deployed", "failed", "rolled-back"]
EVENTS: tuple[NotificationEvent, ...] = ("approval-needed", "deployed", "failed", "rolled-back")
DeliveryStatus = Literal["pending", "sent", "failed"]

# The audit entries each event is made of. A promotion that fails after its deploy began is
# compensated by a child workflow, and the promotion's own outcome (`promotion.failed`) says
# how that went ("...; production is back on 1.3.0", or why it could not be): the
# compensation's entries (`compensation.rolled_back|failed`) would say it a second time, so
# they send nothing. `promotion.rolled_back` is a promotion a rollback of its environment
# took precedence over; the rollback sends its own message as well.
ACTIONS: dict[str, NotificationEvent] = {
    "promotion.awaiting_approval": "approval-needed",
    "promotion.deployed": "deployed",
    "promotion.failed": "failed",
    "rollback.failed": "failed",
    "rollback.rolled_back": "rolled-back",
    "promotion.rolled_back": "rolled-back",
}
# A reason is cut to this many characters in a message (the console has all of it).
REASON_CHARS = 300
ZERO_WIDTH_SPACE = "\u200b"


class DeliveryView(BaseModel):
    """The last message sent (or being sent) to a target, as lists show it."""

    event: str
    status: DeliveryStatus
    attempts: int
    at: datetime
    http_status: int | None = None
    # Why the last attempt failed (never the URL).
    error: str | None = None


class NotificationTargetView(BaseModel):
    """A notification target as anyone who may view its environment sees it: the URL's
    scheme and host only, never its path or token."""

    name: str
    environment: str
    events: list[NotificationEvent]
    url_host: str
    created_by: str
    created_at: datetime
    last_delivery: DeliveryView | None = None


class NotificationTestResult(BaseModel):
    """What `stageline notify test` got back from the receiver."""

    name: str
    environment: str
    url_host: str
    ok: bool
    http_status: int | None = None
    error: str | None = None


def event_of(entry: AuditEntry) -> NotificationEvent | None:
    """The event an audit entry is, or None when it sends nothing. A promotion of a release
    already deployed and verified there (a CI retry, `noop`) changed nothing: no message."""
    if entry.action == "promotion.deployed" and entry.detail.get("noop"):
        return None
    return ACTIONS.get(entry.action)


def escaped(value: object) -> str:
    """A value someone chose, safe inside a message's text (see the module's doc)."""
    text = " ".join(str(value).split())  # one line: no faked second message line
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("@", "@" + ZERO_WIDTH_SPACE)
    return re.sub(r"\]\s*\(", "]" + ZERO_WIDTH_SPACE + "(", text)


def link_of(entry: AuditEntry, console_url: str) -> str:
    """The console page of what the entry is about: the run, or the environment."""
    base = console_url.rstrip("/")
    workflow_id = entry.detail.get("workflow_id")
    if isinstance(workflow_id, str) and workflow_id:
        return f"{base}/runs/{quote(workflow_id, safe='')}"
    return f"{base}/environments/{quote(entry.environment or '', safe='')}"


def _versions(entry: AuditEntry) -> tuple[str | None, str | None, str | None]:
    """(version, from, to) as the entry's subject names them: a promotion's subject is
    `app@version -> environment`, a rollback's `app in environment: from -> to`."""
    app, env, subject = entry.app or "", entry.environment or "", entry.subject
    if isinstance(entry.detail.get("version"), str):
        return entry.detail["version"], None, None
    promotion = f"{app}@", f" -> {env}"
    if subject.startswith(promotion[0]) and subject.endswith(promotion[1]):
        return subject[len(promotion[0]) : -len(promotion[1])], None, None
    rollback = f"{app} in {env}: "
    if subject.startswith(rollback) and " -> " in subject:
        before, _, after = subject[len(rollback) :].partition(" -> ")
        return None, before, after
    return None, None, None


def _reason(entry: AuditEntry) -> str:
    reason = entry.detail.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        return ""
    return f": {escaped(head(' '.join(reason.split()), REASON_CHARS))}"


def headline(entry: AuditEntry, event: NotificationEvent) -> str:
    """The message's sentence, escaped, without the link."""
    app, env, actor = escaped(entry.app or "?"), escaped(entry.environment or "?"), entry.actor
    version, before, after = _versions(entry)
    release = f"{app} {escaped(version)}" if version else escaped(entry.subject)
    by = escaped(actor)
    if event == "approval-needed":
        required = entry.detail.get("required_approvals")
        reviewers = entry.detail.get("reviewers") or []
        count = f"{required} approval{'s' if required != 1 else ''}" if required else "approval"
        who = f"; reviewers: {', '.join(escaped(r) for r in reviewers)}" if reviewers else ""
        return f":raised_hand: {release} needs {count} to deploy to {env} (requested by {by}{who})"
    if event == "deployed":
        return f":white_check_mark: {release} deployed to {env} by {by}"
    if entry.action == "promotion.failed":
        return f":x: {release} failed to deploy to {env} (requested by {by}){_reason(entry)}"
    if entry.action == "rollback.failed":
        moving = f" from {escaped(before)} to {escaped(after)}" if before and after else ""
        return f":x: rollback of {app} in {env}{moving} failed (requested by {by}){_reason(entry)}"
    if entry.action == "promotion.rolled_back":
        return (
            f":rewind: {release} stopped deploying to {env}: a rollback took precedence "
            f"(requested by {by})"
        )
    moving = f" from {escaped(before)} to {escaped(after)}" if before and after else ""
    return f":rewind: {app} rolled back in {env}{moving} by {by}{_reason(entry)}"


def slack_message(sentence: str, link: str) -> dict[str, Any]:
    """Slack incoming-webhook JSON: `text` reads alone (Mattermost and Discord show only
    it; Slack uses it in notifications), `blocks` are the same sentence and a button."""
    text = f"{sentence} — <{link}|open in stageline>"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in stageline"},
                        "url": link,
                    }
                ],
            },
        ],
    }


def message(entry: AuditEntry, event: NotificationEvent, console_url: str) -> dict[str, Any]:
    """The message an audit entry becomes."""
    return slack_message(headline(entry, event), link_of(entry, console_url))


def greeting(environment: str, name: str, console_url: str) -> dict[str, Any]:
    """What `stageline notify test` sends."""
    link = f"{console_url.rstrip('/')}/environments/{quote(environment, safe='')}"
    return slack_message(
        f":wave: stageline test message for target {escaped(name)} of {escaped(environment)}: "
        "notifications of this environment will arrive here",
        link,
    )
