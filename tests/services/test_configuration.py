"""Variables, secrets, tool profiles and their resolution, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from models.errors import BadInput, MissingConfiguration, NotFound, Refused
from models.pipeline import Reference, parse_pipeline
from models.settings import Settings
from services.configuration import ConfigurationService
from services.environments import EnvironmentService
from services.releases import ReleaseService
from store.database import Database
from store.tables import Environment, Secret
from vault.envelope import DecryptionError, data_key_aad, secret_aad, unseal, unwrap_data_key
from vault.keys import MasterKey
from vault.secret_value import SecretValue

PROD_PASSWORD = "prod-Pa55word-7f3a9c"
DEV_PASSWORD = "dev-pa55word-11aa"


@pytest.fixture
async def workspace(db: Database, settings: Settings) -> ConfigurationService:
    envs = EnvironmentService(db, settings)
    for name in ("dev", "staging", "production"):
        await envs.create_environment(name, actor="t")
    await envs.create_app("web", ["dev", "staging", "production"], actor="t")
    await envs.create_app("api", ["dev", "production"], actor="t")
    return ConfigurationService(db, settings)


async def test_app_value_overrides_environment_value(workspace: ConfigurationService) -> None:
    await workspace.set_variable("dev", "BASE_URL", "http://dev.internal", actor="t")
    await workspace.set_variable("dev", "LOG_LEVEL", "debug", actor="t")
    await workspace.set_variable("dev", "BASE_URL", "http://web.dev", actor="t", app="web")
    await workspace.set_secret("dev", "TOKEN", SecretValue("env-token"), actor="t")
    await workspace.set_secret("dev", "TOKEN", SecretValue("web-token"), actor="t", app="web")

    web = await workspace.resolve("dev", "web", decrypt=True)
    assert web.vars["BASE_URL"].value == "http://web.dev" and web.vars["BASE_URL"].scope == "app"
    assert web.vars["LOG_LEVEL"].value == "debug" and web.vars["LOG_LEVEL"].scope == "env"
    assert web.secrets["TOKEN"].value == SecretValue("web-token")

    api = await workspace.resolve("dev", "api", decrypt=True)
    assert api.vars["BASE_URL"].value == "http://dev.internal"
    assert api.secrets["TOKEN"].value == SecretValue("env-token")


async def test_resolution_names_every_missing_key_at_once(workspace: ConfigurationService) -> None:
    await workspace.set_variable("staging", "BASE_URL", "http://staging", actor="t")
    await workspace.create_tool("deploy-hook", kind="webhook", actor="t")
    await workspace.set_tool_profile(
        "deploy-hook",
        "staging",
        url="http://127.0.0.1:9/hook",
        auth_secret="HOOK_TOKEN",
        actor="t",
    )
    await workspace.create_tool("pager", kind="webhook", actor="t")
    refs = parse_pipeline(
        "steps:\n"
        "  - name: migrate\n"
        '    run: ["true"]\n'
        "    env: {A: '${{ vars.BASE_URL }}', B: '${{ vars.FEATURE }}', "
        "C: '${{ secrets.DATABASE_URL }}'}\n"
        "  - name: hook\n    tool: deploy-hook\n"
        "  - name: page\n    tool: pager\n"
    ).references()
    with pytest.raises(MissingConfiguration) as caught:
        await workspace.resolve("staging", "web", refs)
    assert caught.value.missing == [
        "secrets.DATABASE_URL",
        "secrets.HOOK_TOKEN (auth of tool deploy-hook)",
        "tools.pager (no profile)",
        "vars.FEATURE",
    ]
    assert "staging" in caught.value.message


async def test_resolution_gives_only_what_is_referenced(workspace: ConfigurationService) -> None:
    await workspace.set_secret("dev", "NEEDED", SecretValue("a-needed-value"), actor="t")
    await workspace.set_secret("dev", "OTHER", SecretValue("an-unrelated-value"), actor="t")
    resolved = await workspace.resolve(
        "dev", "web", {Reference(kind="secrets", name="NEEDED")}, decrypt=True
    )
    assert set(resolved.secrets) == {"NEEDED"}
    assert resolved.secret_values() == ["a-needed-value"]
    metadata_only = await workspace.resolve("dev", "web")
    assert all(s.value is None for s in metadata_only.secrets.values())


async def test_setting_again_makes_a_new_version_and_keeps_the_old(
    workspace: ConfigurationService, db: Database, master_key: MasterKey
) -> None:
    first = await workspace.set_secret("production", "DB", SecretValue("v1-value"), actor="t")
    second = await workspace.set_secret("production", "DB", SecretValue("v2-value"), actor="t")
    assert (first.version, second.version) == (1, 2)
    resolved = await workspace.resolve("production", "web", decrypt=True)
    assert resolved.secrets["DB"].version == 2
    assert resolved.secrets["DB"].value == SecretValue("v2-value")
    async with db.read() as session:
        env = await session.scalar(select(Environment).where(Environment.name == "production"))
        old = await session.scalar(select(Secret).where(Secret.key == "DB", Secret.version == 1))
        assert env is not None and old is not None
        data_key = unwrap_data_key(
            master_key, env.wrapped_data_key, data_key_aad(env.workspace_id, env.id), env.name
        )
        plain = unseal(
            data_key, old.ciphertext, secret_aad(env.workspace_id, env.id, None, "DB", 1), "DB v1"
        )
    assert plain == b"v1-value"


async def test_production_ciphertext_moved_into_dev_fails_to_decrypt(
    workspace: ConfigurationService, db: Database
) -> None:
    await workspace.set_secret("production", "DATABASE_URL", SecretValue(PROD_PASSWORD), actor="t")
    await workspace.set_secret("dev", "DATABASE_URL", SecretValue(DEV_PASSWORD), actor="t")
    async with db.write() as session:
        prod_row = await session.scalar(
            select(Secret).join(Environment).where(Environment.name == "production")
        )
        dev_env = await session.scalar(select(Environment).where(Environment.name == "dev"))
        assert prod_row is not None and dev_env is not None
        await session.execute(
            update(Secret)
            .where(Secret.environment_id == dev_env.id, Secret.key == "DATABASE_URL")
            .values(ciphertext=prod_row.ciphertext)
        )
    with pytest.raises(DecryptionError) as caught:
        await workspace.resolve("dev", "web", decrypt=True)
    assert "cannot be decrypted" in caught.value.message
    assert PROD_PASSWORD not in caught.value.message and PROD_PASSWORD not in repr(caught.value)
    production = await workspace.resolve("production", "web", decrypt=True)
    assert production.secrets["DATABASE_URL"].value == SecretValue(PROD_PASSWORD)


async def test_ciphertext_moved_to_another_name_fails_to_decrypt(
    workspace: ConfigurationService, db: Database
) -> None:
    await workspace.set_secret("production", "A", SecretValue("value-of-a"), actor="t")
    await workspace.set_secret("production", "B", SecretValue("value-of-b"), actor="t")
    async with db.write() as session:
        a = await session.scalar(select(Secret).where(Secret.key == "A"))
        assert a is not None
        await session.execute(
            update(Secret).where(Secret.key == "B").values(ciphertext=a.ciphertext)
        )
    with pytest.raises(DecryptionError):
        await workspace.resolve(
            "production", "web", {Reference(kind="secrets", name="B")}, decrypt=True
        )


async def test_master_key_rotation_rewraps_without_touching_secrets(
    workspace: ConfigurationService, db: Database, settings: Settings
) -> None:
    await workspace.set_secret("production", "DB", SecretValue("rotate-me-not"), actor="t")
    async with db.read() as session:
        before = (await session.scalars(select(Secret.ciphertext))).all()
    new_key = MasterKey(b"n" * 32)
    assert await workspace.rotate_master_key(new_key, actor="t") == 3
    async with db.read() as session:
        assert (await session.scalars(select(Secret.ciphertext))).all() == before
    with_new = ConfigurationService(db, settings, key=new_key)
    resolved = await with_new.resolve("production", "web", decrypt=True)
    assert resolved.secrets["DB"].value == SecretValue("rotate-me-not")
    with_old = ConfigurationService(db, settings, key=MasterKey(b"k" * 32))
    with pytest.raises(DecryptionError, match="another master key"):
        await with_old.resolve("production", "web", decrypt=True)


async def test_secret_values_are_checked_without_being_quoted(
    workspace: ConfigurationService,
) -> None:
    with pytest.raises(BadInput, match="is empty"):
        await workspace.set_secret("dev", "EMPTY", SecretValue("  \n"), actor="t")
    with pytest.raises(BadInput, match="not a PEM certificate") as caught:
        await workspace.set_secret(
            "dev", "TLS", SecretValue("not-a-cert-xyz"), actor="t", kind="certificate"
        )
    assert "not-a-cert-xyz" not in caught.value.message
    assert await workspace.list_secrets("dev") == []


async def test_a_secret_shorter_than_the_minimum_is_refused_without_being_quoted(
    workspace: ConfigurationService,
) -> None:
    for short in ("Q7", "1234567", "  abc1234  \n"):
        with pytest.raises(BadInput) as caught:
            await workspace.set_secret("dev", "PIN", SecretValue(short), actor="t")
        message = caught.value.message
        assert message.startswith("secret 'PIN' is shorter than 8 characters")
        assert "set a longer value" in message and short.strip() not in message
    assert await workspace.list_secrets("dev") == []
    # Eight characters is enough.
    await workspace.set_secret("dev", "PIN", SecretValue("12345678"), actor="t")
    assert [v.key for v in await workspace.list_secrets("dev")] == ["PIN"]


async def test_app_scoped_value_needs_the_app_to_point_to_the_environment(
    workspace: ConfigurationService,
) -> None:
    with pytest.raises(NotFound, match="does not point to environment 'staging'"):
        await workspace.set_variable("staging", "X", "1", actor="t", app="api")


async def test_tool_used_by_a_release_cannot_be_removed(
    workspace: ConfigurationService, db: Database, settings: Settings
) -> None:
    await workspace.create_tool("deploy-hook", kind="webhook", actor="t")
    await workspace.create_tool("unused", kind="webhook", actor="t")
    await ReleaseService(db, settings).create_release(
        "web", "1.0.0", "steps:\n  - name: hook\n    tool: deploy-hook\n", actor="t"
    )
    with pytest.raises(Refused, match=r"web@1\.0\.0"):
        await workspace.delete_tool("deploy-hook", actor="t")
    await workspace.delete_tool("unused", actor="t")
    assert [t.name for t in await workspace.list_tools()] == ["deploy-hook"]


async def test_pinned_resolution_gives_the_recorded_versions_not_the_newest(
    workspace: ConfigurationService,
) -> None:
    await workspace.set_variable("production", "MODE", "old", actor="t")
    await workspace.set_secret(
        "production", "TOKEN", SecretValue("old-token"), actor="t", app="web"
    )
    await workspace.create_tool("hook", kind="webhook", actor="t")
    await workspace.set_tool_profile("hook", "production", url="http://old.test", actor="t")
    recorded = (await workspace.resolve("production", "web")).versions()
    await workspace.set_variable("production", "MODE", "new", actor="t")
    await workspace.set_secret(
        "production", "TOKEN", SecretValue("new-token"), actor="t", app="web"
    )
    await workspace.set_tool_profile("hook", "production", url="http://new.test", actor="t")

    then = await workspace.resolve("production", "web", decrypt=True, pinned=recorded)
    assert then.vars["MODE"].value == "old"
    assert then.secrets["TOKEN"].value == SecretValue("old-token")
    assert then.tools["hook"].url == "http://old.test"
    now = await workspace.resolve("production", "web", decrypt=True)
    assert (now.vars["MODE"].value, now.tools["hook"].url) == ("new", "http://new.test")
    with pytest.raises(MissingConfiguration, match=r"vars\.ADDED_LATER"):
        await workspace.resolve(
            "production", "web", {Reference(kind="vars", name="ADDED_LATER")}, pinned=recorded
        )
