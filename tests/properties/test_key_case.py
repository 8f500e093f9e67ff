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
from services.configuration import ConfigurationService
from services.environments import EnvironmentService
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
async def config(db: Database, settings: Settings) -> ConfigurationService:
    envs = EnvironmentService(db, settings)
    for name in ("dev", "staging"):
        await envs.create_environment(name, actor="t")
    await envs.create_app("web", ["dev", "staging"], actor="t")
    await envs.create_app("api", ["dev"], actor="t")
    service = ConfigurationService(db, settings)
    await service.set_variable("dev", "FEATURE", "on", actor="t")
    await service.set_secret("dev", "DATABASE_URL", SecretValue("s3cret-value"), actor="t")
    return service


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
    config: ConfigurationService,
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
            await config.set_variable("dev", key, "x", actor="t", app=app)
        else:
            await config.set_secret("dev", key, SecretValue("x-secret-value"), actor="t", app=app)
    message = caught.value.message
    assert f"{kind} {key!r} differs only by case from the existing {existing} {where}" in message
    assert "use '" in message
    assert await rows(db) == before


async def test_an_app_keys_clash_with_the_environment_keys_and_not_another_apps(
    config: ConfigurationService,
) -> None:
    await config.set_variable("dev", "Region", "eu", actor="t", app="web")
    # Another app never sees web's keys: its own spelling is its own.
    await config.set_variable("dev", "REGION", "us", actor="t", app="api")
    # But the environment's keys are seen by both.
    with pytest.raises(Conflict) as caught:
        await config.set_variable("dev", "region", "x", actor="t")
    assert "the existing variable 'Region' in dev for app web" in caught.value.message
    # Another environment is another set of names.
    await config.set_variable("staging", "feature", "off", actor="t")


async def test_the_same_spelling_is_a_new_version_and_may_be_both_kinds(
    config: ConfigurationService,
) -> None:
    again = await config.set_variable("dev", "FEATURE", "off", actor="t")
    assert again.version == 2
    both = await config.set_secret("dev", "FEATURE", SecretValue("x-secret-value"), actor="t")
    assert both.version == 1


# -- the same, for any key and any respelling --------------------------------------------

keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True)


def respellings(key: str) -> st.SearchStrategy[str]:
    """`key` with the case of any of its letters flipped (perhaps none)."""
    return st.lists(st.booleans(), min_size=len(key), max_size=len(key)).map(
        lambda flips: "".join(c.swapcase() if f else c for c, f in zip(key, flips, strict=True))
    )


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ConfigurationService]:
    home: Path = tmp_path_factory.mktemp("key-case")
    settings = Settings(
        home=home, database_url=f"sqlite+aiosqlite:///{home / 'db.sqlite'}", master_key=KEY_TEXT
    )
    db = Database(settings.database_url)
    try:
        yield ConfigurationService(db, settings)
    finally:
        await db.close()


_environments = itertools.count()


@settings(max_examples=examples(40))
@given(st.data(), keys, st.booleans(), st.booleans())
async def test_a_second_spelling_is_refused_exactly_when_it_differs(
    shared: ConfigurationService,
    data: st.DataObject,
    key: str,
    first_secret: bool,
    second_secret: bool,
) -> None:
    other = data.draw(respellings(key))
    env = f"e{next(_environments)}"
    await EnvironmentService(shared.db, shared.settings).create_environment(env, actor="t")

    async def set_key(name: str, secret: bool) -> None:
        if secret:
            await shared.set_secret(env, name, SecretValue("v-secret-value"), actor="t")
        else:
            await shared.set_variable(env, name, "v", actor="t")

    await set_key(key, first_secret)
    if other == key:
        await set_key(other, second_secret)
    else:
        with pytest.raises(Conflict) as caught:
            await set_key(other, second_secret)
        assert f"the existing {'secret' if first_secret else 'variable'} {key!r}" in (
            caught.value.message
        )
