"""The notification dispatcher: a background task beside every worker that turns audit
entries into webhook messages (`services/notifications.py` has the rules).

Each round, about every 1.5 s:

1. read (no lock): the targets, the log's entries after the lowest target cursor that some
   target wants and no worker has claimed, and deliveries due again;
2. only when there is something: one short write to claim them, each by inserting its
   (target, entry) delivery row (the unique pair: of several workers on one database, one
   wins each message and the others skip it) or by a compare-and-set on a retry's attempt
   count; the same write moves the cursors;
3. send, outside any transaction (httpx, 10 s timeout), in the log's order per target, the
   targets at once;
4. one short write for how each went: sent, or tried again after a wait (5 s, 30 s, 2 min,
   10 min), failed after the fifth attempt.

A claim reserves its delivery for a minute (`LEASE`); a worker that dies mid-send leaves it
to another once that has passed, so a message is sent at least once, and once unless a
worker died between sending and recording.

Cursors: a target's cursor says every entry up to it has been looked at. On PostgreSQL ids
come from a sequence, so an entry can commit after one with a higher id was already read;
a cursor therefore only moves up to the end of the log as it was seen at least `GRACE`
ago (an entry is inserted as its transaction commits, so a minute is far more than such a
gap lasts), and an entry between the cursor and the end of the log is found again until
then, the delivery rows saying which were sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from datetime import timedelta

import httpx

from models.errors import StagelineError
from models.settings import Settings
from services.notifications import Outcome, Outgoing, http_client, post
from services.unit import Units
from store.database import Database
from store.tables import utcnow
from vault.keys import KeyProvider

log = logging.getLogger("stageline.notifier")

POLL_SECONDS = 1.5
LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 5
RETRY_AFTER: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0)
GRACE_SECONDS = 60.0
# Cursors are written at most this often: a busy log would otherwise cost a write a round.
CURSOR_EVERY_SECONDS = 15.0


class Notifier:
    """One dispatcher; `run()` until cancelled. Several on one database (one per worker)
    send each message once."""

    def __init__(
        self,
        units: Units,
        *,
        poll_seconds: float = POLL_SECONDS,
        retry_after: Sequence[float] = RETRY_AFTER,
        max_attempts: int = MAX_ATTEMPTS,
        lease: timedelta = LEASE,
        grace_seconds: float = GRACE_SECONDS,
        cursor_every_seconds: float = CURSOR_EVERY_SECONDS,
    ) -> None:
        self.units = units
        self.poll_seconds = poll_seconds
        self.retry_after = tuple(retry_after)
        self.max_attempts = max_attempts
        self.lease = lease
        self.grace_seconds = grace_seconds
        self.cursor_every_seconds = cursor_every_seconds
        # (monotonic time, the end of the log a scan read through), oldest first.
        self._seen: deque[tuple[float, int]] = deque()
        self._cursor_moved = 0.0
        self._failing = False

    @classmethod
    def for_worker(cls, db: Database, settings: Settings, key: KeyProvider) -> Notifier:
        return cls(Units(db, settings, key))

    async def run(self) -> None:
        async with http_client() as client:
            while True:
                try:
                    await self.round(client)
                    if self._failing:
                        log.info("notifications: the database answers again")
                    self._failing = False
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # one bad round never stops the worker
                    if not self._failing:
                        what = exc.message if isinstance(exc, StagelineError) else repr(exc)
                        log.warning("notifications: a round failed, trying again: %s", what)
                    self._failing = True
                await asyncio.sleep(self.poll_seconds)

    def _safe_cursor(self, now: float, complete_through: int) -> int | None:
        """Where the cursors may move: the end of the log as a round read it at least GRACE
        ago (this round read through it too); None when not yet, or not this round."""
        self._seen.append((now, complete_through))
        # Keep the newest of the ends seen GRACE ago or earlier, and those seen since.
        while len(self._seen) >= 2 and now - self._seen[1][0] >= self.grace_seconds:
            self._seen.popleft()
        seen_at, seen_through = self._seen[0]
        if now - seen_at < self.grace_seconds:
            return None
        if now - self._cursor_moved < self.cursor_every_seconds:
            return None
        return min(seen_through, complete_through)

    async def round(self, client: httpx.AsyncClient) -> list[Outcome]:
        """One look at the log, and what it sends. Returns how each send went."""
        async with self.units.read() as w:
            scan = await w.notifications.scan(utcnow())
        if not scan.target_ids:
            self._seen.clear()
            return []
        advance = self._safe_cursor(time.monotonic(), scan.complete_through)
        if advance is not None and advance <= scan.lowest_cursor:
            advance = None
        if not scan.fresh and not scan.due and advance is None:
            return []
        async with self.units.write() as w:
            outgoing = await w.notifications.claim(
                scan, now=utcnow(), lease=self.lease, advance_to=advance
            )
        if advance is not None:
            self._cursor_moved = time.monotonic()
        if not outgoing:
            return []
        # In the log's order for each target; the targets at once.
        by_target: dict[tuple[str, str], list[Outgoing]] = {}
        for message in outgoing:
            by_target.setdefault((message.environment, message.target), []).append(message)
        batches = list(by_target.values())
        sent = await asyncio.gather(*(self._send_in_order(client, batch) for batch in batches))
        outcomes = [o for batch in sent for o in batch]
        outgoing = [message for batch in batches for message in batch]
        async with self.units.write() as w:
            await w.notifications.record(
                outcomes,
                now=utcnow(),
                max_attempts=self.max_attempts,
                retry_after=self.retry_after,
            )
        for o, message in zip(outcomes, outgoing, strict=True):
            if not o.result.ok:
                log.warning(
                    "notifications: %s to %s of %s, attempt %d of %d: %s",
                    message.event,
                    message.target,
                    message.environment,
                    o.attempt,
                    self.max_attempts,
                    o.result.error,
                )
        return outcomes

    @staticmethod
    async def _send_in_order(client: httpx.AsyncClient, batch: list[Outgoing]) -> list[Outcome]:
        return [
            Outcome(o.delivery_id, o.attempt, await post(client, o.url, o.payload)) for o in batch
        ]
