"""Printing for people (aligned tables) and for programs (`--json`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from pydantic import BaseModel

if TYPE_CHECKING:
    from services.config_entries import DeletedKey


def emit_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any] | list[Any]) -> None:
    def plain(item: Any) -> Any:
        return item.model_dump(mode="json") if isinstance(item, BaseModel) else item

    data = [plain(v) for v in value] if isinstance(value, list | tuple) else plain(value)
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "(none)") -> None:
    if not rows:
        click.echo(empty)
        return
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        click.echo(click.style(line, bold=True) if n == 0 and sys.stdout.isatty() else line)


def done(message: str) -> None:
    click.echo(message)


def day(at: datetime | None) -> str:
    """A date as tables show it (an expiry, say); blank for none."""
    return f"{at:%Y-%m-%d}" if at is not None else ""


def deleted(kind: str, name: str) -> dict[str, Any]:
    """What deleting an environment, an app or a tool prints with --json."""
    return {"kind": kind, "name": name, "deleted": True}


def print_deleted_key(result: DeletedKey, as_json: bool) -> None:
    """What deleting a variable or a secret prints."""
    prefix = "vars" if result.kind == "variable" else "secrets"
    where = result.environment + (f" for app {result.app}" if result.app else "")
    if as_json:
        emit_json(result)
    elif result.already_deleted:
        done(f"{prefix}.{result.key} in {where} was already deleted; nothing to do")
    else:
        done(
            f"deleted {prefix}.{result.key} in {where} (version {result.version}; versions up "
            f"to {result.last_version} stay on record for past deployments and rollbacks)"
        )


def print_warnings(warnings: Iterable[str]) -> None:
    """Each warning as one line on stderr ("warning: ..."), with `--json` too: stdout stays
    machine output and the exit code stays 0 (certificates about to expire, for example)."""
    for warning in warnings:
        prefix = (
            click.style("warning:", fg="yellow", bold=True) if sys.stderr.isatty() else "warning:"
        )
        click.echo(f"{prefix} {warning}", err=True)


def error(message: str) -> None:
    prefix = click.style("error:", fg="red", bold=True) if sys.stderr.isatty() else "error:"
    click.echo(f"{prefix} {message}", err=True)
