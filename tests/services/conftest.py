"""Fixtures of the service tests (each on SQLite and on PostgreSQL: the `db` fixture)."""

from __future__ import annotations

import pytest

from models.settings import Settings
from services.unit import Units
from store.database import Database

PIPELINE = 'steps:\n  - name: deploy\n    run: ["true"]\n'


@pytest.fixture
async def web_in_dev(db: Database, settings: Settings) -> Units:
    """Units on a workspace with `dev`, an app `web` pointing to it, and releases 1.0.0 and
    1.1.0 of a one-step pipeline."""
    units = Units(db, settings)
    async with units.write() as w:
        await w.environments.create_environment("dev", actor="t")
        await w.environments.create_app("web", ["dev"], actor="t")
        await w.releases.create_release("web", "1.0.0", PIPELINE, actor="t")
        await w.releases.create_release("web", "1.1.0", PIPELINE, actor="t")
    return units
