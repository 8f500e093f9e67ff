"""Printing for people (aligned tables) and for programs (`--json`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click
from pydantic import BaseModel


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
