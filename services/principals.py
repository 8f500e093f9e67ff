"""People and CI jobs: who they are (argon2 passwords, hashed bearer tokens), what each may do
per environment (roles), and telling one from a token.

A token is `stl_<kind>_` and 43 characters of 256 random bits; only its SHA-256 is stored.
Passwords are argon2id hashes (argon2-cffi's defaults, parameters and salt in the hash). A
login for a name that does not exist checks a decoy hash, so it takes as long as a wrong
password and tells nobody which names exist. No token or password is ever audited, logged
or put in an error; lists show a token's first characters only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from models.errors import BadInput, Conflict, NotFound, Refused
from models.identity import (
    EVERY_ENVIRONMENT,
    Grant,
    Identity,
    IssuedToken,
    PrincipalKind,
    PrincipalView,
    Role,
    TokenKind,
    TokenView,
    check_principal_name,
)
from models.names import shown
from services.base import Service
from store import principals as principal_repo
from store.tables import AccessToken, Principal, RoleGrant, utcnow

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
SESSION_LIFETIME = timedelta(hours=12)
TOKEN_PREFIX = "stl_"


class NotAuthenticated(Refused):
    """No valid token or password: never says which part was wrong (exit 2)."""


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@cache
def _decoy() -> str:
    """The hash of a password nobody has, for logins under unknown names."""
    return _hasher().hash(secrets.token_urlsafe(24))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token(kind: TokenKind) -> tuple[str, str, str]:
    """A token's text, its hash and the prefix lists show."""
    text = f"{TOKEN_PREFIX}{kind}_{secrets.token_urlsafe(32)}"
    return text, token_hash(text), text[: len(TOKEN_PREFIX) + len(kind) + 5]


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise BadInput(
            f"the password is too short ({len(password)} characters): use at least "
            f"{MIN_PASSWORD}, a passphrase of a few words for example"
        )
    if len(password) > MAX_PASSWORD:
        raise BadInput(f"the password is longer than {MAX_PASSWORD} characters")
    return password


def _token_view(token: AccessToken) -> TokenView:
    return TokenView(
        kind=TokenKind(token.kind),
        prefix=token.prefix,
        apps=list(token.apps),
        environments=list(token.environments),
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
    )


class PrincipalService(Service):
    # -- people ------------------------------------------------------------------------------

    async def add_user(
        self, name: str, password: str, roles: list[Grant], *, actor: str
    ) -> PrincipalView:
        check_principal_name(name)
        check_password(password)
        person = await self._new_principal(name, PrincipalKind.PERSON, roles, actor=actor)
        person.password_hash = _hasher().hash(password)
        await self.audit(
            actor,
            "user.add",
            name,
            detail={"roles": [str(g) for g in roles]},
        )
        return (await self._views([person]))[0]

    async def disable_user(self, name: str, *, actor: str) -> PrincipalView:
        """A disabled person can no longer log in; their sessions end at once."""
        return await self._disable(name, PrincipalKind.PERSON, "user.disable", actor)

    async def login(self, name: str, password: str) -> IssuedToken:
        """A session token for a person whose password matches."""
        person = await principal_repo.find_principal(self.session, await self.workspace_id(), name)
        stored = None
        if person is not None and person.kind == PrincipalKind.PERSON and not person.disabled_at:
            stored = person.password_hash
        try:
            _hasher().verify(stored or _decoy(), password)  # the decoy never matches
            matched = stored is not None
        except (VerificationError, InvalidHashError):
            matched = False
        if not matched or person is None:
            raise NotAuthenticated("wrong name or password (or the user is disabled)")
        issued = self._issue(person, TokenKind.SESSION, SESSION_LIFETIME, [], [], name)
        await self.audit(name, "user.login", name, detail={"token": issued.prefix})
        return issued

    # -- CI ----------------------------------------------------------------------------------

    async def create_ci_token(
        self,
        name: str,
        *,
        apps: list[str],
        environments: list[str],
        role: Role,
        lifetime: timedelta,
        actor: str,
    ) -> IssuedToken:
        """A CI job named `name`, with `role` in each of `environments` (every one when none
        is named), and its token: scoped to `apps` (every app when none is named) and to
        `environments`. The token's text is returned once and never stored."""
        check_principal_name(name)
        for app in apps:
            await self.app(app)
        for environment in environments:
            await self.environment(environment)
        grants = [Grant(environment=e, role=role) for e in environments or [EVERY_ENVIRONMENT]]
        job = await self._new_principal(name, PrincipalKind.CI, grants, actor=actor)
        issued = self._issue(job, TokenKind.CI, lifetime, apps, environments, actor)
        await self.audit(
            actor,
            "token.create",
            name,
            detail={
                "role": str(role),
                "apps": apps,
                "environments": environments,
                "expires_at": issued.expires_at.isoformat(),
                "token": issued.prefix,
            },
        )
        return issued

    async def revoke_token(self, name: str, *, actor: str) -> PrincipalView:
        """Revoke a CI job's token: it fails from the next request on. The name stays taken."""
        return await self._disable(name, PrincipalKind.CI, "token.revoke", actor)

    # -- both --------------------------------------------------------------------------------

    async def list_principals(self, kind: PrincipalKind | None = None) -> list[PrincipalView]:
        found = await principal_repo.principals(self.session, await self.workspace_id(), kind)
        return await self._views(list(found))

    async def authenticate(self, token: str) -> Identity:
        """The identity a bearer token stands for; refused when it is unknown, expired or
        revoked, or its principal is disabled."""
        found = None
        if token.startswith(TOKEN_PREFIX):
            found = await principal_repo.token_and_principal(self.session, token_hash(token))
        if found is not None:
            record, principal = found
            # Compared again in constant time: the lookup by hash already matched.
            valid = (
                hmac.compare_digest(record.token_hash, token_hash(token))
                and record.revoked_at is None
                and record.expires_at > utcnow()
                and principal.disabled_at is None
                and principal.workspace_id == await self.workspace_id()
            )
            if valid:
                grants = await principal_repo.grants_of(self.session, [principal.id])
                return Identity(
                    name=principal.name,
                    kind=PrincipalKind(principal.kind),
                    roles=[Grant(environment=g.environment, role=Role(g.role)) for g in grants],
                    apps=list(record.apps),
                    environments=list(record.environments),
                )
        raise NotAuthenticated(
            "the token is not valid (unknown, expired or revoked); log in again with "
            "'stageline login', or ask an admin for a new CI token"
        )

    async def logout(self, token: str) -> None:
        """End the session `token` stands for, at once (audited); a CI token is not a session
        and is revoked with `token revoke`, by an admin."""
        identity = await self.authenticate(token)
        found = await principal_repo.token_and_principal(self.session, token_hash(token))
        assert found is not None  # authenticate found it
        record, _ = found
        if record.kind != TokenKind.SESSION:
            raise BadInput(
                "a CI token is not a session: an admin revokes it with 'stageline token revoke "
                f"{identity.name}'"
            )
        record.revoked_at, record.revoked_by = utcnow(), identity.name
        await self.audit(
            identity.name, "user.logout", identity.name, detail={"token": record.prefix}
        )

    # -- helpers -----------------------------------------------------------------------------

    async def _new_principal(
        self, name: str, kind: PrincipalKind, roles: list[Grant], *, actor: str
    ) -> Principal:
        ws = await self.workspace_id()
        existing = await principal_repo.find_principal(self.session, ws, name)
        if existing is not None:
            what = "a user" if existing.kind == PrincipalKind.PERSON else "a CI token"
            raise Conflict(
                f"{shown(name)} is already {what} (names are never reused, even disabled); "
                "choose another name"
            )
        for grant in roles:
            if grant.environment != EVERY_ENVIRONMENT:
                await self.environment(grant.environment)
        principal = Principal(workspace_id=ws, kind=kind, name=name, created_by=actor)
        self.session.add(principal)
        await self.session.flush()
        for environment, role in dict.fromkeys((g.environment, g.role) for g in roles):
            self.session.add(
                RoleGrant(principal_id=principal.id, environment=environment, role=role)
            )
        return principal

    def _issue(
        self,
        principal: Principal,
        kind: TokenKind,
        lifetime: timedelta,
        apps: list[str],
        environments: list[str],
        actor: str,
    ) -> IssuedToken:
        text, hashed, prefix = _new_token(kind)
        expires = utcnow() + lifetime
        self.session.add(
            AccessToken(
                principal_id=principal.id,
                kind=kind,
                token_hash=hashed,
                prefix=prefix,
                apps=apps,
                environments=environments,
                created_by=actor,
                expires_at=expires,
            )
        )
        return IssuedToken(
            name=principal.name,
            kind=kind,
            token=text,
            prefix=prefix,
            expires_at=expires,
            apps=apps,
            environments=environments,
        )

    async def _principal(self, name: str, kind: PrincipalKind) -> Principal:
        found = await principal_repo.find_principal(self.session, await self.workspace_id(), name)
        if found is None or found.kind != kind:
            what, how = (
                ("user", "stageline user list")
                if kind == PrincipalKind.PERSON
                else ("CI token", "stageline token list")
            )
            raise NotFound(f"{what} {shown(name)} does not exist; see '{how}'")
        return found

    async def _disable(
        self, name: str, kind: PrincipalKind, action: str, actor: str
    ) -> PrincipalView:
        """Disable a principal and revoke every token it holds, once (audited as `action`)."""
        principal = await self._principal(name, kind)
        if principal.disabled_at is None:
            now = utcnow()
            principal.disabled_at, principal.disabled_by = now, actor
            for token in await principal_repo.tokens_of(self.session, [principal.id]):
                if token.revoked_at is None:
                    token.revoked_at, token.revoked_by = now, actor
            await self.audit(actor, action, name)
        return (await self._views([principal]))[0]

    async def _views(self, found: list[Principal]) -> list[PrincipalView]:
        ids = [p.id for p in found]
        grants = await principal_repo.grants_of(self.session, ids) if ids else []
        tokens = await principal_repo.tokens_of(self.session, ids, TokenKind.CI) if ids else []
        return [
            PrincipalView(
                name=p.name,
                kind=PrincipalKind(p.kind),
                roles=[
                    Grant(environment=g.environment, role=Role(g.role))
                    for g in grants
                    if g.principal_id == p.id
                ],
                created_by=p.created_by,
                created_at=p.created_at,
                disabled_at=p.disabled_at,
                tokens=[_token_view(t) for t in tokens if t.principal_id == p.id],
            )
            for p in found
        ]
