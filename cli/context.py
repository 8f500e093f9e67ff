"""What a command needs: settings, the database, the acting person; and running it."""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from models.errors import BadInput
from models.settings import Settings
from services.unit import Units
from store.database import Database

T = TypeVar("T")


def actor() -> str:
    """Who is acting, for the audit log: STAGELINE_USER, else the login name."""
    try:
        return os.environ.get("STAGELINE_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def ci_job_request_id() -> str | None:
    """The CI job this command runs in, as a request id that stays the same when the job is
    re-run or retried, so a retried `rollback` is the same request: GitHub Actions' run id and
    job (a re-run attempt keeps both), GitLab's pipeline id and job name (a retried job keeps
    both). None outside those (or when STAGELINE_REQUEST_ID names the request instead)."""
    env = os.environ
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_JOB"):
        raw = f"gh-{env['GITHUB_RUN_ID']}-{env['GITHUB_JOB']}"
    elif env.get("CI_PIPELINE_ID") and env.get("CI_JOB_NAME"):
        raw = f"gl-{env['CI_PIPELINE_ID']}-{env['CI_JOB_NAME']}"
    else:
        return None
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)[:100]


def stdin_text(what: str, hint: str) -> str:
    """All of stdin, as text, less the one newline `echo value |` adds. `what` names the value
    in errors ("secret DB_PASSWORD"); `hint` says what to pipe instead of other bytes."""
    try:
        data = sys.stdin.read()
    except UnicodeDecodeError:
        raise BadInput(f"{what} on stdin is not UTF-8 text; {hint}") from None
    if data.endswith("\r\n"):
        return data[:-2]
    return data[:-1] if data.endswith("\n") else data


def run(work: Callable[[Units], Awaitable[T]]) -> T:
    """Run one command's async work with a database that is closed afterwards. The command
    opens its units of work (`async with units.write() as w:`): each is one transaction.
    With STAGELINE_URL set, the units are calls to that server instead (cli.remote)."""

    async def main() -> T:
        settings = Settings.from_env()
        if os.environ.get("STAGELINE_URL", "").strip():  # remote; httpx loads only then
            from cli.remote import RemoteUnits, connection

            remote = connection(settings)
            assert remote is not None
            try:
                return await work(cast(Units, RemoteUnits(remote, settings)))
            finally:
                await remote.close()
        db = Database(settings.database_url)
        try:
            return await work(Units(db, settings))
        finally:
            await db.close()

    return asyncio.run(main())
