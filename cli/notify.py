"""`stageline notify`: where an environment's notifications go (Slack-compatible webhooks).

A webhook URL is a credential (whoever has a Slack incoming-webhook URL can post to that
channel), so it is read like a secret value: from stdin, or a prompt that does not echo it,
never from an argument that shell history and process lists would keep. It is stored
encrypted and never shown again: lists show its scheme and host.
"""

from __future__ import annotations

import sys

import click

from cli.context import actor, run, stdin_text
from cli.output import done, emit_json, table
from cli.params import ENVIRONMENT, ResourceName, json_option
from models.errors import BadInput, ExitCode, StagelineError
from models.names import check_resource_name
from models.notifications import EVENTS, NotificationTargetView
from services.unit import Units
from vault.secret_value import SecretValue

TARGET = ResourceName("notification target name")


class DeliveryFailed(StagelineError):
    """The test message did not arrive (exit 1)."""

    exit_code = ExitCode.FAILED


@click.group()
def notify() -> None:
    """Notifications per environment: approval needed, deployed, failed, rolled back."""


def _read_url(environment: str, name: str) -> SecretValue:
    if sys.stdin is None or sys.stdin.closed:
        raise BadInput(
            f'no webhook URL: pipe it on stdin: printf %s "$WEBHOOK_URL" | stageline notify '
            f"add {environment} {name}"
        )
    if sys.stdin.isatty():
        return SecretValue(click.prompt("webhook URL", hide_input=True, err=True))
    return SecretValue(stdin_text("the webhook URL", "pipe the URL as text, on one line"))


def _last(view: NotificationTargetView) -> str:
    last = view.last_delivery
    if last is None:
        return "-"
    when = f"{last.at:%Y-%m-%d %H:%M}"
    said = f" ({last.error})" if last.error and last.status != "sent" else ""
    tries = f", attempt {last.attempts}" if last.status == "pending" and last.attempts > 1 else ""
    return f"{last.event} {last.status} {when}{tries}{said}"


@notify.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("environment", metavar="ENV", type=ENVIRONMENT)
@click.argument("name", type=TARGET)
@click.argument("stray", nargs=-1, required=False)
@click.option(
    "--events",
    "events",
    multiple=True,
    metavar="EVENT[,EVENT]",
    help=f"What to send: {', '.join(EVENTS)} (comma-separated or repeated; default: all).",
)
@json_option
def notify_add(
    environment: str, name: str, stray: tuple[str, ...], events: tuple[str, ...], as_json: bool
) -> None:
    """Send ENV's notifications to a webhook NAME; its URL is read from stdin (or a prompt),
    never from an argument, and stored encrypted."""
    check_resource_name(name, "notification target name")
    if stray:
        raise BadInput(
            "a webhook URL is never taken as an argument (shell history and process lists "
            'would keep it, and it is a credential); pipe it: printf %s "$WEBHOOK_URL" | '
            f"stageline notify add {environment} {name}"
        )
    url = _read_url(environment, name)

    async def work(units: Units) -> None:
        async with units.write() as w:
            view = await w.notifications.add_target(
                environment, name, url, list(events) if events else None, actor=actor()
            )
        if as_json:
            emit_json(view)
        else:
            done(
                f"added notification target {name} to {environment}: {', '.join(view.events)} "
                f"-> {view.url_host} (the URL is stored encrypted; try it with 'stageline notify "
                f"test {environment} {name}')"
            )

    run(work)


@notify.command("list")
@click.argument("environment", metavar="ENV", type=ENVIRONMENT)
@json_option
def notify_list(environment: str, as_json: bool) -> None:
    """List ENV's notification targets: name, events, host (never the URL), last delivery."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            views = await w.notifications.list_targets(environment)
        if as_json:
            emit_json(views)
        else:
            table(
                ["NAME", "EVENTS", "HOST", "LAST DELIVERY", "ADDED BY"],
                [(v.name, ",".join(v.events), v.url_host, _last(v), v.created_by) for v in views],
            )

    run(work)


@notify.command("remove")
@click.argument("environment", metavar="ENV", type=ENVIRONMENT)
@click.argument("name", type=TARGET)
@json_option
def notify_remove(environment: str, name: str, as_json: bool) -> None:
    """Stop sending ENV's notifications to NAME (messages not sent yet are dropped)."""

    async def work(units: Units) -> None:
        async with units.write() as w:
            await w.notifications.remove_target(environment, name, actor=actor())
        if as_json:
            emit_json({"environment": environment, "name": name, "removed": True})
        else:
            done(f"removed notification target {name} from {environment}")

    run(work)


@notify.command("test")
@click.argument("environment", metavar="ENV", type=ENVIRONMENT)
@click.argument("name", type=TARGET)
@json_option
def notify_test(environment: str, name: str, as_json: bool) -> None:
    """Send a test message to NAME now and show how it answered (exit 1 when it did not
    take it)."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            result = await w.notifications.test_target(environment, name)
        if as_json:
            emit_json(result)
        elif result.ok:
            done(f"test message sent to {name} ({result.url_host}): HTTP {result.http_status}")
        if not result.ok:
            raise DeliveryFailed(
                f"the test message to {name} ({result.url_host}) did not arrive: {result.error}"
            )

    run(work)


COMMANDS = [notify]
