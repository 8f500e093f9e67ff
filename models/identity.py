"""Who may do what: principals (people and CI jobs), their roles per environment, their
tokens, and the action each role allows.

Roles, per environment or for every one (`*`):
- viewer: read what is deployed and configured (never a secret's value);
- deployer: promote and roll back, and run trains (and view);
- reviewer: approve, reject and override (and view); a reviewer does not deploy;
- admin: configuration, protection, reviewer keys and users; admin holds every other role.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel

from models.errors import BadInput, Refused
from models.names import PERSON_NAME, check_resource_name, shown


class Role(StrEnum):
    VIEWER = "viewer"
    DEPLOYER = "deployer"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Action(StrEnum):
    VIEW = "view"
    DEPLOY = "deploy"  # promote, roll back, run a train
    DECIDE = "decide"  # approve, reject, override
    CONFIGURE = "configure"  # environments, apps, variables, secrets, tools, keys, users


# The role each action needs in the environment it touches.
NEEDS = {
    Action.VIEW: Role.VIEWER,
    Action.DEPLOY: Role.DEPLOYER,
    Action.DECIDE: Role.REVIEWER,
    Action.CONFIGURE: Role.ADMIN,
}
# How a refusal says what was asked, before "ENVIRONMENT".
DOING = {
    Action.VIEW: "view",
    Action.DEPLOY: "deploy to",
    Action.DECIDE: "approve, reject or override in",
    Action.CONFIGURE: "change the configuration of",
}
# The roles a role holds.
HOLDS = {
    Role.VIEWER: {Role.VIEWER},
    Role.DEPLOYER: {Role.VIEWER, Role.DEPLOYER},
    Role.REVIEWER: {Role.VIEWER, Role.REVIEWER},
    Role.ADMIN: set(Role),
}
EVERY_ENVIRONMENT = "*"


class PrincipalKind(StrEnum):
    PERSON = "person"
    CI = "ci"


class TokenKind(StrEnum):
    CI = "ci"
    SESSION = "session"


class Grant(BaseModel):
    environment: str  # a name, or "*"
    role: Role

    def __str__(self) -> str:
        return f"{self.environment}:{self.role}"


class TokenView(BaseModel):
    """A token as lists show it: never the token itself, only its first characters."""

    kind: TokenKind
    prefix: str
    apps: list[str]
    environments: list[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None


class PrincipalView(BaseModel):
    name: str
    kind: PrincipalKind
    roles: list[Grant]
    created_by: str
    created_at: datetime
    disabled_at: datetime | None = None
    tokens: list[TokenView] = []


class IssuedToken(BaseModel):
    """A token as issued: the only time its text exists outside the one who holds it."""

    name: str
    kind: TokenKind
    token: str
    prefix: str
    expires_at: datetime
    apps: list[str] = []
    environments: list[str] = []


class Identity(BaseModel):
    """An authenticated principal, with what its token lets it reach."""

    name: str
    kind: PrincipalKind
    roles: list[Grant]
    # The token's scope: empty means every app (environment) the roles reach.
    apps: list[str] = []
    environments: list[str] = []


class Forbidden(Refused):
    """Authenticated, but without the role (or token scope) an action needs (exit 2)."""


def check_principal_name(name: str) -> str:
    """People and CI jobs are named as reviewers are (`alice`, `alice@acme.com`, `gh-deploy`),
    so a reviewer list and a login name mean the same person."""
    if not PERSON_NAME.fullmatch(name):
        raise BadInput(
            f"name {shown(name)} is not valid: use a user name or e-mail such as 'alice', "
            "'alice@acme.com' or 'gh-deploy' (letters, digits and . _ @ + -, at most 200)"
        )
    return name


def parse_grant(text: str) -> Grant:
    """ENV:ROLE, as `--role production:reviewer` or `--role '*:admin'` write it."""
    environment, sep, role = text.partition(":")
    roles = ", ".join(Role)
    if not sep or not environment or not role:
        raise BadInput(
            f"role {shown(text)} is not ENV:ROLE; write for example 'production:reviewer' or "
            f"'*:viewer' (roles: {roles})"
        )
    if role not in Role.__members__.values():
        raise BadInput(f"role {shown(role)} does not exist; roles: {roles}")
    if environment != EVERY_ENVIRONMENT:
        check_resource_name(environment, "environment")
    return Grant(environment=environment, role=Role(role))


_DURATION = re.compile(r"([1-9][0-9]{0,4})([mhd])")
MAX_TOKEN_LIFETIME = timedelta(days=365)


def parse_duration(text: str) -> timedelta:
    """`90m`, `12h`, `30d`: a token's lifetime, at most a year."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise BadInput(
            f"duration {shown(text)} is not valid; write minutes, hours or days such as "
            "'90m', '12h' or '30d'"
        )
    amount, unit = int(match.group(1)), match.group(2)
    lifetime = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount)}.get(
        unit, timedelta(days=amount)
    )
    if lifetime > MAX_TOKEN_LIFETIME:
        raise BadInput(f"duration {text} is longer than a year; issue a new token each year")
    return lifetime


def holds(identity: Identity, role: Role, environment: str) -> bool:
    """Whether one of the identity's grants gives it `role` in `environment`."""
    return any(
        role in HOLDS[grant.role] and grant.environment in (environment, EVERY_ENVIRONMENT)
        for grant in identity.roles
    )


def refusal(identity: Identity, action: Action, environment: str, app: str | None) -> str | None:
    """Why the identity may not take `action` in `environment` (for `app`), or None."""
    where = "every environment ('*')" if environment == EVERY_ENVIRONMENT else environment
    if identity.environments and environment not in identity.environments:
        return (
            f"{identity.name}'s token is scoped to {', '.join(identity.environments)}, not "
            f"{where}; use a token issued for {where}"
        )
    if app is not None and identity.apps and app not in identity.apps:
        return (
            f"{identity.name}'s token is scoped to the apps {', '.join(identity.apps)}, not "
            f"{app}; use a token issued for {app}"
        )
    needed = NEEDS[action]
    if holds(identity, needed, environment):
        return None
    has = ", ".join(str(g) for g in identity.roles) or "no role"
    return (
        f"{identity.name} may not {DOING[action]} {where}: that needs the {needed} role "
        f"there (an admin grants it with 'stageline user add' or 'token create'); "
        f"{identity.name} has {has}"
    )
