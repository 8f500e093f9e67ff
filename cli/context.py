"""What a command needs: settings, the database, the acting person; and running it."""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

from models.settings import Settings
from store.database import Database

T = TypeVar("T")


def actor() -> str:
    """Who is acting, for the audit log: STAGELINE_USER, else the login name."""
    try:
        return os.environ.get("STAGELINE_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def run(work: Callable[[Settings, Database], Awaitable[T]]) -> T:
    """Run one command's async work with a database that is closed afterwards."""

    async def main() -> T:
        settings = Settings.from_env()
        db = Database(settings.database_url)
        try:
            return await work(settings, db)
        finally:
            await db.close()

    return asyncio.run(main())
