"""Keys that differ only by case: refused where one app would see both.

Variable and secret keys may be mixed case, and both become the environment variables of
steps, where `DATABASE_URL` and `database_url` read as one name but are two. The
configuration service refuses the second spelling, naming the first, within what one app
sees together: the environment's keys and its own (on SQLite, and on PostgreSQL when the
binaries are there).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from models.errors import Conflict
from models.settings import Settings
from models.workspace import SecretView, VariableView
from services.unit import Units
from store.database import Database
from store.tables import Secret, Variable
from tests.conftest import KEY_TEXT
from tests.properties.hostile import examples
from vault.secret_value import SecretValue


async def rows(db: Database) -> int:
    async with db.read() as session:
        variables = await session.scalar(select(func.count()).select_from(Variable))
        secrets = await session.scalar(select(func.count()).select_from(Secret))
    return (variables or 0) + (secrets or 0)


@pytest.fixture
async def units(db: Database, settings: Settings) -> Units:
    units = Units(db, settings)
    async with units.write() as w:
        for name in ("dev", "staging"):
            await w.environments.create_environment(name, actor="t")
        await w.environments.create_app("web", ["dev", "staging"], actor="t")
        await w.environments.create_app("api", ["dev"], actor="t")
        await w.variables.set_variable("dev", "FEATURE", "on", actor="t")
        await w.secrets.set_secret("dev", "DATABASE_URL", SecretValue("s3cret-value"), actor="t")
    return units


async def set_variable(
    units: Units, environment: str, key: str, value: str, app: str | None = None
) -> VariableView:
    async with units.write() as w:
        return await w.variables.set_variable(environment, key, value, actor="t", app=app)


async def set_secret(
    units: Units, environment: str, key: str, value: str, app: str | None = None
) -> SecretView:
    async with units.write() as w:
        return await w.secrets.set_secret(environment, key, SecretValue(value), actor="t", app=app)


@pytest.mark.parametrize(
    ("kind", "key", "app", "existing", "where"),
    [
        ("variable", "feature", None, "variable 'FEATURE'", "in dev;"),
        ("secret", "Feature", None, "variable 'FEATURE'", "in dev;"),
        ("variable", "database_url", None, "secret 'DATABASE_URL'", "in dev;"),
        ("secret", "Database_Url", "web", "secret 'DATABASE_URL'", "in dev;"),
        ("variable", "fEATURE", "api", "variable 'FEATURE'", "in dev;"),
    ],
)
async def test_a_key_differing_only_by_case_is_refused_and_nothing_is_stored(
    units: Units,
    db: Database,
    kind: str,
    key: str,
    app: str | None,
    existing: str,
    where: str,
) -> None:
    before = await rows(db)
    with pytest.raises(Conflict) as caught:
        if kind == "variable":
            await set_variable(units, "dev", key, "x", app=app)
        else:
            await set_secret(units, "dev", key, "x-secret-value", app=app)
    message = caught.value.message
    assert f"{kind} {key!r} differs only by case from the existing {existing} {where}" in message
    assert "use '" in message
    assert await rows(db) == before


async def test_an_app_keys_clash_with_the_environment_keys_and_not_another_apps(
    units: Units,
) -> None:
    await set_variable(units, "dev", "Region", "eu", app="web")
    # Another app never sees web's keys: its own spelling is its own.
    await set_variable(units, "dev", "REGION", "us", app="api")
    # But the environment's keys are seen by both.
    with pytest.raises(Conflict) as caught:
        await set_variable(units, "dev", "region", "x")
    assert "the existing variable 'Region' in dev for app web" in caught.value.message
    # Another environment is another set of names.
    await set_variable(units, "staging", "feature", "off")


async def test_the_same_spelling_is_a_new_version_and_may_be_both_kinds(units: Units) -> None:
    again = await set_variable(units, "dev", "FEATURE", "off")
    assert again.version == 2
    both = await set_secret(units, "dev", "FEATURE", "x-secret-value")
    assert both.version == 1


# -- the same, for any key and any respelling --------------------------------------------

keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True)


def respellings(key: str) -> st.SearchStrategy[str]:
    """`key` with the case of any of its letters flipped (perhaps none)."""
    return st.lists(st.booleans(), min_size=len(key), max_size=len(key)).map(
        lambda flips: "".join(c.swapcase() if f else c for c, f in zip(key, flips, strict=True))
    )


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Units]:
    home: Path = tmp_path_factory.mktemp("key-case")
    settings = Settings(
        home=home, database_url=f"sqlite+aiosqlite:///{home / 'db.sqlite'}", master_key=KEY_TEXT
    )
    db = Database(settings.database_url)
    try:
        yield Units(db, settings)
    finally:
        await db.close()


_environments = itertools.count()


@settings(max_examples=examples(40))
@given(st.data(), keys, st.booleans(), st.booleans())
async def test_a_second_spelling_is_refused_exactly_when_it_differs(
    shared: Units,
    data: st.DataObject,
    key: str,
    first_secret: bool,
    second_secret: bool,
) -> None:
    other = data.draw(respellings(key))
    env = f"e{next(_environments)}"
    async with shared.write() as w:
        await w.environments.create_environment(env, actor="t")

    async def set_key(name: str, secret: bool) -> None:
        if secret:
            await set_secret(shared, env, name, "v-secret-value")
        else:
            await set_variable(shared, env, name, "v")

    await set_key(key, first_secret)
    if other == key:
        await set_key(other, second_secret)
    else:
        with pytest.raises(Conflict) as caught:
            await set_key(other, second_secret)
        assert f"the existing {'secret' if first_secret else 'variable'} {key!r}" in (
            caught.value.message
        )
