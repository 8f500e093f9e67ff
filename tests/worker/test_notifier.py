"""The notification dispatcher against a real database (SQLite file, PostgreSQL) and real
HTTP receivers on 127.0.0.1: several dispatchers send each message once; a failing receiver
is tried again, then given up on, and later messages still go; redirects to another host
are not followed; an error never holds the URL."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select, update

from models.settings import Settings
from services.base import Service
from services.unit import Units
from store.database import Database
from store.tables import AuditEvent, NotificationDelivery, NotificationTarget
from tests.http_recorder import Recorder, recorder
from vault.secret_value import SecretValue
from worker.notifier import Notifier


def fast(units: Units) -> Notifier:
    """A dispatcher that looks every 50 ms and tries a failed message again 50 ms later."""
    return Notifier(units, poll_seconds=0.05, retry_after=(0.05,))


@pytest.fixture
async def units(db: Database, settings: Settings) -> Units:
    units = Units(db, settings)
    async with units.write() as w:
        await w.environments.create_environment("production", actor="t")
        await w.environments.create_environment("dev", actor="t")
    return units


async def add(units: Units, url: str, name: str = "ops", env: str = "production") -> None:
    async with units.write() as w:
        await w.notifications.add_target(env, name, SecretValue(url), actor="ana")


async def deployed(units: Units, version: str, env: str = "production") -> None:
    async with units.write() as w:
        await Service(w).audit(
            "ci",
            "promotion.deployed",
            f"web@{version} -> {env}",
            environment=env,
            app="web",
            detail={"workflow_id": f"promote-web-{version}-{env}"},
        )


@asynccontextmanager
async def running(*notifiers: Notifier) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(n.run()) for n in notifiers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def deliveries(db: Database) -> list[NotificationDelivery]:
    async with db.read() as session:
        return list(await session.scalars(select(NotificationDelivery)))


def versions(rec: Recorder) -> list[str]:
    return [c.body["text"].split(" ")[2] for c in rec.calls]


async def test_two_dispatchers_on_one_database_send_each_message_once(
    units: Units, settings: Settings
) -> None:
    other_db = Database(settings.database_url)  # another worker: its own engine and pool
    try:
        with recorder() as rec:
            await add(units, f"{rec.url}/hooks/a")
            await add(units, f"{rec.url}/hooks/b", name="second")
            first, second = fast(units), fast(Units(other_db, settings))
            async with running(first, second):
                for i in range(20):
                    await deployed(units, f"1.0.{i}")
                await until(lambda: len(rec.calls) >= 40)
                await asyncio.sleep(0.5)  # time for a duplicate to show up
        for path in ("/hooks/a", "/hooks/b"):
            sent = [c for c in rec.calls if c.path == path]
            # Each once (two workers may send a target's messages of the same moment in
            # another order: each sends its own in the log's order).
            texts = sorted(c.body["text"].split(" ")[2] for c in sent)
            assert texts == sorted(f"1.0.{i}" for i in range(20))
        assert {d.status for d in await deliveries(units.db)} == {"sent"}
    finally:
        await other_db.close()


async def test_a_failing_receiver_is_tried_again_then_given_up_and_later_messages_go(
    units: Units,
) -> None:
    with recorder(status=500) as rec:
        await add(units, f"{rec.url}/hooks/a")
        async with running(fast(units)):
            await deployed(units, "1.0.0")
            await until(lambda: len(rec.calls) >= 5)
            await asyncio.sleep(0.4)
            assert len(rec.calls) == 5  # five attempts, then no more
            async with units.read() as w:
                [view] = await w.notifications.list_targets("production")
            assert view.last_delivery is not None
            assert view.last_delivery.status == "failed" and view.last_delivery.attempts == 5
            assert view.last_delivery.http_status == 500
            assert view.last_delivery.error == 'answered 500 Internal Server Error: {"ok": true}'

            rec.status = 200
            await deployed(units, "1.1.0")
            await until(lambda: len(rec.calls) >= 6)
            await asyncio.sleep(0.3)
    assert versions(rec) == ["1.0.0"] * 5 + ["1.1.0"]
    statuses = {d.audit_event_id: d.status for d in await deliveries(units.db)}
    assert sorted(statuses.values()) == ["failed", "sent"]


async def test_a_message_waits_for_its_retry_while_later_ones_go(units: Units) -> None:
    with recorder(status=503) as rec:
        await add(units, f"{rec.url}/hooks/a")
        notifier = Notifier(units, poll_seconds=0.05, retry_after=(0.8,))
        async with running(notifier):
            await deployed(units, "1.0.0")
            await until(lambda: len(rec.calls) == 1)
            rec.status = 200
            await deployed(units, "1.1.0")
            await until(lambda: len(rec.calls) >= 3)
    # The later one went at once; the failed one on its retry, after it.
    assert versions(rec) == ["1.0.0", "1.1.0", "1.0.0"]


@contextmanager
def receiver(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server whose answer the test writes; yields its URL and the paths hit."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hits.append(self.path)
            answer(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def reply(handler: BaseHTTPRequestHandler, status: int, body: str = "", **headers: str) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body.encode())))
    handler.end_headers()
    handler.wfile.write(body.encode())


async def test_redirects_are_followed_only_on_the_same_host(units: Units) -> None:
    with recorder() as elsewhere:
        port = elsewhere.url.rsplit(":", 1)[1]

        def answer(handler: BaseHTTPRequestHandler) -> None:
            if handler.path == "/hooks/moved":
                reply(handler, 308, Location="/hooks/here")
            elif handler.path == "/hooks/away":
                reply(handler, 307, Location=f"http://localhost:{port}/steal")
            else:
                reply(handler, 200, "ok")

        with receiver(answer) as (url, hits):
            await add(units, f"{url}/hooks/moved", name="moved")
            await add(units, f"{url}/hooks/away", name="away", env="dev")
            notifier = Notifier(units, poll_seconds=0.05, max_attempts=1)
            async with running(notifier):
                await deployed(units, "1.0.0")
                await deployed(units, "1.0.0", env="dev")
                await until(lambda: len(hits) >= 3)
                await asyncio.sleep(0.3)
            async with units.read() as w:
                [moved] = await w.notifications.list_targets("production")
                [away] = await w.notifications.list_targets("dev")
    assert sorted(hits) == ["/hooks/away", "/hooks/here", "/hooks/moved"]
    assert elsewhere.calls == []
    assert moved.last_delivery is not None and moved.last_delivery.status == "sent"
    assert away.last_delivery is not None and away.last_delivery.status == "failed"
    assert away.last_delivery.error == (
        f"answered 307 redirecting to http://localhost:{port}; redirects to another host are "
        "not followed: set the URL it redirects to"
    )


async def test_errors_and_logs_never_hold_the_url(
    units: Units, caplog: pytest.LogCaptureFixture
) -> None:
    token = "T0123/B0456/sEcReT-tOkEn-789"

    def answer(handler: BaseHTTPRequestHandler) -> None:
        reply(handler, 404, f"no_service: {handler.path} http://127.0.0.1{handler.path}")

    with receiver(answer) as (url, _):
        await add(units, f"{url}/services/{token}")
        await add(units, f"http://127.0.0.1:9/services/{token}", name="nobody", env="dev")
        caplog.set_level(logging.DEBUG)
        async with running(Notifier(units, poll_seconds=0.05, max_attempts=1)):
            await deployed(units, "1.0.0")
            await deployed(units, "1.0.0", env="dev")
            await until(lambda: len([d for d in caplog.messages if "attempt 1 of 1" in d]) >= 2)
    async with units.read() as w:
        [refused] = await w.notifications.list_targets("production")
        [unreachable] = await w.notifications.list_targets("dev")
    assert refused.last_delivery is not None and unreachable.last_delivery is not None
    assert refused.last_delivery.error is not None and "answered 404" in refused.last_delivery.error
    assert unreachable.last_delivery.error is not None
    assert unreachable.last_delivery.error.startswith("cannot reach http://127.0.0.1:9")
    everything = json.dumps([refused.model_dump(mode="json"), unreachable.model_dump(mode="json")])
    for part in token.split("/"):
        assert part not in everything
        assert part not in caplog.text


async def cursor_and_log_end(db: Database) -> tuple[int, int]:
    async with db.read() as session:
        target = (await session.scalars(select(NotificationTarget))).one()
        end = await session.scalar(select(func.max(AuditEvent.id)))
    return target.cursor, int(end or 0)


async def test_cursors_move_past_what_was_looked_at_and_removed_targets_stop(
    units: Units, db: Database
) -> None:
    with recorder() as rec:
        await add(units, f"{rec.url}/hooks/a")
        start, _ = await cursor_and_log_end(db)
        notifier = Notifier(units, poll_seconds=0.05, grace_seconds=0, cursor_every_seconds=0)
        async with running(notifier):
            await deployed(units, "1.0.0")
            await deployed(units, "1.0.0", env="dev")  # not this target's
            await until(lambda: len(rec.calls) == 1)
            for _ in range(100):
                cursor, end = await cursor_and_log_end(db)
                if cursor == end:
                    break
                await asyncio.sleep(0.05)
            assert start < cursor == end

            async with units.write() as w:
                await w.notifications.remove_target("production", "ops", actor="ana")
            await deployed(units, "1.1.0")
            await asyncio.sleep(0.3)
    assert versions(rec) == ["1.0.0"]
    assert await deliveries(db) == []


async def test_a_target_whose_url_cannot_be_read_holds_no_other_back(
    units: Units, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with recorder() as rec:
        await add(units, f"{rec.url}/hooks/good")
        await add(units, f"{rec.url}/hooks/moved", name="moved")
        # A ciphertext copied from another target's row is bound to that target: it fails.
        async with db.write() as session:
            good = (
                await session.scalars(
                    select(NotificationTarget).where(NotificationTarget.name == "ops")
                )
            ).one()
            await session.execute(
                update(NotificationTarget)
                .where(NotificationTarget.name == "moved")
                .values(url_ciphertext=good.url_ciphertext)
            )
        async with running(fast(units)):
            await deployed(units, "1.0.0")
            await deployed(units, "1.1.0")
            await until(lambda: len(rec.calls) >= 2)
            await asyncio.sleep(0.3)
    assert [c.path for c in rec.calls] == ["/hooks/good", "/hooks/good"]
    held = [m for m in caplog.messages if "notifications to moved are held back" in m]
    assert len(held) == 1 and "cannot be decrypted here" in held[0]
