"""`stageline audit`: the audit log."""

from __future__ import annotations

import click

from cli.context import run
from cli.output import emit_json, table
from cli.params import app_option, env_option, json_option
from services.unit import Units


@click.command()
@env_option(required=False)
@app_option()
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@json_option
def audit(environment: str | None, app: str | None, limit: int, as_json: bool) -> None:
    """Show the audit log, oldest first."""

    async def work(units: Units) -> None:
        async with units.read() as w:
            events = await w.views.audit_log(environment=environment, app=app, limit=limit)
        if as_json:
            emit_json(
                [
                    {
                        "at": e.at.isoformat(),
                        "actor": e.actor,
                        "action": e.action,
                        "environment": e.environment,
                        "app": e.app,
                        "subject": e.subject,
                        "detail": e.detail,
                    }
                    for e in events
                ]
            )
        else:
            table(
                ["AT", "ACTOR", "ACTION", "SUBJECT"],
                [(f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor, e.action, e.subject) for e in events],
            )

    run(work)


COMMANDS = [audit]
