"""Notification targets per environment, and the rules of delivering to them.

A target is a webhook that takes Slack-compatible JSON. Its URL is a credential (a Slack
incoming-webhook URL is its own token), so it is sealed with the environment's data key as a
secret is, bound to its workspace, environment and name; only `scheme://host` is kept plain,
for lists. Messages are made from the audit log, an outbox: every outcome is audited in the
transaction that makes it, so a message is never sent for what did not happen, and never
lost for what did. The dispatcher beside each worker (`worker/notifier.py`) calls `scan`,
`claim` and `record` here, in units of work of its own, and sends between them (never inside
a transaction). See the README's Notifications for the delivery semantics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import SplitResult, urlsplit

from models.errors import BadInput, Conflict, NotFound
from models.names import check_resource_name, shown
from models.notifications import (
    ACTIONS,
    EVENTS,
    DeliveryView,
    NotificationEvent,
    NotificationTargetView,
    NotificationTestResult,
    event_of,
    greeting,
    message,
)
from services.base import Service, did_you_mean
from services.views import audit_entry
from store import audit
from store import notifications as repo
from store.tables import Environment, NotificationDelivery, NotificationTarget
from vault.envelope import DecryptionError, notification_url_aad, seal, unseal
from vault.secret_value import SecretValue

if TYPE_CHECKING:
    import httpx

# A send gives up after this long without an answer, and after SEND_SECONDS in all (a
# receiver that answers drop by drop cannot hold a send longer than the claim on it lasts).
TIMEOUT_SECONDS = 10.0
SEND_SECONDS = 30.0
# Redirects followed, only to the same scheme, host and port.
MAX_REDIRECTS = 3
MAX_URL_CHARS = 2000
# How much of a receiver's answer an error keeps.
ANSWER_CHARS = 200
# Entries one scan reads at most (a burst larger than this is read over several scans).
SCAN_LIMIT = 500
DUE_LIMIT = 100

log = logging.getLogger("stageline.notifier")
# Targets (and the sealing) whose URL this process could not decrypt, warned about once.
_UNREADABLE: set[tuple[int, bytes]] = set()


def check_url(url: SecretValue) -> str:
    """Refuse a URL that cannot be a webhook, never quoting it (it is a credential). Returns
    its `scheme://host[:port]`, what lists show."""
    text = url.reveal().strip()
    how = "copy the incoming-webhook URL from Slack, Mattermost or Discord and pipe it again"
    if not text:
        raise BadInput(
            "the webhook URL is empty; pipe it on stdin: "
            'printf %s "$WEBHOOK_URL" | stageline notify add ENV NAME'
        )
    if len(text) > MAX_URL_CHARS:
        raise BadInput(f"the webhook URL is longer than {MAX_URL_CHARS} characters; {how}")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise BadInput(
            f"the webhook URL has a space, line break or control character in it; {how}, "
            "on one line"
        )
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        given = f"with {shown(scheme + ':')}" if scheme else "without http:// or https://"
        raise BadInput(f"the webhook URL must start with https:// (or http://), not {given}; {how}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise BadInput(f"the webhook URL's port is not a number from 1 to 65535; {how}") from None
    if not host:
        raise BadInput(f"the webhook URL has no host after {scheme}://; {how}")
    return origin_of(parts, host, port)


def origin_of(parts: SplitResult, host: str, port: int | None) -> str:
    """`scheme://host[:port]`, without user, password, path or query."""
    shown_host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{shown_host}" + (f":{port}" if port is not None else "")


def check_events(events: Sequence[str] | None) -> list[NotificationEvent]:
    """The events asked for, in their usual order; None: all of them."""
    known = ", ".join(EVENTS)
    if events is None:
        return list(EVENTS)
    chosen = [e.strip().lower() for raw in events for e in str(raw).split(",") if e.strip()]
    if not chosen:
        raise BadInput(f"no event named; use one or more of {known} (all when none is given)")
    for name in chosen:
        if name not in EVENTS:
            raise BadInput(
                f"event {shown(name)} is not known{did_you_mean(name, EVENTS)}; use one or "
                f"more of {known} (all when none is given)"
            )
    return [e for e in EVENTS if e in chosen]


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    try:
        return origin_of(parts, parts.hostname or "", parts.port)
    except ValueError:
        return origin_of(parts, parts.hostname or "", None)


def _redacted(text: str, url: str) -> str:
    """An error or an answer, without the URL or its path (where the token is)."""
    parts = urlsplit(url)
    secret_parts = [url, url.rstrip("/"), parts.path + (f"?{parts.query}" if parts.query else "")]
    secret_parts += [parts.path, parts.query]
    for part in sorted({p for p in secret_parts if len(p) > 1}, key=len, reverse=True):
        text = text.replace(part, "***")
    return " ".join(text.split())


# httpx logs every request's full URL (INFO, logger "httpx"): for a webhook that is the
# credential. While this module sends, those records are dropped (a context variable, so the
# worker's other requests still log).
_SENDING: ContextVar[bool] = ContextVar("stageline_notification_sending", default=False)


class _UnlessSending(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _SENDING.get()


_QUIET = _UnlessSending()


@dataclass(frozen=True)
class Attempt:
    """How one send went."""

    ok: bool
    http_status: int | None = None
    error: str | None = None


async def post(client: httpx.AsyncClient, url: SecretValue, payload: dict[str, Any]) -> Attempt:
    """POST the message; 2xx is sent. Redirects are followed only to the same scheme, host
    and port (a webhook that redirects elsewhere could hand the message to anyone). Errors
    never contain the URL."""
    import httpx

    plain = url.reveal().strip()
    target, host = plain, _host_of(plain)
    httpx_log = logging.getLogger("httpx")
    if _QUIET not in httpx_log.filters:
        httpx_log.addFilter(_QUIET)
    sending = _SENDING.set(True)
    try:
        async with asyncio.timeout(SEND_SECONDS):
            for _ in range(MAX_REDIRECTS + 1):
                response = await client.post(target, json=payload)
                if not response.is_redirect:
                    break
                following = str(response.url.join(response.headers.get("location", "")))
                if _host_of(following) != host:
                    return Attempt(
                        False,
                        response.status_code,
                        f"answered {response.status_code} redirecting to "
                        f"{_host_of(following)}; redirects to another host are not followed: "
                        "set the URL it redirects to",
                    )
                target = following
            else:
                return Attempt(False, response.status_code, f"more than {MAX_REDIRECTS} redirects")
    except (httpx.TimeoutException, TimeoutError):
        return Attempt(
            False,
            None,
            f"no answer from {host} in time ({TIMEOUT_SECONDS:g} s for each step, "
            f"{SEND_SECONDS:g} s in all)",
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = _redacted(str(exc) or type(exc).__name__, plain)
        return Attempt(False, None, f"cannot reach {host}: {reason}")
    finally:
        _SENDING.reset(sending)
    if response.is_success:
        return Attempt(True, response.status_code)
    answer = _redacted(response.text[:ANSWER_CHARS], plain)
    said = f": {answer}" if answer else ""
    return Attempt(
        False,
        response.status_code,
        f"answered {response.status_code} {response.reason_phrase}{said}",
    )


def http_client() -> httpx.AsyncClient:
    """The client messages are sent with (redirects are followed by `post` itself)."""
    import httpx

    return httpx.AsyncClient(
        timeout=TIMEOUT_SECONDS,
        follow_redirects=False,
        headers={"User-Agent": "stageline-notifier"},
    )


# -- what the dispatcher passes between its units of work ---------------------------------


@dataclass(frozen=True)
class Candidate:
    """An audit entry a target wants and no worker has claimed yet."""

    target_id: int
    audit_event_id: int
    event: str


@dataclass(frozen=True)
class Due:
    """A delivery to try again: a failed attempt whose wait is over, or a claim whose worker
    died before saying how it went."""

    delivery_id: int
    target_id: int
    audit_event_id: int
    attempts: int
    event: str


@dataclass
class Scan:
    """What one look at the log found."""

    target_ids: list[int] = field(default_factory=list)
    lowest_cursor: int = 0
    # Every entry up to this id was read by this scan.
    complete_through: int = 0
    fresh: list[Candidate] = field(default_factory=list)
    due: list[Due] = field(default_factory=list)


@dataclass(frozen=True)
class Outgoing:
    """A message this worker claimed and now sends."""

    delivery_id: int
    attempt: int
    target: str
    environment: str
    event: str
    url: SecretValue
    payload: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    attempt: int
    result: Attempt


def _delivery_view(row: NotificationDelivery) -> DeliveryView:
    return DeliveryView(
        event=row.event,
        status=cast(Any, row.status),
        attempts=row.attempts,
        at=row.at,
        http_status=row.http_status,
        error=row.last_error,
    )


def _view(
    row: NotificationTarget, environment: str, last: NotificationDelivery | None
) -> NotificationTargetView:
    return NotificationTargetView(
        name=row.name,
        environment=environment,
        events=[e for e in EVENTS if e in row.events],
        url_host=row.url_host,
        created_by=row.created_by,
        created_at=row.created_at,
        last_delivery=_delivery_view(last) if last is not None else None,
    )


class NotificationService(Service):
    # -- configuration (the CLI, the server, the console) ------------------------------------

    async def add_target(
        self,
        environment: str,
        name: str,
        url: SecretValue,
        events: list[str] | None = None,
        *,
        actor: str,
    ) -> NotificationTargetView:
        """Send this environment's `events` (None: all) to the webhook `url`, from now on:
        what happened before is not sent."""
        check_resource_name(name, "notification target name")
        chosen = check_events(events)
        host = check_url(url)
        self.key  # noqa: B018  # without a master key, fail before any lookup
        env = await self.environment(environment)
        if await repo.find_target(self.session, env.id, name) is not None:
            raise Conflict(
                f"notification target {name!r} already exists in {environment}; remove it "
                f"first with 'stageline notify remove {environment} {name}', or choose "
                "another name"
            )
        ws = await self.workspace_id()
        row = NotificationTarget(
            workspace_id=ws,
            environment_id=env.id,
            name=name,
            url_ciphertext=seal(
                self.work.secrets.data_key(env),
                url.reveal().strip().encode(),
                notification_url_aad(env.workspace_id, env.id, name),
            ),
            url_host=host,
            events=list(chosen),
            cursor=await audit.last_id(self.session, ws),
            created_by=actor,
        )
        self.session.add(row)
        await self.session.flush()
        await self.audit(
            actor,
            "notification.add",
            f"notification target {name} in {environment}",
            environment=environment,
            detail={"events": list(chosen), "url_host": host},
        )
        return _view(row, env.name, None)

    async def list_targets(self, environment: str) -> list[NotificationTargetView]:
        """The environment's targets, with their last delivery; never a URL."""
        env = await self.environment(environment)
        rows = await repo.targets_of(self.session, env.id)
        last = await repo.last_deliveries(self.session, [r.id for r in rows])
        return [_view(r, env.name, last.get(r.id)) for r in rows]

    async def _target(self, environment: str, name: str) -> tuple[NotificationTarget, Environment]:
        env = await self.environment(environment)
        found = await repo.find_target(self.session, env.id, name)
        if found is None:
            known = [t.name for t in await repo.targets_of(self.session, env.id)]
            raise NotFound(
                f"notification target {shown(name)} does not exist in {environment}"
                f"{did_you_mean(name, known)}; known: {', '.join(known) or 'none yet'} (add "
                f"one with 'stageline notify add {environment} NAME')"
            )
        return found, env

    async def remove_target(self, environment: str, name: str, *, actor: str) -> None:
        """Stop sending to it; messages not yet sent to it are dropped."""
        row, env = await self._target(environment, name)
        await repo.delete_target(self.session, row.id)
        await self.audit(
            actor,
            "notification.remove",
            f"notification target {name} in {env.name}",
            environment=env.name,
            detail={"url_host": row.url_host},
        )

    async def test_target(self, environment: str, name: str) -> NotificationTestResult:
        """Send a test message now and say how the receiver answered (nothing is stored)."""
        row, env = await self._target(environment, name)
        url = self._url(row, env)
        async with http_client() as client:
            result = await post(
                client, url, greeting(env.name, row.name, self.settings.console_url)
            )
        return NotificationTestResult(
            name=row.name,
            environment=env.name,
            url_host=row.url_host,
            ok=result.ok,
            http_status=result.http_status,
            error=result.error,
        )

    def _url(self, row: NotificationTarget, env: Environment) -> SecretValue:
        plain = unseal(
            self.work.secrets.data_key(env),
            row.url_ciphertext,
            notification_url_aad(env.workspace_id, env.id, row.name),
            f"the URL of notification target {row.name!r} of environment {env.name!r}",
        )
        return SecretValue(plain.decode())

    # -- delivery (the dispatcher beside each worker) ---------------------------------------

    async def scan(self, now: datetime) -> Scan:
        """What is to be sent: entries no worker has claimed for a target that wants them, and
        deliveries due again. Reads only."""
        ws = await self.workspace_id()
        rows = await repo.targets_with_environments(self.session, ws)
        if not rows:
            return Scan()
        ids = [t.id for t, _ in rows]
        lowest = min(t.cursor for t, _ in rows)
        # First the log's end, then the entries: (on PostgreSQL each statement has its own
        # snapshot) every entry up to that end is among those read.
        last = await audit.last_id(self.session, ws)
        entries = await audit.entries_after(
            self.session,
            ws,
            lowest,
            environments={env.name for _, env in rows},
            actions=ACTIONS.keys(),
            limit=SCAN_LIMIT,
        )
        complete = min(last, entries[-1].id) if len(entries) == SCAN_LIMIT else last
        taken = await repo.claimed(self.session, ids, lowest)
        fresh = []
        for entry in entries:
            event = event_of(audit_entry(entry))
            if event is None:
                continue
            for target, env in rows:
                wanted = env.name == entry.environment and event in target.events
                if wanted and entry.id > target.cursor and (target.id, entry.id) not in taken:
                    fresh.append(Candidate(target.id, entry.id, event))
        due = [
            Due(d.id, d.target_id, d.audit_event_id, d.attempts, d.event)
            for d in await repo.due(self.session, ids, now, DUE_LIMIT)
        ]
        return Scan(ids, lowest, complete, fresh, due)

    async def claim(
        self, scan: Scan, *, now: datetime, lease: timedelta, advance_to: int | None = None
    ) -> list[Outgoing]:
        """Claim what `scan` found (what another worker claimed first is left to it), and
        move the targets' cursors to `advance_to`. Returns the messages to send, in the order
        of the log."""
        wanted = {c.target_id for c in scan.fresh} | {d.target_id for d in scan.due}
        session = self.session
        # A target whose URL this worker cannot read is skipped; its cursor still moves (so it
        # never holds the others back): what a worker with the right key does not send within
        # the cursor's grace is not sent.
        targets, urls = await self._readable(wanted)
        # (entry, target, delivery, attempt, event): sorted, the order of the log.
        claimed: list[tuple[int, int, int, int, str]] = []
        until = now + lease
        for c in scan.fresh:
            if c.target_id not in targets:
                continue
            delivery = await repo.claim_new(
                session, c.target_id, c.audit_event_id, c.event, now, until
            )
            if delivery is not None:
                claimed.append((c.audit_event_id, c.target_id, delivery, 1, c.event))
        for d in scan.due:
            if d.target_id in targets and await repo.claim_again(
                session, d.delivery_id, d.attempts, now, until
            ):
                claimed.append(
                    (d.audit_event_id, d.target_id, d.delivery_id, d.attempts + 1, d.event)
                )
        if advance_to is not None and advance_to > scan.lowest_cursor:
            await repo.advance_cursors(session, scan.target_ids, advance_to)
        entries = await audit.entries_by_id(session, {c[0] for c in claimed})
        outgoing = []
        for entry_id, target_id, delivery, attempt, event in sorted(claimed):
            target, env = targets[target_id]
            outgoing.append(
                Outgoing(
                    delivery_id=delivery,
                    attempt=attempt,
                    target=target.name,
                    environment=env.name,
                    event=event,
                    url=urls[target_id],
                    payload=message(
                        audit_entry(entries[entry_id]),
                        cast(NotificationEvent, event),
                        self.settings.console_url,
                    ),
                )
            )
        return outgoing

    async def _readable(
        self, wanted: set[int]
    ) -> tuple[dict[int, tuple[NotificationTarget, Environment]], dict[int, SecretValue]]:
        """The targets of `wanted` that still exist and whose URL this worker can decrypt,
        with their URLs. One it cannot (another master key, an altered row) is left out, and
        said once in the log: it never holds the others back."""
        if not wanted:
            return {}, {}
        ws = await self.workspace_id()
        found = await repo.targets_with_environments(self.session, ws, sorted(wanted))
        targets, urls = {}, {}
        for target, env in found:
            try:
                urls[target.id] = self._url(target, env)
            except DecryptionError as exc:
                seen = (target.id, bytes(target.url_ciphertext[:16]))  # its version, nonce
                if seen not in _UNREADABLE:
                    _UNREADABLE.add(seen)
                    log.warning("notifications to %s are held back: %s", target.name, exc.message)
                continue
            targets[target.id] = (target, env)
        return targets, urls

    async def record(
        self,
        outcomes: Sequence[Outcome],
        *,
        now: datetime,
        max_attempts: int,
        retry_after: Sequence[float],
    ) -> None:
        """How each attempt went: sent; or, failed, tried again after `retry_after[n-1]`
        seconds (the last one repeated), until `max_attempts` have failed."""
        for o in outcomes:
            if o.result.ok:
                status = "sent"
            elif o.attempt >= max_attempts:
                status = "failed"
            else:
                status = "pending"
            wait = retry_after[min(o.attempt, len(retry_after)) - 1] if retry_after else 0.0
            await repo.record_attempt(
                self.session,
                o.delivery_id,
                o.attempt,
                status=status,
                http_status=o.result.http_status,
                error=o.result.error,
                next_attempt_at=now + timedelta(seconds=wait),
                now=now,
            )
