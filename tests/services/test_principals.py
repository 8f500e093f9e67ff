"""People and CI jobs, on SQLite and on PostgreSQL: passwords and tokens that work, fail when
they should (wrong, unknown, disabled, revoked, expired), scopes that hold, and no password or
token text anywhere in the database or the audit log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from models.errors import BadInput, Conflict, NotFound
from models.identity import Action, Grant, Identity, IssuedToken, PrincipalKind, Role, refusal
from services.principals import NotAuthenticated
from services.unit import Units
from store.database import Database
from store.tables import AccessToken, Base

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def units(web_in_dev: Units) -> Units:
    async with web_in_dev.write() as w:
        await w.environments.create_environment("production", actor="t")
    return web_in_dev


async def everything_stored(db: Database) -> str:
    """Every row of every table, as text."""
    rows = []
    async with db.read() as session:
        for table in Base.metadata.sorted_tables:
            rows += [repr(tuple(r)) for r in await session.execute(select(table))]
    return "\n".join(rows)


async def test_a_person_logs_in_with_the_password_and_with_nothing_else(
    units: Units, db: Database
) -> None:
    grants = [Grant(environment="production", role=Role.REVIEWER)]
    async with units.write() as w:
        view = await w.principals.add_user("alice", PASSWORD, grants, actor="admin")
    assert (view.kind, view.roles) == (PrincipalKind.PERSON, grants)
    async with units.write() as w:
        session = await w.principals.login("alice", PASSWORD)
    async with units.read() as w:
        identity = await w.principals.authenticate(session.token)
    assert identity == Identity(name="alice", kind=PrincipalKind.PERSON, roles=grants)

    # A wrong password and an unknown name get the same answer.
    for name, password in (("alice", PASSWORD + "!"), ("mallory", PASSWORD)):
        with pytest.raises(NotAuthenticated) as refused:
            async with units.write() as w:
                await w.principals.login(name, password)
        assert str(refused.value) == "wrong name or password (or the user is disabled)"

    async with units.write() as w:
        await w.principals.disable_user("alice", actor="admin")
    with pytest.raises(NotAuthenticated):  # the session she had ends at once
        async with units.read() as w:
            await w.principals.authenticate(session.token)
    with pytest.raises(NotAuthenticated):
        async with units.write() as w:
            await w.principals.login("alice", PASSWORD)

    stored = await everything_stored(db)
    assert PASSWORD not in stored and session.token not in stored
    assert session.prefix in stored  # lists and the audit log name a token by its start


async def test_bad_users_are_refused_and_nothing_is_stored(units: Units) -> None:
    async with units.write() as w:
        await w.principals.add_user("alice", PASSWORD, [], actor="admin")
    cases: list[tuple[str, str, list[Grant], type[Exception], str]] = [
        ("alice", PASSWORD, [], Conflict, "'alice' is already a user"),
        ("bob", "Zq9#xk", [], BadInput, "too short (6 characters)"),
        ("bob smith", PASSWORD, [], BadInput, "is not valid"),
        ("bob", PASSWORD, [Grant(environment="prod", role=Role.VIEWER)], NotFound, "production"),
    ]
    for name, password, grants, error, says in cases:
        with pytest.raises(error) as refused:
            async with units.write() as w:
                await w.principals.add_user(name, password, grants, actor="admin")
        assert says in str(refused.value)
        assert password not in str(refused.value) or password == PASSWORD
    async with units.read() as w:
        assert [p.name for p in await w.principals.list_principals()] == ["alice"]


async def test_a_ci_token_reaches_its_apps_and_environments_only(
    units: Units, db: Database
) -> None:
    async with units.write() as w:
        issued = await w.principals.create_ci_token(
            "gh-deploy",
            apps=["web"],
            environments=["dev"],
            role=Role.DEPLOYER,
            lifetime=timedelta(days=30),
            actor="admin",
        )
    async with units.read() as w:
        ci = await w.principals.authenticate(issued.token)
    assert (ci.kind, ci.apps, ci.environments) == (PrincipalKind.CI, ["web"], ["dev"])
    assert refusal(ci, Action.DEPLOY, "dev", "web") is None
    assert refusal(ci, Action.VIEW, "dev", "web") is None
    outside = {
        (Action.DEPLOY, "production", "web"): "scoped to dev, not production",
        (Action.VIEW, "production", None): "scoped to dev, not production",
        (Action.DEPLOY, "dev", "api"): "scoped to the apps web, not api",
        (Action.DECIDE, "dev", "web"): "needs the reviewer role there",
        (Action.CONFIGURE, "dev", None): "needs the admin role there",
    }
    for (action, environment, app), says in outside.items():
        reason = refusal(ci, action, environment, app)
        assert reason is not None and says in reason, (action, environment, app, reason)

    async with units.read() as w:
        listed = await w.principals.list_principals(PrincipalKind.CI)
    assert [t.prefix for t in listed[0].tokens] == [issued.prefix]
    assert issued.token not in (await everything_stored(db))

    # Expired: refused.
    async with db.write() as session:
        await session.execute(
            update(AccessToken).values(expires_at=issued.expires_at - timedelta(days=31))
        )
    with pytest.raises(NotAuthenticated):
        async with units.read() as w:
            await w.principals.authenticate(issued.token)


async def deployer_token(units: Units) -> IssuedToken:
    """gh-deploy: a deployer everywhere, for a day."""
    async with units.write() as w:
        return await w.principals.create_ci_token(
            "gh-deploy",
            apps=[],
            environments=[],
            role=Role.DEPLOYER,
            lifetime=timedelta(days=1),
            actor="admin",
        )


async def test_a_revoked_or_forged_token_fails(units: Units) -> None:
    issued = await deployer_token(units)
    async with units.write() as w:
        await w.principals.revoke_token("gh-deploy", actor="admin")
    forged = issued.token[:-4] + "AAAA"
    for token in (issued.token, forged, "", "Bearer x", issued.prefix):
        with pytest.raises(NotAuthenticated):
            async with units.read() as w:
                await w.principals.authenticate(token)
    with pytest.raises(Conflict):  # the name stays taken
        await deployer_token(units)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.VIEWER, {Action.VIEW}),
        (Role.DEPLOYER, {Action.VIEW, Action.DEPLOY}),
        (Role.REVIEWER, {Action.VIEW, Action.DECIDE}),
        (Role.ADMIN, set(Action)),
    ],
)
def test_each_role_allows_its_actions_in_its_environment_only(
    role: Role, allowed: set[Action]
) -> None:
    who = Identity(
        name="bob", kind=PrincipalKind.PERSON, roles=[Grant(environment="staging", role=role)]
    )
    for action in Action:
        assert (refusal(who, action, "staging", "web") is None) == (action in allowed)
        reason = refusal(who, action, "production", "web")
        assert reason is not None and "bob has staging:" in reason
    everywhere = who.model_copy(update={"roles": [Grant(environment="*", role=role)]})
    assert all(refusal(everywhere, a, "production", None) is None for a in allowed)
