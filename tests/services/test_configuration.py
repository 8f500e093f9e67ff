"""Variables, secrets, tool profiles and their resolution, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from models.errors import BadInput, MissingConfiguration, NotFound, Refused
from models.pipeline import Reference, parse_pipeline
from models.promotion import ConfigVersions
from models.resolution import ResolvedConfiguration
from models.settings import Settings
from services.unit import Units
from store.database import Database
from store.tables import AuditEvent, Environment, Secret
from vault.envelope import DecryptionError, data_key_aad, secret_aad, unseal, unwrap_data_key
from vault.keys import MasterKey
from vault.secret_value import SecretValue

PROD_PASSWORD = "prod-Pa55word-7f3a9c"
DEV_PASSWORD = "dev-pa55word-11aa"


@pytest.fixture
async def units(db: Database, settings: Settings) -> Units:
    units = Units(db, settings)
    async with units.write() as w:
        for name in ("dev", "staging", "production"):
            await w.environments.create_environment(name, actor="t")
        await w.environments.create_app("web", ["dev", "staging", "production"], actor="t")
        await w.environments.create_app("api", ["dev", "production"], actor="t")
    return units


async def resolve(
    units: Units,
    environment: str,
    app: str | None,
    references: set[Reference] | None = None,
    *,
    decrypt: bool = False,
    pinned: ConfigVersions | None = None,
) -> ResolvedConfiguration:
    async with units.read() as w:
        return await w.resolution.resolve(
            environment, app, references, decrypt=decrypt, pinned=pinned
        )


async def secret_keys(units: Units, environment: str) -> list[str]:
    async with units.read() as w:
        return [v.key for v in await w.secrets.list_secrets(environment)]


async def test_app_value_overrides_environment_value(units: Units) -> None:
    async with units.write() as w:
        await w.variables.set_variable("dev", "BASE_URL", "http://dev.internal", actor="t")
        await w.variables.set_variable("dev", "LOG_LEVEL", "debug", actor="t")
        await w.variables.set_variable("dev", "BASE_URL", "http://web.dev", actor="t", app="web")
        await w.secrets.set_secret("dev", "TOKEN", SecretValue("env-token"), actor="t")
        await w.secrets.set_secret("dev", "TOKEN", SecretValue("web-token"), actor="t", app="web")

    web = await resolve(units, "dev", "web", decrypt=True)
    assert web.vars["BASE_URL"].value == "http://web.dev" and web.vars["BASE_URL"].scope == "app"
    assert web.vars["LOG_LEVEL"].value == "debug" and web.vars["LOG_LEVEL"].scope == "env"
    assert web.secrets["TOKEN"].value == SecretValue("web-token")

    api = await resolve(units, "dev", "api", decrypt=True)
    assert api.vars["BASE_URL"].value == "http://dev.internal"
    assert api.secrets["TOKEN"].value == SecretValue("env-token")


async def test_resolution_names_every_missing_key_at_once(units: Units) -> None:
    async with units.write() as w:
        await w.variables.set_variable("staging", "BASE_URL", "http://staging", actor="t")
        await w.tools.create_tool("deploy-hook", kind="webhook", actor="t")
        await w.tools.set_tool_profile(
            "deploy-hook",
            "staging",
            url="http://127.0.0.1:9/hook",
            auth_secret="HOOK_TOKEN",
            actor="t",
        )
        await w.tools.create_tool("pager", kind="webhook", actor="t")
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
        await resolve(units, "staging", "web", refs)
    assert caught.value.missing == [
        "secrets.DATABASE_URL",
        "secrets.HOOK_TOKEN (auth of tool deploy-hook)",
        "tools.pager (no profile)",
        "vars.FEATURE",
    ]
    assert "staging" in caught.value.message


async def test_resolution_gives_only_what_is_referenced(units: Units) -> None:
    async with units.write() as w:
        await w.secrets.set_secret("dev", "NEEDED", SecretValue("a-needed-value"), actor="t")
        await w.secrets.set_secret("dev", "OTHER", SecretValue("an-unrelated-value"), actor="t")
    resolved = await resolve(
        units, "dev", "web", {Reference(kind="secrets", name="NEEDED")}, decrypt=True
    )
    assert set(resolved.secrets) == {"NEEDED"}
    assert resolved.secret_values() == ["a-needed-value"]
    metadata_only = await resolve(units, "dev", "web")
    assert all(s.value is None for s in metadata_only.secrets.values())


async def test_setting_again_makes_a_new_version_and_keeps_the_old(
    units: Units, db: Database, master_key: MasterKey
) -> None:
    async with units.write() as w:
        first = await w.secrets.set_secret("production", "DB", SecretValue("v1-value"), actor="t")
    async with units.write() as w:
        second = await w.secrets.set_secret("production", "DB", SecretValue("v2-value"), actor="t")
    assert (first.version, second.version) == (1, 2)
    resolved = await resolve(units, "production", "web", decrypt=True)
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
    units: Units, db: Database
) -> None:
    async with units.write() as w:
        await w.secrets.set_secret(
            "production", "DATABASE_URL", SecretValue(PROD_PASSWORD), actor="t"
        )
        await w.secrets.set_secret("dev", "DATABASE_URL", SecretValue(DEV_PASSWORD), actor="t")
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
        await resolve(units, "dev", "web", decrypt=True)
    assert "cannot be decrypted" in caught.value.message
    assert PROD_PASSWORD not in caught.value.message and PROD_PASSWORD not in repr(caught.value)
    production = await resolve(units, "production", "web", decrypt=True)
    assert production.secrets["DATABASE_URL"].value == SecretValue(PROD_PASSWORD)


async def test_ciphertext_moved_to_another_name_fails_to_decrypt(
    units: Units, db: Database
) -> None:
    async with units.write() as w:
        await w.secrets.set_secret("production", "A", SecretValue("value-of-a"), actor="t")
        await w.secrets.set_secret("production", "B", SecretValue("value-of-b"), actor="t")
    async with db.write() as session:
        a = await session.scalar(select(Secret).where(Secret.key == "A"))
        assert a is not None
        await session.execute(
            update(Secret).where(Secret.key == "B").values(ciphertext=a.ciphertext)
        )
    with pytest.raises(DecryptionError):
        await resolve(
            units, "production", "web", {Reference(kind="secrets", name="B")}, decrypt=True
        )


async def test_master_key_rotation_rewraps_without_touching_secrets(
    units: Units, db: Database, settings: Settings
) -> None:
    async with units.write() as w:
        await w.secrets.set_secret("production", "DB", SecretValue("rotate-me-not"), actor="t")
    async with db.read() as session:
        before = (await session.scalars(select(Secret.ciphertext))).all()
    new_key = MasterKey(b"n" * 32)
    async with units.write() as w:
        assert await w.secrets.rotate_master_key(new_key, actor="t") == 3
    units.keys.replace(new_key)  # what the command does once the rotation committed
    async with db.read() as session:
        assert (await session.scalars(select(Secret.ciphertext))).all() == before
    # The entry point that rotated uses the new key from then on, as does a new one with it.
    for with_new in (units, Units(db, settings, key=new_key)):
        resolved = await resolve(with_new, "production", "web", decrypt=True)
        assert resolved.secrets["DB"].value == SecretValue("rotate-me-not")
    with_old = Units(db, settings, key=MasterKey(b"k" * 32))
    with pytest.raises(DecryptionError, match="another master key"):
        await resolve(with_old, "production", "web", decrypt=True)


async def test_secret_values_are_checked_without_being_quoted(units: Units) -> None:
    with pytest.raises(BadInput, match="is empty"):
        async with units.write() as w:
            await w.secrets.set_secret("dev", "EMPTY", SecretValue("  \n"), actor="t")
    with pytest.raises(BadInput, match="not a PEM certificate") as caught:
        async with units.write() as w:
            await w.secrets.set_secret(
                "dev", "TLS", SecretValue("not-a-cert-xyz"), actor="t", kind="certificate"
            )
    assert "not-a-cert-xyz" not in caught.value.message
    assert await secret_keys(units, "dev") == []


async def test_a_secret_shorter_than_the_minimum_is_refused_without_being_quoted(
    units: Units,
) -> None:
    for short in ("Q7", "1234567", "  abc1234  \n"):
        with pytest.raises(BadInput) as caught:
            async with units.write() as w:
                await w.secrets.set_secret("dev", "PIN", SecretValue(short), actor="t")
        message = caught.value.message
        assert message.startswith("secret 'PIN' is shorter than 8 characters")
        assert "set a longer value" in message and short.strip() not in message
    assert await secret_keys(units, "dev") == []
    # Eight characters is enough.
    async with units.write() as w:
        await w.secrets.set_secret("dev", "PIN", SecretValue("12345678"), actor="t")
    assert await secret_keys(units, "dev") == ["PIN"]


async def test_app_scoped_value_needs_the_app_to_point_to_the_environment(units: Units) -> None:
    with pytest.raises(NotFound, match="does not point to environment 'staging'"):
        async with units.write() as w:
            await w.variables.set_variable("staging", "X", "1", actor="t", app="api")


async def test_tool_used_by_a_release_cannot_be_removed(units: Units, db: Database) -> None:
    async with units.write() as w:
        await w.tools.create_tool("deploy-hook", kind="webhook", actor="t")
        await w.tools.create_tool("unused", kind="webhook", actor="t")
        await w.releases.create_release(
            "web", "1.0.0", "steps:\n  - name: hook\n    tool: deploy-hook\n", actor="t"
        )
    with pytest.raises(Refused, match=r"web@1\.0\.0"):
        async with units.write() as w:
            await w.tools.delete_tool("deploy-hook", actor="t")
    async with units.write() as w:
        await w.tools.delete_tool("unused", actor="t")
    async with units.read() as w:
        assert [t.name for t in await w.tools.list_tools()] == ["deploy-hook"]
    # The refusal is on record, though its unit of work rolled back.
    async with db.read() as session:
        actions = (await session.scalars(select(AuditEvent.action).order_by(AuditEvent.id))).all()
    assert actions[-2:] == ["tool.delete.refused", "tool.delete"]


async def test_pinned_resolution_gives_the_recorded_versions_not_the_newest(units: Units) -> None:
    async with units.write() as w:
        await w.variables.set_variable("production", "MODE", "old", actor="t")
        await w.secrets.set_secret(
            "production", "TOKEN", SecretValue("old-token"), actor="t", app="web"
        )
        await w.tools.create_tool("hook", kind="webhook", actor="t")
        await w.tools.set_tool_profile("hook", "production", url="http://old.test", actor="t")
    recorded = (await resolve(units, "production", "web")).versions()
    async with units.write() as w:
        await w.variables.set_variable("production", "MODE", "new", actor="t")
        await w.secrets.set_secret(
            "production", "TOKEN", SecretValue("new-token"), actor="t", app="web"
        )
        await w.tools.set_tool_profile("hook", "production", url="http://new.test", actor="t")

    then = await resolve(units, "production", "web", decrypt=True, pinned=recorded)
    assert then.vars["MODE"].value == "old"
    assert then.secrets["TOKEN"].value == SecretValue("old-token")
    assert then.tools["hook"].url == "http://old.test"
    now = await resolve(units, "production", "web", decrypt=True)
    assert (now.vars["MODE"].value, now.tools["hook"].url) == ("new", "http://new.test")
    with pytest.raises(MissingConfiguration, match=r"vars\.ADDED_LATER"):
        await resolve(
            units,
            "production",
            "web",
            {Reference(kind="vars", name="ADDED_LATER")},
            pinned=recorded,
        )
