"""The demo users `stageline dev --demo` creates: once per home, with passwords that stay."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from models.identity import PrincipalKind
from models.settings import Settings
from services.unit import Units
from store.database import Database
from tests.conftest import KEY_TEXT
from vault.keys import MasterKey
from worker import demo

KEY = MasterKey.from_text(KEY_TEXT, "test")


@pytest.fixture
def home_settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'stageline.db'}",
        master_key=KEY_TEXT,
        workspace="default",
    )


@pytest.fixture
async def demo_db(home_settings: Settings) -> AsyncIterator[Database]:
    database = Database(home_settings.database_url)
    await database.migrate()
    await demo.ensure_workspace(database, home_settings, KEY, "http://127.0.0.1:9")
    yield database
    await database.close()


async def test_created_once_with_the_same_passwords_each_run(
    demo_db: Database, home_settings: Settings
) -> None:
    first = await demo.ensure_users(demo_db, home_settings, KEY)
    kept = demo.users_file(home_settings)
    assert kept.stat().st_mode & 0o777 == 0o600
    passwords = {u.name: u.password for u in first}
    assert json.loads(kept.read_text()) == passwords
    assert sorted(passwords) == ["alice", "demo", "victor"]
    assert all(p is not None and len(p) >= 12 for p in passwords.values())

    again = await demo.ensure_users(demo_db, home_settings, KEY)
    assert {u.name: u.password for u in again} == passwords
    units = Units(demo_db, home_settings, KEY)
    async with units.read() as w:
        people = await w.principals.list_principals(PrincipalKind.PERSON)
    assert {p.name: sorted(str(g) for g in p.roles) for p in people} == {
        "alice": ["*:viewer", "production:reviewer"],
        "demo": ["*:admin"],
        "victor": ["*:viewer"],
    }
    async with units.write() as w:
        session = await w.principals.login("alice", passwords["alice"] or "")
    assert session.name == "alice"


async def test_a_deleted_password_file_is_not_replaced_by_wrong_passwords(
    demo_db: Database, home_settings: Settings
) -> None:
    await demo.ensure_users(demo_db, home_settings, KEY)
    demo.users_file(home_settings).unlink()
    again = await demo.ensure_users(demo_db, home_settings, KEY)
    # The users exist with passwords nobody kept: none is made up for them.
    assert [u.password for u in again] == [None, None, None]
    assert not demo.users_file(home_settings).exists()
